import hashlib
import os
from pathlib import Path

import pytest

from core.blobs import BlobStore


def test_put_is_content_addressed_and_idempotent(blobs: BlobStore) -> None:
    key = blobs.put("photos", b"leaf", ".jpg")
    sha = hashlib.sha256(b"leaf").hexdigest()
    assert key == f"photos/{sha[:2]}/{sha}.jpg"
    assert blobs.put("photos", b"leaf", ".jpg") == key
    assert blobs.get(key) == b"leaf"
    assert blobs.exists(key)


def test_write_leaves_no_temporary_files(blobs: BlobStore) -> None:
    key = blobs.put("photos", b"x" * 10_000, ".png")
    folder = blobs.path(key).parent
    assert [p.name for p in folder.iterdir()] == [blobs.path(key).name]


def test_failed_write_leaves_nothing_behind(blobs: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        blobs.put("photos", b"leaf", ".jpg")
    assert not any(p.is_file() for p in Path(blobs.root).rglob("*"))


@pytest.mark.parametrize("key", ["../etc/passwd", "photos/ab/../../x", "photos/zz/abc.jpg", "/abs/path", ""])
def test_keys_cannot_escape_the_store(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="not a blob key"):
        blobs.path(key)
