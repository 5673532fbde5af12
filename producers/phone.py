"""The phone side: what a good mobile app does, as a library and the `mhogo phone` command. It is the reference for
app developers and the load and fault generator of the tests.

- A durable outbox (SQLite, WAL, every change committed before the next step): a photo is downscaled and
  re-encoded once, when it is taken, and gets its `Idempotency-Key` then; the bytes and the key never change, so
  however often the upload is retried, and whatever kills the app in between, the server makes one job of it.
- Uploads retried with exponential backoff and full jitter; `Retry-After` (429, 503) honoured; a 4xx other than
  those is final (the photo is kept with the server's reason, never retried).
- Results fetched when back online, each photo polled with its own backoff.
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageOps

FINAL = {"classified", "rejected", "failed"}
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (a uniform draw below the exponential cap), as AWS recommends."""

    base_s: float = 1.0
    cap_s: float = 300.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


def shrink(data: bytes, max_side: int, quality: int) -> bytes:
    """Upright, at most `max_side` pixels on its longer side, JPEG: what the phone sends, not the camera's file."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    upright.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    key TEXT PRIMARY KEY,            -- the Idempotency-Key, made once when the photo is taken
    source TEXT NOT NULL,            -- where it came from (a file name), for the person looking
    taken_at REAL NOT NULL,
    original_bytes INTEGER NOT NULL,
    sent_bytes INTEGER NOT NULL,
    state TEXT NOT NULL,             -- waiting (to upload), sent (a job id), done (a result or a final refusal)
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_at REAL NOT NULL DEFAULT 0,
    job_id TEXT,
    result TEXT,                     -- the job as the server last showed it, JSON
    error TEXT
)
"""


@dataclass(frozen=True)
class OutboxPhoto:
    key: str
    source: str
    state: str
    attempts: int
    next_try_at: float
    job_id: str | None
    result: dict[str, Any] | None
    error: str | None
    original_bytes: int
    sent_bytes: int


