"""The on-device model the farmer's app runs offline: the champion's phone build (core.serving.PHONE_RUNTIME), with
what the app needs to know about it (the JSON `mhogo export` writes beside the .onnx, its size and where to fetch
it), ready or on its way.

A build found made (or shipped beside the seed model, a copy away) is used at once. Otherwise making it takes
minutes (an export, and for int8 a calibration), so it is made by one background thread of the process while phones
are told to come back later: the first requests after a promotion wait, the app keeps the model it has meanwhile.
Processes sharing the blob store make it once between them (core.serving.ensure_build's file lock)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.blobs import BlobStore
from core.config import Settings
from core.serving import ensure_phone_build, phone_build_at_hand
from schemas.tables import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhoneBuildFile:
    path: Path
    sha256: str  # of the .onnx file
    manifest: dict[str, Any]  # the build's JSON, its size_bytes and its url


def describe(path: Path) -> PhoneBuildFile:
    spec: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    sha256 = str(spec["sha256"])
    manifest = spec | {"size_bytes": path.stat().st_size, "url": f"/v1/model/{sha256}.onnx"}
    return PhoneBuildFile(path, sha256, manifest)


class PhoneBuilds:
    """The phone build of each version asked for, remembered once found; `make` and `at_hand` (by default
    core.serving's) are swappable for tests."""

    def __init__(
        self,
        config: Settings,
        blobs: BlobStore,
        make: Callable[[ModelVersion], Path] | None = None,
        at_hand: Callable[[ModelVersion], bool] | None = None,
    ) -> None:
        self.make = make or (lambda row: ensure_phone_build(config, blobs, row))
        self.at_hand = at_hand or (lambda row: phone_build_at_hand(config, blobs, row))
        self._lock = threading.Lock()
        self._ready: dict[str, PhoneBuildFile] = {}  # by checkpoint sha256
        self._making: dict[str, threading.Thread] = {}

    def ready(self, row: ModelVersion) -> PhoneBuildFile | None:
        """The version's phone build, or None while it is being made (in the background, started by this call)."""
        with self._lock:
            found = self._ready.get(row.sha256)
        if found is not None and found.path.is_file():
            return found
        if self.at_hand(row):
            return self._remember(row, self.make(row))
        self._start(row)
        return None

    def _remember(self, row: ModelVersion, path: Path) -> PhoneBuildFile:
        found = describe(path)
        with self._lock:
            self._ready[row.sha256] = found
        return found

    def _start(self, row: ModelVersion) -> None:
        with self._lock:
            making = self._making.get(row.sha256)
            if making is not None and making.is_alive():
                return
            # A daemon thread: a process asked to stop does not wait minutes for a build (one cut short is made
            # again by whoever asks next: builds are renamed into place whole).
            thread = threading.Thread(target=self._make, args=(row,), name=f"phone-build-{row.version}", daemon=True)
            self._making[row.sha256] = thread
            thread.start()

    def _make(self, row: ModelVersion) -> None:
        try:
            self._remember(row, self.make(row))
        except Exception:  # logged; the next request starts it again
            log.exception("the phone build of model %s could not be made", row.version)
