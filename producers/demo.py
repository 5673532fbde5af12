"""The demo: send the sample photos through the HTTP API from a phone (producers/phone.py), and print each
diagnosis as it arrives."""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings
from core.db import open_session
from core.devices import add_device
from producers.phone import MEDIA_TYPES, OutboxPhoto, open_phone


@dataclass(frozen=True)
class SamplePhoto:
    path: Path
    expected: str  # the class folder, or "not cassava"


def sample_photos(root: Path) -> list[SamplePhoto]:
    photos = [
        SamplePhoto(path, path.parent.name)
        for path in sorted((root / "cassava").glob("*/*"))
        if path.suffix.lower() in MEDIA_TYPES
    ]
    photos += [
        SamplePhoto(path, "not cassava")
        for path in sorted((root / "negatives").glob("*"))
        if path.suffix.lower() in MEDIA_TYPES
    ]
    return photos


def describe(job: dict[str, Any], photo: SamplePhoto) -> str:
    name = f"{photo.path.parent.name}/{photo.path.name}"
    if job["status"] == "classified":
        result = job["result"]
        mark = "ok" if result["label"] == photo.expected else f"expected {photo.expected}"
        return f"{name:42} {result['label']:8} {result['confidence']:.2f}  {result['name']}  [{mark}]"
    if job["status"] == "rejected":
        rejection = job["rejection"]
        return f"{name:42} rejected ({rejection['reason']}): {rejection['message']}"
    return f"{name:42} {job['status']}: {job.get('error')}"


@dataclass
class Tally:
    classified: int = 0
    rejected: int = 0
    failed: int = 0  # failed on the server, or refused by it
    cassava: int = 0
    correct: int = 0

    def count(self, done: OutboxPhoto, photo: SamplePhoto) -> str:
        """Count a photo that is done; the line that says how it ended."""
        if not done.finished:
            self.failed += 1
            return f"demo: {photo.path.name} refused: {done.error}"
        job = done.result or {}
        setattr(self, job["status"], getattr(self, job["status"]) + 1)
        if photo.expected != "not cassava":
            self.cassava += 1
            self.correct += bool(job.get("result") and job["result"]["label"] == photo.expected)
        return describe(job, photo)


def run_demo(api_url: str, token: str, samples: Path, timeout_s: float = 120.0) -> int:
    """Upload every sample photo, print each result as it comes; 0 when all finished."""
    photos = sample_photos(samples)
    print(f"demo: sending {len(photos)} sample photos to {api_url}; results as they arrive:", flush=True)
    tally = Tally()
    # A phone freshly installed each run; the photos keep the keys of their bytes, so a rerun is a replay. Someone
    # watches the results come from a server at hand: look at each job every second at most.
    with (
        tempfile.TemporaryDirectory(prefix="mhogo-demo-") as folder,
        open_phone(Path(folder), api_url, token, poll_cap_s=1.0) as phone,
    ):
        taken = {}
        for photo in photos:
            key = hashlib.sha256(photo.path.read_bytes()).hexdigest()
            taken[phone.outbox.take(photo.path, as_is=True, key=key).key] = photo
        for done in phone.sync(timeout_s):
            print(tally.count(done, taken[done.key]), flush=True)
        unfinished = phone.outbox.left()
        waiting = Counter(photo.error or photo.state for photo in phone.outbox.photos() if photo.state != "done")
    if waiting:  # why, as the phone last heard it: no answer yet, or the server asked it to wait (429, 503)
        print(f"demo: not finished: {dict(waiting)}", flush=True)
    accuracy = tally.correct / max(tally.cassava, 1)
    print(
        f"demo: {tally.classified} classified, {tally.rejected} rejected, {tally.failed} failed, "
        f"{unfinished} unfinished; {tally.correct}/{tally.cassava} cassava photos labelled as their "
        f"folder ({accuracy:.0%})",
        flush=True,
    )
    return 0 if not unfinished and tally.failed == 0 else 1


def demo_with_new_device(settings: Settings, samples: Path, api_url: str | None = None) -> int:
    """Register a `demo` device straight in the database (same machine), then run the demo with its token."""
    with open_session(settings.database_url) as session:
        _, token = add_device(session, "demo")
    return run_demo(api_url or settings.public_url, token, samples)
