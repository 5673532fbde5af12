import hashlib
import os
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from core.blobs import BlobStore
from core.files import GroupSync
from tests.utils.processes import wait_for


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


def test_group_sync_flushes_once_for_many_writers_and_never_before_their_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = GroupSync(tmp_path)
    flushes: list[tuple[float, float]] = []
    renamed: dict[str, float] = {}
    returned: dict[int, float] = {}
    replace = os.replace

    def timed_replace(src: str, dst: str) -> None:
        replace(src, dst)
        renamed[Path(dst).name] = time.monotonic()

    monkeypatch.setattr(os, "replace", timed_replace)

    def slow_syncfs(fd: int) -> int:
        started = time.monotonic()
        # The first flush lasts until every writer waits for one: they pile up behind it however the threads are
        # scheduled, and the next flush covers them all. Were writers kept from waiting while a flush runs, this
        # would give up.
        wait_for(lambda: sync._written == len(threads), 10, "every writer to wait for a flush", interval=0.001)
        flushes.append((started, time.monotonic()))
        return 0

    sync._syncfs = slow_syncfs

    def writer(n: int) -> None:
        def write(handle: BinaryIO) -> None:
            handle.write(f"photo {n}".encode())

        sync.write(tmp_path / f"{n}.jpg", write)
        returned[n] = time.monotonic()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(returned) == list(range(24))
    assert all((tmp_path / f"{n}.jpg").read_bytes() == f"photo {n}".encode() for n in range(24))
    assert 1 <= len(flushes) <= 2  # shared: the first, and one for everyone who came during it
    # Each writer returned only after a whole flush that began after its file was renamed into place.
    assert all(any(renamed[f"{n}.jpg"] <= start and end <= returned[n] for start, end in flushes) for n in returned)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_group_sync_really_calls_syncfs_here(tmp_path: Path) -> None:
    sync = GroupSync(tmp_path)
    assert sync._syncfs is not None  # Linux: the grouped path is the one that runs
    sync.write(tmp_path / "a.jpg", lambda handle: handle.write(b"x"))
    assert (tmp_path / "a.jpg").read_bytes() == b"x"
