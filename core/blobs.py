"""A content-addressed blob store on the filesystem: photos are written once, atomically, under their sha256.

Keys look like `photos/ab/ab12...ef.jpg`. On several machines, point MHOGO_HOME's blobs folder at shared storage
(NFS, or an S3 bucket mounted with a FUSE driver); the interface is small so an object-store backend can replace it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

KEY_PATTERN = re.compile(r"^[a-z]+/[0-9a-f]{2}/[0-9a-f]{64}(-[a-z0-9]+)?\.[a-z]+$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

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
        """Write to a temporary file, fsync, then rename: a reader sees the whole blob or none of it."""
        path = self.path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
