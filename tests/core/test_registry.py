"""The model registry on SQLite and PostgreSQL: registration, aliases, promotion and rollback with their history."""

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from core import registry, retention
from core.blobs import BlobStore
from core.config import Settings, settings
from ml.checkpoint import load_checkpoint
from ml.files import file_sha256
from schemas.errors import ModelError, RegistryError
from schemas.tables import ModelAliasName, utcnow
from tests.utils.models import tiny_model

CHAMPION, CHALLENGER = ModelAliasName.CHAMPION, ModelAliasName.CHALLENGER


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models"))


def test_a_fresh_registry_serves_the_seed_model(session: Session, blobs: BlobStore) -> None:
    row = registry.ensure_champion(session, blobs, settings.model_path)
    baseline = load_checkpoint(settings.model_path)
    assert row.version == baseline.version
    assert row.sha256 == file_sha256(settings.model_path)
    assert row.dataset_version == baseline.meta["dataset_version"]
    assert row.code_version == baseline.meta["code_version"]
    assert registry.alias_version(session, CHAMPION) == row.version
    assert registry.ensure_champion(session, blobs, settings.model_path).version == row.version
    assert registry.load(blobs, row).version == row.version


def test_registering_twice_is_one_version(session: Session, blobs: BlobStore, second_model: Path) -> None:
    first = registry.register(session, blobs, second_model, made_by="a person")
    again = registry.register(session, blobs, second_model)
    assert first.version == again.version
    assert [v.version for v in registry.versions(session)] == [first.version]
    assert first.made_by == "a person"
    assert first.metrics["test_metrics"]["photos"] > 0


def test_promote_and_rollback_move_the_champion_and_keep_the_history(
    session: Session, blobs: BlobStore, second_model: Path
) -> None:
    baseline = registry.ensure_champion(session, blobs, settings.model_path)
    challenger = registry.register(session, blobs, second_model, parent=baseline.version)
    assert challenger.parent_version == baseline.version
    registry.set_alias(session, CHALLENGER, challenger.version, "trainer")
    change = registry.promote(session, challenger.version, "ops", "better on the holdout")
    assert (change.version, change.previous_version) == (challenger.version, baseline.version)
    assert registry.alias_version(session, CHAMPION) == challenger.version
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(session, challenger.version, "ops")
    back = registry.rollback(session, "ops")
    assert (back.version, back.previous_version) == (baseline.version, challenger.version)
    assert registry.alias_version(session, CHAMPION) == baseline.version
    moves = [(c.version, c.changed_by, c.reason) for c in registry.history(session, CHAMPION)]
    assert moves[1:] == [(challenger.version, "ops", "better on the holdout"),
                         (baseline.version, "ops", f"rollback from {challenger.version}")]  # fmt: skip


def test_operator_mistakes_are_registry_errors(session: Session, blobs: BlobStore, second_model: Path) -> None:
    with pytest.raises(RegistryError, match="no model version"):
        registry.promote(session, "nope", "ops")
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(session, "ops")
    with pytest.raises(RegistryError, match="no model version"):
        registry.register(session, blobs, second_model, parent="nope")


def test_a_tampered_artifact_is_refused(session: Session, blobs: BlobStore) -> None:
    row = registry.ensure_champion(session, blobs, settings.model_path)
    path = blobs.path(row.blob_key)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        registry.load(blobs, row)


def test_the_champion_follows_a_new_seed_model_until_someone_chooses_one(
    session: Session, blobs: BlobStore, second_model: Path, tmp_path: Path
) -> None:
    seed = tmp_path / "baseline.pt"
    seed.write_bytes(settings.model_path.read_bytes())
    first = registry.ensure_champion(session, blobs, seed)
    seed.write_bytes(second_model.read_bytes())  # an upgrade ships another baseline
    upgraded = registry.ensure_champion(session, blobs, seed)
    assert upgraded.version == load_checkpoint(second_model).version != first.version
    assert registry.alias_version(session, CHAMPION) == upgraded.version
    assert registry.history(session, CHAMPION)[-1].reason == f"the shipped baseline changed (was {first.version})"
    assert registry.ensure_champion(session, blobs, seed).version == upgraded.version  # no new move
    assert len(registry.history(session, CHAMPION)) == 2
    registry.promote(session, first.version, "ops", "we trust the older one")
    seed.write_bytes(second_model.read_bytes())
    assert registry.ensure_champion(session, blobs, seed).version == first.version  # the operator's choice stands


def test_processes_starting_together_seed_one_champion(engine: Engine, blobs: BlobStore, second_model: Path) -> None:
    """Inference processes starting at once on a fresh registry: each gets the same champion, none raises (the
    loser of the race once raised IntegrityError on model_versions.version, failing its first task)."""
    start = threading.Barrier(6)
    results: list[str | BaseException] = []

    def seed() -> None:
        with Session(engine) as session:  # a session each, as each process has its own
            start.wait()
            try:
                results.append(registry.ensure_champion(session, blobs, second_model).version)
            except BaseException as exc:
                results.append(exc)

    threads = [threading.Thread(target=seed) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1, results
    assert isinstance(results[0], str)
    with Session(engine) as session:
        assert [change.version for change in registry.history(session, CHAMPION)] == [results[0]]


def test_a_model_whose_checkpoint_retention_deleted_is_refused_until_its_file_is_registered_again(
    session: Session, blobs: BlobStore, second_model: Path, tmp_path: Path
) -> None:
    """A challenger never promoted loses its checkpoint after MHOGO_CHALLENGER_RETENTION_DAYS: promoting or loading
    it then says why (not a missing file's trace), and registering the same file again brings it back."""
    row = registry.register(session, blobs, second_model)
    row.created_at = utcnow() - timedelta(days=60)
    session.add(row)
    session.commit()
    passed = retention.run_pass(lambda: Session(session.get_bind()), blobs, Settings(HOME=tmp_path), utcnow())
    assert passed.counts["challengers"] == 1
    assert not blobs.exists(row.blob_key)
    session.refresh(row)
    with pytest.raises(RegistryError, match="register its file again"):
        registry.load(blobs, row)
    with pytest.raises(RegistryError, match="deleted"):
        registry.promote(session, row.version, "operator")
    again = registry.register(session, blobs, second_model)
    assert again.artifact_deleted_at is None
    assert registry.load(blobs, again).version == row.version
    assert registry.promote(session, row.version, "operator").version == row.version
