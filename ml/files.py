"""Writing files so that a reader, or a crash, never sees half of one: checkpoints, builds and blobs alike."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_and_rename(path: Path, write: Callable[[BinaryIO], object], sync: bool) -> None:
    """Write through `write` into a temporary file beside `path` (fsynced if `sync`), then rename it over `path`:
    a reader sees the old file or the whole new one. On any error nothing is left behind. The file is readable by
    its owner only, as mkstemp makes it (photos and models are not everyone's to read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write_and_rename`, durably: the file is fsynced, and so is the folder, so that the rename itself survives
    a power cut."""
    write_and_rename(path, write, sync=True)
    fsync_folder(path.parent)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
