"""The phone side: what a good mobile app does, as a library and the `mhogo phone` command. It is the reference for
app developers and the load and fault generator of the tests.

- A durable outbox (SQLite, WAL, every change committed before the next step): a photo is downscaled and
  re-encoded once, when it is taken, and gets its `Idempotency-Key` then; the bytes and the key never change, so
  however often the upload is retried, and whatever kills the app in between, the server makes one job of it.
- Uploads retried with exponential backoff and full jitter; `Retry-After` (429, 503) honoured; a 4xx other than
  those is final (the photo is kept with the server's reason, never retried).
- Photos larger than `resumable_above` go by resumable upload (tus 1.0, with a sha1 checksum per chunk): the
  upload's address is kept in the outbox, so after a cut link, a restart or a kill the phone asks the server how
  much arrived (HEAD) and sends only the rest.
- Results fetched when back online, each photo polled with its own backoff.
"""

from __future__ import annotations

import base64
import hashlib
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
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image, ImageOps

if TYPE_CHECKING:
    from ml.phone_build import PhoneBuild

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
    error TEXT,
    upload_url TEXT,                 -- the resumable upload under way, if any
    provisional TEXT                 -- the phone model's answer, JSON, given offline when the photo was taken
)
"""
ADDED_COLUMNS = ("upload_url", "provisional")  # to an outbox made by an older version of the app
TUS = {"Tus-Resumable": "1.0.0"}


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
    upload_url: str | None = None
    provisional: dict[str, Any] | None = None

    @property
    def answer(self) -> dict[str, Any] | None:
        """What the app shows: the server's diagnosis once it came, else the phone's own, marked provisional."""
        if self.result is not None and self.result.get("status") in FINAL:
            return {"source": "server", **self.result}
        return self.provisional


class Outbox:
    """Photos waiting to go, sent, and done, in `folder/outbox.db` with their bytes in `folder/photos/`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "photos").mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(folder / "outbox.db", isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed change survives the phone losing power
        self.db.execute(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(photos)")}
        for column in ADDED_COLUMNS:
            if column not in columns:
                self.db.execute(f"ALTER TABLE photos ADD COLUMN {column} TEXT")

    def close(self) -> None:
        self.db.close()

    def take(
        self, source: Path, max_side: int = 1024, quality: int = 85, offline: PhoneBuild | None = None
    ) -> OutboxPhoto:
        """Keep a photo for sending: shrink it, write its bytes, then record it with its new key (in that order, so a
        row always has its bytes). With the phone build (`offline`), the photo gets a provisional answer at once,
        network or not, from exactly the bytes the server will see."""
        original = source.read_bytes()
        data = shrink(original, max_side, quality)
        guess = json.dumps({"source": "phone", "provisional": True, **offline.diagnose(data)}) if offline else None
        key = uuid.uuid4().hex
        path = self.photo_path(key)
        temporary = path.with_suffix(".part")
        temporary.write_bytes(data)
        temporary.replace(path)
        self.db.execute(
            "INSERT INTO photos (key, source, taken_at, original_bytes, sent_bytes, state, provisional) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, source.name, time.time(), len(original), len(data), "waiting", guess),
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
        key, source, _, original, sent, state, attempts, next_try_at, job_id, result, error, upload_url, guess = row
        return OutboxPhoto(key, source, state, attempts, next_try_at, job_id, json.loads(result) if result else None,
                           error, original, sent, upload_url, json.loads(guess) if guess else None)  # fmt: skip


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

    resumable_above: int = 256 * 1024  # bytes; larger photos go by resumable upload
    chunk_bytes: int = 64 * 1024  # per PATCH: about 10 s at 2G speed, so a cut link loses little

    def upload(self, photo: OutboxPhoto) -> None:
        data = self.outbox.photo_path(photo.key).read_bytes()
        try:
            if len(data) > self.resumable_above:
                self.upload_resumable(photo, data)
            else:
                headers = {"Idempotency-Key": photo.key, "Content-Type": "image/jpeg"}
                response = self.client.post("/v1/photos", content=data, headers=headers)
                if response.status_code == 202:
                    self._sent(photo, response.json()["job_id"])
                else:
                    self._not_taken(photo, response)
        except httpx.TransportError as exc:  # cut, refused, timed out: try again later, same key, same bytes
            self._later(photo, "waiting", f"{type(exc).__name__}: {exc}")

    def upload_resumable(self, photo: OutboxPhoto, data: bytes) -> None:
        """Create the upload once (its address kept in the outbox), then send chunk after chunk from wherever the
        server says it stands. Every request is safe to repeat: the creation by its Idempotency-Key, a chunk by its
        Upload-Offset (a repeat is refused with 409, and HEAD tells where to go on)."""
        url = photo.upload_url
        if url is None:
            created = self.client.post("/v1/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                       "Idempotency-Key": photo.key, "Upload-Metadata": "filetype " +
                                       base64.b64encode(b"image/jpeg").decode()})  # fmt: skip
            if created.status_code != 201:
                self._not_taken(photo, created)
                return
            url = created.headers["Location"]
            self.outbox.update(photo.key, upload_url=url)
        probe = self.client.head(url, headers=TUS)
        if probe.status_code in (404, 410):  # expired or dropped on the server: start again, same key
            self.outbox.update(photo.key, upload_url=None)
            self._later(photo, "waiting", f"upload gone (HTTP {probe.status_code})", 0.0)
            return
        if probe.status_code != 200:
            self._not_taken(photo, probe)
            return
        offset, job_id = int(probe.headers["Upload-Offset"]), probe.headers.get("Mhogo-Job-Id")
        while job_id is None:
            chunk = data[offset : offset + self.chunk_bytes]
            checksum = base64.b64encode(hashlib.sha1(chunk).digest()).decode()
            response = self.client.patch(url, content=chunk, headers={**TUS, "Upload-Offset": str(offset),
                                         "Content-Type": "application/offset+octet-stream",
                                         "Upload-Checksum": f"sha1 {checksum}"})  # fmt: skip
            if response.status_code in (409, 460):  # not where we thought, or damaged on the way: ask again soon
                self._later(photo, "waiting", f"HTTP {response.status_code}", 0.0)
                return
            if response.status_code != 204:
                self._not_taken(photo, response)
                return
            offset, job_id = int(response.headers["Upload-Offset"]), response.headers.get("Mhogo-Job-Id")
            if photo.attempts:  # progress: the next cut starts its backoff afresh
                self.outbox.update(photo.key, attempts=0)
                photo = self.outbox.get(photo.key)
        self._sent(photo, job_id)

    def _sent(self, photo: OutboxPhoto, job_id: str) -> None:
        self.outbox.update(photo.key, state="sent", job_id=job_id, attempts=0, next_try_at=0, error=None,
                           upload_url=None)  # fmt: skip

    def _not_taken(self, photo: OutboxPhoto, response: httpx.Response) -> None:
        """Busy, limited or briefly down: later, as the server asks. Anything else is the server's final word on
        this photo (unreadable, not a JPEG or PNG, too large): keep its reason, never send it again."""
        if response.status_code in RETRY_STATUSES:
            self._later(photo, "waiting", f"HTTP {response.status_code}", retry_after(response))
            return
        detail = response.json().get("detail") if response.headers.get("content-type", "").startswith(
            "application/json") else response.text  # fmt: skip
        self.outbox.update(photo.key, state="done", error=f"HTTP {response.status_code}: {detail}", upload_url=None)

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