class Outbox:
    """Photos waiting to go, sent, and done, in `folder/outbox.db` with their bytes in `folder/photos/`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "photos").mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(folder / "outbox.db", isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed change survives the phone losing power
        self.db.execute(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def take(self, source: Path, max_side: int = 1024, quality: int = 85) -> OutboxPhoto:
        """Keep a photo for sending: shrink it, write its bytes, then record it with its new key (in that order, so a
        row always has its bytes)."""
        original = source.read_bytes()
        data = shrink(original, max_side, quality)
        key = uuid.uuid4().hex
        path = self.photo_path(key)
        temporary = path.with_suffix(".part")
        temporary.write_bytes(data)
        temporary.replace(path)
        self.db.execute(
            "INSERT INTO photos (key, source, taken_at, original_bytes, sent_bytes, state) VALUES (?, ?, ?, ?, ?, ?)",
            (key, source.name, time.time(), len(original), len(data), "waiting"),
        )
        return self.get(key)

    def photo_path(self, key: str) -> Path:
        return self.folder / "photos" / f"{key}.jpg"

    def get(self, key: str) -> OutboxPhoto:
        row = self.db.execute("SELECT * FROM photos WHERE key = ?", (key,)).fetchone()
        return self._photo(row)

    def photos(self, state: str | None = None) -> list[OutboxPhoto]:
        if state is None:
            rows = self.db.execute("SELECT * FROM photos ORDER BY taken_at")
        else:
            rows = self.db.execute("SELECT * FROM photos WHERE state = ? ORDER BY taken_at", (state,))
        return [self._photo(row) for row in rows]

    def due(self, state: str, now: float) -> list[OutboxPhoto]:
        rows = self.db.execute(
            "SELECT * FROM photos WHERE state = ? AND next_try_at <= ? ORDER BY taken_at", (state, now)
        )
        return [self._photo(row) for row in rows]

    def update(self, key: str, **values: Any) -> None:
        if "result" in values and values["result"] is not None:
            values["result"] = json.dumps(values["result"])
        columns = ", ".join(f"{name} = ?" for name in values)
        self.db.execute(f"UPDATE photos SET {columns} WHERE key = ?", (*values.values(), key))

    @staticmethod
    def _photo(row: tuple[Any, ...]) -> OutboxPhoto:
        key, source, _, original, sent, state, attempts, next_try_at, job_id, result, error = row
        return OutboxPhoto(key, source, state, attempts, next_try_at, job_id,
                           json.loads(result) if result else None, error, original, sent)  # fmt: skip


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass
class Phone:
    """Sends the outbox's photos and fetches their results, one step at a time (`step`), or until all are done."""

    outbox: Outbox
    client: httpx.Client  # base_url and the device token set
    backoff: Backoff = Backoff()
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.time

    def upload(self, photo: OutboxPhoto) -> None:
        data = self.outbox.photo_path(photo.key).read_bytes()
        headers = {"Idempotency-Key": photo.key, "Content-Type": "image/jpeg"}
        try:
            response = self.client.post("/v1/photos", content=data, headers=headers)
        except httpx.TransportError as exc:  # cut, refused, timed out: try again later, same key, same bytes
            self._later(photo, "waiting", f"{type(exc).__name__}: {exc}")
            return
        if response.status_code == 202:
            self.outbox.update(photo.key, state="sent", job_id=response.json()["job_id"], attempts=0, next_try_at=0,
                               error=None)  # fmt: skip
        elif response.status_code in RETRY_STATUSES:
            self._later(photo, "waiting", f"HTTP {response.status_code}", retry_after(response))
        else:  # the server refused this photo for good (unreadable, not a JPEG or PNG, too large): keep its reason
            detail = response.json().get("detail") if response.headers.get("content-type", "").startswith(
                "application/json") else response.text  # fmt: skip
            self.outbox.update(photo.key, state="done", error=f"HTTP {response.status_code}: {detail}")

    def fetch(self, photo: OutboxPhoto) -> None:
        try:
            response = self.client.get(f"/v1/jobs/{photo.job_id}")
        except httpx.TransportError as exc:
            self._later(photo, "sent", f"{type(exc).__name__}: {exc}")
            return
        if response.status_code != 200:
            self._later(photo, "sent", f"HTTP {response.status_code}", retry_after(response))
            return
        job = response.json()
        if job["status"] in FINAL:
            self.outbox.update(photo.key, state="done", result=job, error=None)
        else:  # not ready: look again soon, then less often
            self._later(photo, "sent", None, min(30.0, 0.5 * 2 ** min(photo.attempts, 6)))

    def _later(self, photo: OutboxPhoto, state: str, error: str | None, wait: float | None = None) -> None:
        delay = wait if wait is not None else self.backoff.delay(photo.attempts, self.rng)
        self.outbox.update(photo.key, state=state, attempts=photo.attempts + 1, next_try_at=self.clock() + delay,
                           error=error)  # fmt: skip

    def step(self) -> int:
        """Upload what is due, then fetch what is due; the number of photos not done yet."""
        now = self.clock()
        for photo in self.outbox.due("waiting", now):
            self.upload(photo)
        for photo in self.outbox.due("sent", now):
            self.fetch(photo)
        return len(self.outbox.photos("waiting")) + len(self.outbox.photos("sent"))

    def sync(self, timeout_s: float, tick_s: float = 0.2) -> Iterator[OutboxPhoto]:
        """Step until every photo is done or the time is up, yielding each photo as it gets done."""
        deadline = time.monotonic() + timeout_s
        reported = {photo.key for photo in self.outbox.photos("done")}
        while True:
            left = self.step()
            for photo in self.outbox.photos("done"):
                if photo.key not in reported:
                    reported.add(photo.key)
                    yield photo
            if not left or time.monotonic() > deadline:
                return
            time.sleep(tick_s)


@contextmanager
def open_phone(folder: Path, api_url: str, token: str, timeout_s: float = 30.0) -> Iterator[Phone]:
    outbox = Outbox(folder)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=api_url, headers=headers, timeout=timeout_s) as client:
            yield Phone(outbox, client)
    finally:
        outbox.close()
