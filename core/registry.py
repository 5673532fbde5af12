"""The model registry: every model ever trained, with its artifact's sha256, parent, dataset and code versions,
metrics and maker; and the aliases `champion` (what serves) and `challenger`, with the history of every move.

Artifacts live in the blob store (`models/<sha>.pt`), so every machine that shares the blob store can load them.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.blobs import BlobStore
from schemas.errors import ModelError, RegistryError
from schemas.tables import AliasChange, ModelAlias, ModelAliasName, ModelVersion, utcnow

if TYPE_CHECKING:
    from ml.checkpoint import Checkpoint

CHAMPION = ModelAliasName.CHAMPION
CHALLENGER = ModelAliasName.CHALLENGER


def _metrics(meta: dict[str, Any]) -> dict[str, Any]:
    keys = ("val_metrics", "test_metrics", "cross_validation", "seconds", "dataset_size", "split", "class_counts",
            "input_reference")  # fmt: skip
    return {key: meta[key] for key in keys if key in meta}


def register(
    session: Session,
    blobs: BlobStore,
    artifact: Path,
    made_by: str | None = None,
    parent: str | None = None,
    commit: bool = True,
) -> ModelVersion:
    """Register a checkpoint file. Registering the same file again returns the same version. `commit=False` leaves
    the new row in the session's transaction, for the caller to commit with more."""
    from ml.checkpoint import load_checkpoint  # torch: only where models are handled

    data = artifact.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    checkpoint = load_checkpoint(data)
    existing = session.get(ModelVersion, checkpoint.version)
    if existing is not None:
        if existing.sha256 != sha256:
            raise RegistryError(f"version {checkpoint.version} is already registered with other content")
        if existing.artifact_deleted_at is not None:  # retention deleted it: the same file brings it back
            blobs.put("models", data, ".pt")
            existing.artifact_deleted_at = None
            session.add(existing)
            if commit:
                session.commit()
            else:
                session.flush()
        return existing
    if parent is not None:
        get_version(session, parent)
    meta = checkpoint.meta
    row = ModelVersion(
        version=checkpoint.version,
        sha256=sha256,
        blob_key=blobs.put("models", data, ".pt"),
        parent_version=parent,
        dataset_version=meta.get("dataset_version"),
        code_version=meta.get("code_version"),
        made_by=made_by or meta.get("made_by") or "unknown",
        metrics=_metrics(meta)
        | (
            {"leaf_gate_threshold": checkpoint.leaf_gate.threshold} if checkpoint.leaf_gate else {}
        ),  # the review queue reads it: which photos the gate nearly turned away
        params=meta.get("params", {}),
        size_bytes=len(data),
    )
    session.add(row)
    if commit:
        session.commit()
    else:
        session.flush()
    return row


def get_version(session: Session, version: str) -> ModelVersion:
    row = session.get(ModelVersion, version)
    if row is None:
        raise RegistryError(f"no model version {version!r}; `mhogo models list` shows them")
    return row


def require_artifact(row: ModelVersion) -> ModelVersion:
    """The version, if its checkpoint is still there: retention deletes those of models that never served."""
    if row.artifact_deleted_at is not None:
        raise RegistryError(f"the checkpoint of {row.version} was deleted on {row.artifact_deleted_at:%Y-%m-%d} "
                            "(retention: it never served, MHOGO_CHALLENGER_RETENTION_DAYS); register its file again "
                            "with `mhogo models register FILE` to use it")  # fmt: skip
    return row


def versions(session: Session) -> list[ModelVersion]:
    return list(session.exec(select(ModelVersion).order_by(col(ModelVersion.created_at))).all())


def aliases(session: Session) -> dict[str, str]:
    return {str(row.alias): row.version for row in session.exec(select(ModelAlias)).all()}


def alias_version(session: Session, alias: ModelAliasName) -> str | None:
    row = session.get(ModelAlias, alias.value)
    return row.version if row is not None else None


def history(session: Session, alias: ModelAliasName | None = None) -> list[AliasChange]:
    statement = select(AliasChange).order_by(col(AliasChange.id))
    if alias is not None:
        statement = statement.where(col(AliasChange.alias) == alias.value)
    return list(session.exec(statement).all())


def set_alias(
    session: Session,
    alias: ModelAliasName,
    version: str,
    changed_by: str,
    reason: str | None = None,
    commit: bool = True,
) -> AliasChange:
    require_artifact(get_version(session, version))
    row = session.get(ModelAlias, alias.value)
    previous = row.version if row is not None else None
    if row is None:
        session.add(ModelAlias(alias=alias, version=version))
    else:
        row.version, row.updated_at = version, utcnow()
        session.add(row)
    change = AliasChange(alias=alias, version=version, previous_version=previous, changed_by=changed_by, reason=reason)
    session.add(change)
    if commit:
        session.commit()
    else:
        session.flush()
    return change


