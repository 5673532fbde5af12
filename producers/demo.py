"""The demo: send the sample photos through the HTTP API, as phones would, and print each diagnosis as it arrives."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlmodel import Session

from core.config import Settings
from core.db import get_engine, init_db
from core.devices import add_device

MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
FINAL = {"classified", "rejected", "failed"}


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


def describe(job: dict[str, object], photo: SamplePhoto) -> str:
    name = f"{photo.path.parent.name}/{photo.path.name}"
    if job["status"] == "classified":
        result = job["result"]
        assert isinstance(result, dict)
        mark = "ok" if result["label"] == photo.expected else f"expected {photo.expected}"
        return f"{name:42} {result['label']:8} {result['confidence']:.2f}  {result['name']}  [{mark}]"
    if job["status"] == "rejected":
        rejection = job["rejection"]
        assert isinstance(rejection, dict)
        return f"{name:42} rejected ({rejection['reason']}): {rejection['message']}"
    return f"{name:42} {job['status']}: {job.get('error')}"


def run_demo(api_url: str, token: str, samples: Path, timeout_s: float = 120.0) -> int:
    """Upload every sample photo, poll until each is finished, print as results come; 0 when all finished."""
    photos = sample_photos(samples)
    print(f"demo: sending {len(photos)} sample photos to {api_url}", flush=True)
    headers = {"Authorization": f"Bearer {token}"}
    pending: dict[str, SamplePhoto] = {}
    counts = {"classified": 0, "rejected": 0, "failed": 0, "correct": 0, "cassava": 0}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        for photo in photos:
            data = photo.path.read_bytes()
            response = client.post(
                "/v1/photos",
                content=data,
                headers={
                    "Content-Type": MEDIA_TYPES[photo.path.suffix.lower()],
                    "Idempotency-Key": hashlib.sha256(data).hexdigest(),  # same photo, same key: a rerun is a replay
                },
            )
            if response.status_code != 202:
                print(f"demo: {photo.path.name} refused: {response.status_code} {response.text}", flush=True)
                counts["failed"] += 1
                continue
            pending[response.json()["job_id"]] = photo
        print(f"demo: {len(pending)} accepted; results as they arrive:", flush=True)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for job_id, photo in list(pending.items()):
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] not in FINAL:
                    continue
                del pending[job_id]
                counts[job["status"]] += 1
                if photo.expected != "not cassava":
                    counts["cassava"] += 1
                    counts["correct"] += bool(job["result"] and job["result"]["label"] == photo.expected)
                print(describe(job, photo), flush=True)
            time.sleep(0.3)
    accuracy = counts["correct"] / max(counts["cassava"], 1)
    print(
        f"demo: {counts['classified']} classified, {counts['rejected']} rejected, {counts['failed']} failed, "
        f"{len(pending)} unfinished; {counts['correct']}/{counts['cassava']} cassava photos labelled as their "
        f"folder ({accuracy:.0%})",
        flush=True,
    )
    return 0 if not pending and counts["failed"] == 0 else 1


def demo_with_new_device(settings: Settings, samples: Path, api_url: str | None = None) -> int:
    """Register a `demo` device straight in the database (same machine), then run the demo with its token."""
    engine = get_engine(settings.database_url)
    init_db(engine)
    with Session(engine) as session:
        _, token = add_device(session, "demo")
    return run_demo(api_url or settings.public_url, token, samples)
