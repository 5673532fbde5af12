"""The phone side: what a good mobile app does, as a library and the `mhogo phone` command. It is the reference for
app developers and the load and fault generator of the tests.

- A durable outbox (SQLite, WAL, every change committed before the next step): a photo is downscaled and
  re-encoded once, when it is taken, and gets its `Idempotency-Key` then; the bytes and the key never change, so
  however often the upload is retried, and whatever kills the app in between, the server makes one job of it.
- Uploads retried with exponential backoff and full jitter; `Retry-After` (429, 503) honoured; a 4xx other than
  those is final (the photo is kept with the server's reason, never retried).
- Photos larger than `resumable_above` go by resumable upload (tus 1.0): the upload's address is kept in the
  outbox, so after a cut link, a restart or a kill the phone asks the server how much arrived (HEAD) and sends only
  the rest. The server keeps the part of a chunk that arrived before a cut, so no checksum is sent with a chunk (the
  tus checksum extension would have the server drop a part it cannot verify, and a link that drops every few KB
  would never get a 64 KiB chunk through); the server checks the whole photo when the last byte is in.
- Results fetched when back online, each photo polled with its own backoff.
- Feedback ("this leaf has CMD") kept in the same outbox with its own `Idempotency-Key`, sent once the photo's
  diagnosis is in, retried like an upload: one event on the server however often it goes.
- A 429 or 503 with `Retry-After` holds back the whole action (uploads, or feedback) for that long, not only the
  request that got it: the server counts per device, so the next photo would be refused too.

The demo (`producers/demo.py`) and the retraining scenario (`mhogo/scenario.py`) are phones of this kind; they take
photos as they are (`as_is`), since what they measure needs the server to see the original bytes.
"""

from __future__ import annotations

import base64
import io
import json
import random
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image, ImageOps

from schemas.statuses import TERMINAL_STATUSES

if TYPE_CHECKING:
    from ml.phone_build import PhoneBuild

MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}  # photo files, by their suffix
NEW_UPLOADS = "new uploads"  # what a 429 to a resumable upload's creation holds back (the server's open-upload bound)
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504, 507}  # 507: the server's disk is full for now


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
    key TEXT PRIMARY KEY,            -- the Idempotency-Key, made once when the photo is taken (or the caller's)
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
    provisional TEXT,                -- the phone model's answer, JSON, given offline when the photo was taken
    media_type TEXT                  -- what the bytes are: image/jpeg once shrunk; a photo taken as it is, by its name
);
CREATE TABLE IF NOT EXISTS feedback (
    key TEXT PRIMARY KEY,            -- its Idempotency-Key, made once when the feedback is given
    photo TEXT NOT NULL REFERENCES photos (key),
    label TEXT NOT NULL,
    source TEXT NOT NULL,            -- farmer (an older app's outbox may say agronomist: the server refuses it)
    comment TEXT,
    given_at REAL NOT NULL,
    state TEXT NOT NULL,             -- waiting (to be sent), done (taken, or refused for good)
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_at REAL NOT NULL DEFAULT 0,
    event_id TEXT,
    error TEXT
);
"""
ADDED_COLUMNS = ("upload_url", "provisional", "media_type")  # to an outbox made by an older version of the app
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
    media_type: str = "image/jpeg"

    @property
    def finished(self) -> bool:
        """The server's answer is in: classified, rejected or failed."""
        return self.result is not None and self.result.get("status") in TERMINAL_STATUSES

    @property
    def answer(self) -> dict[str, Any] | None:
        """What the app shows: the server's diagnosis once it came, else the phone's own, marked provisional."""
        if self.result is not None and self.finished:
            return {"source": "server", **self.result}
        return self.provisional


@dataclass(frozen=True)
class OutboxFeedback:
    """What someone said a photo really shows, waiting to be sent or done."""

    key: str
    photo: str  # the photo's key in the outbox
    label: str
    source: str
    comment: str | None
    given_at: float
    state: str
    attempts: int
    next_try_at: float
    event_id: str | None
    error: str | None


class Outbox:
    """Photos waiting to go, sent, and done, in `folder/outbox.db` with their bytes in `folder/photos/`; and the
    feedback given on them. One thread at a time may use it, not necessarily the one that opened it (an app's sync
    runs in the background)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "photos").mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(folder / "outbox.db", isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed change survives the phone losing power
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(photos)")}
        for column in ADDED_COLUMNS:
            if column not in columns:
                self.db.execute(f"ALTER TABLE photos ADD COLUMN {column} TEXT")

    def close(self) -> None:
        self.db.close()

    def take(
        self, source: Path, max_side: int = 1024, quality: int = 85, offline: PhoneBuild | None = None,
        *, as_is: bool = False, key: str | None = None,
    ) -> OutboxPhoto:  # fmt: skip
        """Keep a photo for sending: shrink it, write its bytes, then record it with its new key (in that order, so a
        row always has its bytes). With the phone build (`offline`), the photo gets a provisional answer at once,
        network or not, from exactly the bytes the server will see.

        `as_is` keeps the file's own bytes (for callers that need the server to see the original). `key` is the
        caller's Idempotency-Key instead of a new one, so the same photo taken by another run of the caller is a
        replay on the server; a key this outbox holds already is that photo, returned as it is."""
        if key is not None and (known := self.find(key)) is not None:
            return known
        original = source.read_bytes()
        data = original if as_is else shrink(original, max_side, quality)
        # A name the server does not know goes as bytes of unknown type: the server tells a JPEG or PNG by its bytes.
        media = MEDIA_TYPES.get(source.suffix.lower(), "application/octet-stream") if as_is else "image/jpeg"
        guess = json.dumps({"source": "phone", "provisional": True, **offline.diagnose(data)}) if offline else None
        key = key or uuid.uuid4().hex
        path = self.photo_path(key)
        temporary = path.with_suffix(".part")
        temporary.write_bytes(data)
        temporary.replace(path)
        self.db.execute(
            "INSERT INTO photos (key, source, taken_at, original_bytes, sent_bytes, state, provisional, media_type) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, source.name, time.time(), len(original), len(data), "waiting", guess, media),
        )
        return self.get(key)

    def add_feedback(self, photo_key: str, label: str, comment: str | None = None) -> OutboxFeedback:
        """Keep what the farmer says a photo shows, with its Idempotency-Key made now; it goes once the server's
        diagnosis of the photo is in (the server takes no feedback before). A phone's word is a farmer's: the
        server decides that from its token (agronomists label from accounts of their own)."""
        key = uuid.uuid4().hex
        self.db.execute(
            "INSERT INTO feedback (key, photo, label, source, comment, given_at, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, photo_key, label, "farmer", comment, time.time(), "waiting"),
        )
        return self.feedback_item(key)

    def photo_path(self, key: str) -> Path:
        return self.folder / "photos" / f"{key}.jpg"  # .jpg whatever the bytes: older outboxes named them so

    def find(self, key: str) -> OutboxPhoto | None:
        row = self.db.execute("SELECT * FROM photos WHERE key = ?", (key,)).fetchone()
        return self._photo(row) if row else None

    def get(self, key: str) -> OutboxPhoto:
        found = self.find(key)
        if found is None:
            raise KeyError(key)
        return found

    def photos(self, state: str | None = None) -> list[OutboxPhoto]:
        if state is None:
            rows = self.db.execute("SELECT * FROM photos ORDER BY taken_at")
        else:
            rows = self.db.execute("SELECT * FROM photos WHERE state = ? ORDER BY taken_at", (state,))
        return [self._photo(row) for row in rows]

    def due(self, state: str, now: float) -> list[OutboxPhoto]:
        rows = self.db.execute(
            # Uploads under way first: the server bounds how many a phone holds open, and finishing one frees a place.
            "SELECT * FROM photos WHERE state = ? AND next_try_at <= ? ORDER BY upload_url IS NULL, taken_at",
            (state, now),
        )
        return [self._photo(row) for row in rows]

    def feedback_item(self, key: str) -> OutboxFeedback:
        return OutboxFeedback(*self.db.execute("SELECT * FROM feedback WHERE key = ?", (key,)).fetchone())

    def feedback(self, state: str | None = None) -> list[OutboxFeedback]:
        if state is None:
            rows = self.db.execute("SELECT * FROM feedback ORDER BY given_at")
        else:
            rows = self.db.execute("SELECT * FROM feedback WHERE state = ? ORDER BY given_at", (state,))
        return [OutboxFeedback(*row) for row in rows]

    def due_feedback(self, now: float) -> list[OutboxFeedback]:
        """Feedback to send now: its photo is done (answered, or refused for good) and its next try has come."""
        rows = self.db.execute(
            "SELECT feedback.* FROM feedback JOIN photos ON photos.key = feedback.photo WHERE feedback.state = "
            "'waiting' AND feedback.next_try_at <= ? AND photos.state = 'done' ORDER BY feedback.given_at",
            (now,),
        )
        return [OutboxFeedback(*row) for row in rows]

    def left(self) -> int:
        """Photos and feedback not done yet."""
        photos = self.db.execute("SELECT count(*) FROM photos WHERE state != 'done'").fetchone()[0]
        feedback = self.db.execute("SELECT count(*) FROM feedback WHERE state != 'done'").fetchone()[0]
        return int(photos) + int(feedback)

    def update(self, key: str, table: str = "photos", **values: Any) -> None:
        if "result" in values and values["result"] is not None:
            values["result"] = json.dumps(values["result"])
        columns = ", ".join(f"{name} = ?" for name in values)
        self.db.execute(f"UPDATE {table} SET {columns} WHERE key = ?", (*values.values(), key))

    @staticmethod
    def _photo(row: tuple[Any, ...]) -> OutboxPhoto:
        key, source, _, original, sent, state, attempts, next_try_at, job_id, result, error, upload_url, guess, \
            media = row  # fmt: skip
        return OutboxPhoto(key, source, state, attempts, next_try_at, job_id, json.loads(result) if result else None,
                           error, original, sent, upload_url, json.loads(guess) if guess else None,
                           media or "image/jpeg")  # fmt: skip


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def detail(response: httpx.Response) -> str:
    """The server's reason, as it wrote it for a person."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    if media_type in ("application/problem+json", "application/json"):  # the API's problems (RFC 9457)
        return str(response.json().get("detail"))
    return response.text


@dataclass
class Phone:
    """Sends the outbox's photos and feedback and fetches the results, one step at a time (`step`), or until all
    are done (`sync`)."""

    outbox: Outbox
    client: httpx.Client  # base_url and the device token set
    backoff: Backoff = Backoff()
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.time

    resumable_above: int = 256 * 1024  # bytes; larger photos go by resumable upload
    chunk_bytes: int = 64 * 1024  # per PATCH: about 10 s at 2G speed, so a cut link loses little
    poll_cap_s: float = 30.0  # the longest wait between two looks at a job not finished yet
    # Until when the server asked this phone to hold back an action ("photos", "feedback"): its limits count per
    # device, so every other photo would be refused as well until then.
    held_until: dict[str, float] = field(default_factory=dict)
    told_to_wait: Counter[int] = field(default_factory=Counter)  # HTTP statuses that asked for a later try

    def upload(self, photo: OutboxPhoto) -> None:
        data = self.outbox.photo_path(photo.key).read_bytes()
        try:
            if len(data) > self.resumable_above:
                self.upload_resumable(photo, data)
            else:
                headers = {"Idempotency-Key": photo.key, "Content-Type": photo.media_type}
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
            filetype = base64.b64encode(photo.media_type.encode()).decode()
            created = self.client.post("/v1/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                       "Idempotency-Key": photo.key,
                                       "Upload-Metadata": f"filetype {filetype}"})  # fmt: skip
            if created.status_code != 201:  # a 429 here holds back new uploads only: those under way go on
                self._not_taken(photo, created, NEW_UPLOADS)
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
            response = self.client.patch(url, content=chunk, headers={**TUS, "Upload-Offset": str(offset),
                                         "Content-Type": "application/offset+octet-stream"})  # fmt: skip
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
        if photo.upload_url is not None:  # an upload under way is done: a place for a new one on the server
            self.held_until.pop(NEW_UPLOADS, None)

    def _not_taken(self, photo: OutboxPhoto, response: httpx.Response, action: str = "photos") -> None:
        """Busy, limited or briefly down: later, as the server asks, holding back `action`. Anything else is the
        server's final word on this photo (unreadable, not a JPEG or PNG, too large): keep its reason, never send it
        again."""
        if response.status_code in RETRY_STATUSES:
            wait = self._asked_to_wait(action, response)
            # Held back as an action: a new upload may start as soon as one under way is done (`_sent`).
            self._later(photo, "waiting", f"HTTP {response.status_code}", 0.0 if action == NEW_UPLOADS else wait)
            return
        self.outbox.update(photo.key, state="done", error=f"HTTP {response.status_code}: {detail(response)}",
                           upload_url=None)  # fmt: skip

    def _asked_to_wait(self, action: str, response: httpx.Response) -> float | None:
        """The server's Retry-After, which then holds back the whole action for that long."""
        self.told_to_wait[response.status_code] += 1
        wait = retry_after(response)
        if wait is not None:
            self.held_until[action] = max(self.held_until.get(action, 0.0), self.clock() + wait)
        return wait

    def held(self, action: str) -> bool:
        return self.clock() < self.held_until.get(action, 0.0)

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
        if job["status"] in TERMINAL_STATUSES:
            self.outbox.update(photo.key, state="done", result=job, error=None)
        else:  # not ready: look again soon, then less often
            self._later(photo, "sent", None, min(self.poll_cap_s, 0.5 * 2 ** min(photo.attempts, 6)))

    def send_feedback(self, item: OutboxFeedback) -> None:
        """Send one piece of feedback on a photo that is done; retried like an upload, one event however often."""
        photo = self.outbox.get(item.photo)
        if photo.job_id is None:  # the server refused the photo for good: there is no diagnosis to speak of
            self.outbox.update(item.key, "feedback", state="done", error=f"the photo was not taken: {photo.error}")
            return
        # The source as the outbox kept it: "farmer"; an outbox of an older app may hold "agronomist", which the
        # server refuses (403), kept with its reason, instead of it being passed off as a farmer's word.
        body = {"label": item.label, "source": item.source} | ({"comment": item.comment} if item.comment else {})
        try:
            response = self.client.post(f"/v1/jobs/{photo.job_id}/feedback", json=body,
                                        headers={"Idempotency-Key": item.key})  # fmt: skip
        except httpx.TransportError as exc:
            self._later_feedback(item, f"{type(exc).__name__}: {exc}")
            return
        if response.status_code == 202:
            self.outbox.update(item.key, "feedback", state="done", event_id=response.json()["event_id"], error=None)
        elif response.status_code in RETRY_STATUSES:
            self._later_feedback(item, f"HTTP {response.status_code}", self._asked_to_wait("feedback", response))
        else:
            self.outbox.update(item.key, "feedback", state="done",
                               error=f"HTTP {response.status_code}: {detail(response)}")  # fmt: skip

    def _later(self, photo: OutboxPhoto, state: str, error: str | None, wait: float | None = None) -> None:
        delay = wait if wait is not None else self.backoff.delay(photo.attempts, self.rng)
        self.outbox.update(photo.key, state=state, attempts=photo.attempts + 1, next_try_at=self.clock() + delay,
                           error=error)  # fmt: skip

    def _later_feedback(self, item: OutboxFeedback, error: str, wait: float | None = None) -> None:
        delay = wait if wait is not None else self.backoff.delay(item.attempts, self.rng)
        self.outbox.update(item.key, "feedback", attempts=item.attempts + 1, next_try_at=self.clock() + delay,
                           error=error)  # fmt: skip

    def step(self) -> int:
        """Upload what is due, fetch what is due, send the feedback that is due, each action only while the server
        has not asked to hold it back; the number of photos and feedback not done yet."""
        now = self.clock()
        for photo in self.outbox.due("waiting", now):
            if self.held("photos"):
                break
            resumable = self.outbox.photo_path(photo.key).stat().st_size > self.resumable_above
            if resumable and photo.upload_url is None and self.held(NEW_UPLOADS):
                continue  # too many uploads open on the server: the ones under way first
            self.upload(photo)
        for photo in self.outbox.due("sent", now):
            self.fetch(photo)
        for item in self.outbox.due_feedback(now):
            if self.held("feedback"):
                break
            self.send_feedback(item)
        return self.outbox.left()

    def sync(self, timeout_s: float, tick_s: float = 0.2) -> Iterator[OutboxPhoto]:
        """Step until every photo and feedback is done or the time is up, yielding each photo as it gets done."""
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

    def flush(self, timeout_s: float) -> int:
        """Sync without looking at each photo as it is done; what is left when it stops."""
        for _ in self.sync(timeout_s):
            pass
        return self.outbox.left()


@contextmanager
def open_phone(
    folder: Path, api_url: str, token: str, timeout_s: float = 30.0, poll_cap_s: float = 30.0
) -> Iterator[Phone]:
    """A phone on the outbox in `folder`, talking to the API at `api_url` with a device token."""
    outbox = Outbox(folder)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=api_url, headers=headers, timeout=timeout_s) as client:
            yield Phone(outbox, client, poll_cap_s=poll_cap_s)
    finally:
        outbox.close()