def promote(session: Session, version: str, changed_by: str, reason: str = "promoted") -> AliasChange:
    """Make `version` the champion. Inference workers switch to it within MHOGO_MODEL_REFRESH_S."""
    if alias_version(session, CHAMPION) == version:
        raise RegistryError(f"{version} is already the champion")
    return set_alias(session, CHAMPION, version, changed_by, reason)


def rollback(session: Session, changed_by: str) -> AliasChange:
    """Give the champion back to the model it replaced last."""
    changes = history(session, CHAMPION)
    if not changes or changes[-1].previous_version is None:
        raise RegistryError("there is no earlier champion to roll back to")
    current = changes[-1]
    return set_alias(session, CHAMPION, current.previous_version, changed_by, f"rollback from {current.version}")  # type: ignore[arg-type]


SEED_MAKER = "seed model (MHOGO_MODEL_PATH)"
SEEDER = "mhogo"  # who moves the champion when it seeds it, as opposed to an operator or a retraining trigger


@cache
def _seed_sha256(path: Path, mtime_ns: int, size: int) -> str:
    """The seed file's sha256, computed once per version of the file (workers ask every few seconds)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


SEED_ATTEMPTS = 5


def ensure_champion(session: Session, blobs: BlobStore, seed_model: Path) -> ModelVersion:
    """The champion; on a fresh registry, `seed_model` (the committed baseline) is registered and made champion.

    While nobody but mhogo itself has moved the champion, it follows the seed model: an upgrade that ships a new
    baseline serves it. Once an operator or a retraining trigger has chosen a champion, that choice stands. Several
    processes may start at once: the model's row and the alias are written in one transaction, and the loser of the
    race (a unique key the winner took first) reads what the winner wrote."""
    for _ in range(SEED_ATTEMPTS):
        try:
            return _ensure_champion(session, blobs, seed_model)
        except IntegrityError:
            session.rollback()
    raise RegistryError(f"the champion could not be seeded from {seed_model} in {SEED_ATTEMPTS} attempts")


def _ensure_champion(session: Session, blobs: BlobStore, seed_model: Path) -> ModelVersion:
    version = alias_version(session, CHAMPION)
    if version is not None:
        row = get_version(session, version)
        if not _follows_seed(session, row, seed_model):
            return row
        reason = f"the shipped baseline changed (was {row.version})"
    else:
        reason = "first start: the seed model serves"
    row = register(session, blobs, seed_model, made_by=SEED_MAKER, commit=False)
    if alias_version(session, CHAMPION) != row.version:
        set_alias(session, CHAMPION, row.version, SEEDER, reason, commit=False)
    session.commit()
    return row


def _follows_seed(session: Session, champion: ModelVersion, seed_model: Path) -> bool:
    """Whether the seed model should replace this champion: it is an earlier seed, only mhogo ever moved the
    champion, and the seed file holds something else now."""
    if champion.made_by != SEED_MAKER or not seed_model.is_file():
        return False
    stat = seed_model.stat()
    if _seed_sha256(seed_model, stat.st_mtime_ns, stat.st_size) == champion.sha256:
        return False
    return all(change.changed_by == SEEDER for change in history(session, CHAMPION))


def load(blobs: BlobStore, row: ModelVersion) -> Checkpoint:
    """The checkpoint of a registered version, checked against its sha256."""
    from ml.checkpoint import load_checkpoint

    data = blobs.get(require_artifact(row).blob_key)
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise ModelError(f"the artifact of {row.version} does not match its sha256: refusing to serve it")
    return load_checkpoint(data)


def resolve(session: Session, blobs: BlobStore, ref: str | None, seed_model: Path) -> Checkpoint:
    """The checkpoint `ref` names: a checkpoint file, a registered version, an alias (`champion`, `challenger`), or
    by default the champion (seeded from `seed_model` on a fresh registry)."""
    from ml.checkpoint import load_checkpoint

    if ref is not None and Path(ref).is_file():
        return load_checkpoint(Path(ref))
    if ref is None:
        return load(blobs, ensure_champion(session, blobs, seed_model))
    if ref in {alias.value for alias in ModelAliasName}:
        version = alias_version(session, ModelAliasName(ref))
        if version is None:
            raise RegistryError(f"no model is {ref} yet")
        ref = version
    return load(blobs, get_version(session, ref))
