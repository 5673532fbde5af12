"""A content-addressed blob store on the filesystem: photos are written once, atomically, under their sha256.

Keys look like `photos/ab/ab12...ef.jpg`; the parts of resumable uploads, written as their bytes arrive, each have a
random one (`parts/cd/cd34...01.part`, core.uploads). On several machines, point MHOGO_HOME's blobs folder at shared
storage (NFS, or an S3 bucket mounted with a FUSE driver); the interface is small so an object-store backend can
replace it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.files import GroupSync, PieceWriter, no_room
from schemas.errors import StorageFull

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9]*/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z]+$")
FULL = "mhogo has no room left to store photos. Keep the photo and send it again later."


@contextmanager
def room_to_write() -> Iterator[None]:
    """A full disk (or quota) is StorageFull, which the sender can wait out; other errors stay what they are."""
    try:
        yield
    except OSError as exc:
        if no_room(exc):
            raise StorageFull(FULL) from exc
        raise


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._sync = GroupSync(root)

    @staticmethod
    def key_for(namespace: str, sha256: str, suffix: str) -> str:
        return f"{namespace}/{sha256[:2]}/{sha256}{suffix}"

    def path(self, key: str) -> Path:
        if not KEY_PATTERN.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key

    def put(self, namespace: str, data: bytes, suffix: str) -> str:
        """Store `data` under its own hash; storing the same bytes twice is a no-op."""
        key = self.key_for(namespace, hashlib.sha256(data).hexdigest(), suffix)
        self.put_at(key, data)
        return key

    def put_at(self, key: str, data: bytes) -> None:
        """Write atomically: a reader sees the whole blob or none of it. Durably: it survives a power cut once this
        returns (flushes shared with concurrent writers). An existing blob is never rewritten."""
        self.stage(key, data)
        self.flush()

    def stage(self, key: str, data: bytes) -> None:
        """Write atomically, but durably only after the next `flush`: many blobs staged, then one flush for all. An
        existing blob is never rewritten (its own writer's flush, or the next one, makes it durable)."""
        path = self.path(key)
        try:
            os.utime(path)  # stored already: touched, so that the orphan sweep (core.orphans) sees it in use again
            return
        except FileNotFoundError:
            pass
        with room_to_write():
            self._sync.stage(path, lambda handle: handle.write(data))

    def flush(self) -> None:
        """Return once every blob staged before this call, by any thread or process, is on disk. StorageFull when
        the filesystem could not keep them (a full disk found at writeback)."""
        with room_to_write():
            self._sync.wait()

    def folder(self, namespace: str, shard: int) -> Path:
        """One of the 256 folders of a namespace: its keys' hashes start with `shard` in two hex digits."""
        return self.root / namespace / f"{shard:02x}"

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def remove(self, key: str) -> int | None:
        """Delete a blob (retention does, once nothing kept refers to it); the bytes freed, None when it was gone."""
        path = self.path(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return None
        return size

    def writer(self, key: str) -> PieceWriter:
        """A new blob written piece by piece as its bytes arrive: under `key` only once kept, and durable then."""
        return PieceWriter(self._sync, self.path(key))
