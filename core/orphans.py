"""The orphan sweep: photo files no job refers to. An upload refused once its bytes were written (its key taken by
another API process meanwhile, its database full), or cut off between the write and the commit (the process killed,
the database gone), leaves its photo behind; nothing else would ever delete it. Uploads write no file for a key
they know already (producers.intake), so orphans are few, and a sweep looks at few files.

Each sweep (core.sweeper) walks one of the 256 folders of `photos/`, which one following the clock, so that every
folder is walked within 256 sweeps (about two hours at MHOGO_SWEEP_INTERVAL_S = 30 s); on a store of a million
photos that is some 4000 files a sweep, and one query per 500 of them on an index. Of the files older than
MHOGO_ORPHAN_GRACE_S, those no job keeps (retention may have let go of them: `photo_deleted_at`) are renamed aside,
asked about once more, and deleted, unless meanwhile a job took one or an upload found it stored (core.blobs touches
such a file): then it is put back. An upload that comes after the rename finds no file and writes its own, so no
job is ever left without its photo. Temporary files of writes cut short, older than the grace, go too. A sweep cut
short leaves files aside under `.<name>.orphan`: the next sweep of that folder finishes them."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlmodel import Session, col, select

from core.blobs import KEY_PATTERN, BlobStore
from schemas.tables import Job

log = logging.getLogger(__name__)

NAMESPACE = "photos"
SHARDS = 256
ASIDE = ".orphan"  # `.<name>.orphan`: a temporary file's random tail (ml.files) never ends so: it has no dot
QUERY_CHUNK = 500  # keys per query: far below SQLite's limit on parameters


def shard_at(now: datetime, interval_s: float) -> int:
    """The folder a sweep at `now` walks: the next one every `interval_s` seconds, all of them in turn."""
    return int(now.timestamp() // interval_s) % SHARDS


def photos_in_use(session: Session, keys: Iterable[str]) -> set[str]:
    """Those of `keys` that a job refers to and keeps (its photo not let go of by retention)."""
    ordered, used = sorted(keys), set[str]()
    for start in range(0, len(ordered), QUERY_CHUNK):
        chunk = ordered[start : start + QUERY_CHUNK]
        statement = select(Job.blob_key).where(col(Job.blob_key).in_(chunk), col(Job.photo_deleted_at).is_(None))
        used.update(session.exec(statement).all())
    return used


def sweep_orphans(session: Session, blobs: BlobStore, shard: int, grace_s: float, now: datetime) -> Counter[str]:
    """Delete the orphans of one folder of photos, older than `grace_s` at `now`; the counts of what went."""
    folder = blobs.folder(NAMESPACE, shard)
    cutoff = now.timestamp() - grace_s
    counts: Counter[str] = Counter()
    old: dict[str, Path] = {}  # photo files past the grace, by key
    aside: dict[str, Path] = {}  # files renamed aside, by the key they were stored under
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return counts
    prefix = f"{NAMESPACE}/{shard:02x}/"
    for entry in entries:
        path, name = Path(entry.path), entry.name
        if name.startswith(".") and name.endswith(ASIDE) and KEY_PATTERN.match(prefix + name[1 : -len(ASIDE)]):
            aside[prefix + name[1 : -len(ASIDE)]] = path
        elif name.startswith("."):  # a write cut short (ml.files.write_and_rename's temporary file)
            if _older(path, cutoff) and _remove(path, counts):
                counts["partial_files"] += 1
        elif KEY_PATTERN.match(prefix + name) and _older(path, cutoff):
            old[prefix + name] = path
    for key in old.keys() - photos_in_use(session, old):
        try:
            os.rename(old[key], _aside(old[key]))
        except FileNotFoundError:  # retention deleted it meanwhile
            continue
        aside[key] = _aside(old[key])
    if aside:
        session.rollback()  # a fresh look: a SQLite read transaction would still see the database as it was
        in_use = photos_in_use(session, aside)  # once more: no upload can find them where they were any more
        for key, path in aside.items():
            _settle(blobs, key, path, key in in_use or not _older(path, cutoff), counts)
    if counts:
        log.info("orphan sweep of %s/%02x: %s", NAMESPACE, shard, dict(counts))
    return counts


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}{ASIDE}")


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _settle(blobs: BlobStore, key: str, path: Path, keep: bool, counts: Counter[str]) -> None:
    """Put a file back (a job took it, or an upload touched it, meanwhile) or delete it."""
    if not keep:
        if _remove(path, counts):
            counts["orphan_files"] += 1
        return
    try:
        os.replace(path, blobs.path(key))  # over an upload's new copy, if any: the same bytes, by their hash
    except OSError as exc:
        log.warning("orphan sweep could not put %s back: %s", key, exc)
        counts["errors"] += 1
        return
    counts["orphans_taken_back"] += 1


def _remove(path: Path, counts: Counter[str]) -> bool:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("orphan sweep could not delete %s: %s", path.name, exc)
        counts["errors"] += 1
        return False
    counts["bytes_freed"] += size
    return True
