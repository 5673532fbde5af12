"""Durable writes of many small files at the cost of few flushes of the disk (the blob store's group commit)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ml.files import atomic_write, fsync_folder, write_and_rename

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})  # the disk, or the user's quota on it, is full


def no_room(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_ROOM


def free_bytes(path: Path) -> int:
    """Free space for mhogo (not root's reserve) on the filesystem that holds `path`, or would hold it: the nearest
    folder that exists answers for one not made yet."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def _syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2), which flushes one filesystem: data and metadata of every file on it. None elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    function = getattr(libc, "syncfs", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


class GroupSync:
    """Durable writes of many small files at the cost of few flushes: each writer writes and renames its file, then
    waits for one syncfs(2) that started after its rename. Whichever writer finds no flush running starts one for all
    that are waiting, as a database's group commit does. Two fsyncs per file (the file, then its folder for the
    rename) made concurrent uploads queue on the filesystem journal (bench/upload_api.py). Where syncfs is missing,
    each write falls back to `atomic_write`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._syncfs = _syncfs()
        self._ready = threading.Condition()
        self._written = 0  # tickets handed out: one per finished rename
        self._durable = 0  # every ticket up to this one is flushed
        self._flushing = False

    @property
    def grouped(self) -> bool:
        """Whether `wait` flushes the filesystem; without syncfs, each writer fsyncs its own file and folder."""
        return self._syncfs is not None

    def write(self, path: Path, write: Callable[[BinaryIO], object]) -> None:
        self.stage(path, write)
        self.wait()

    def stage(self, path: Path, write: Callable[[BinaryIO], object]) -> None:
        """Write and rename, durable after the next `wait` (at once where syncfs is missing)."""
        if self._syncfs is None:
            atomic_write(path, write)
        else:
            write_and_rename(path, write, sync=False)

    def wait(self) -> None:
        """Return once every file renamed before this call is on disk (a file another thread wrote, too)."""
        if self._syncfs is None:
            return
        with self._ready:
            self._written += 1
            ticket = self._written
            while self._durable < ticket:
                if self._flushing:
                    self._ready.wait()
                    continue
                self._flushing, covered = True, self._written  # renames done before the flush starts
                self._ready.release()
                try:
                    self._flush()
                finally:
                    self._ready.acquire()
                    self._flushing = False
                    self._ready.notify_all()
                self._durable = max(self._durable, covered)

    def _flush(self) -> None:
        assert self._syncfs is not None
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if self._syncfs(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"syncfs {self.root}: {os.strerror(error)}")
        finally:
            os.close(fd)


class PieceWriter:
    """A file written piece by piece as its bytes arrive (a resumable upload's body), into a hidden temporary file
    beside `path`: `keep` renames it to `path`, on disk for good once it returns (through the group's flush); `discard`
    removes it. Nothing written, no file at all. A crash leaves at most the hidden file, which nothing refers to."""

    def __init__(self, sync: GroupSync, path: Path) -> None:
        self.path = path
        self.size = 0
        self._sync = sync
        self._handle: BinaryIO | None = None
        self._temporary: Path | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            self._temporary = Path(name)
            self._handle = os.fdopen(fd, "wb")
        self._handle.write(data)
        self.size += len(data)

    def keep(self) -> None:
        """Rename what was written to `path`, durably. On any error nothing is left under `path`."""
        if self._handle is None or self._temporary is None:
            return
        handle, temporary = self._handle, self._temporary
        try:
            handle.flush()
            if not self._sync.grouped:
                os.fsync(handle.fileno())
            handle.close()
            self._handle = None
            os.utime(temporary)  # its time is when it was kept, not when its first byte came
            os.replace(temporary, self.path)
            self._temporary = None
            if self._sync.grouped:
                self._sync.wait()
            else:
                fsync_folder(self.path.parent)
        except BaseException:
            self.discard()
            self.path.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):  # a full disk fails the flush of what is thrown away anyway
                self._handle.close()
            self._handle = None
        if self._temporary is not None:
            self._temporary.unlink(missing_ok=True)
            self._temporary = None
