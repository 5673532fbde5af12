"""The reference phone client against the real API in-process: responses lost after the server acted, connections
refused, Retry-After and the rate limit, a photo the server refuses for good, feedback; and the outbox's bytes and
keys."""

from __future__ import annotations

import dataclasses
import io
import random
import time
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient
from limits import parse
from limits.storage import MemoryStorage
from PIL import Image
from sqlmodel import Session, col, select

from core import jobs
from producers.api.app import create_app
from producers.api.deps import Services
from producers.api.ratelimit import RateLimiter
from producers.phone import Backoff, Outbox, Phone, shrink
from schemas.findings import Finding
from schemas.tables import Job
from tests.utils.factories import all_samples, jpeg_bytes, png_bytes, sample_bytes
from tests.utils.fakes import RecordingPublisher


class Flaky:
    """The in-process API behind a bad link: it loses the response of some requests after the server handled them,
    and refuses others before they leave. Raises what httpx raises on a real network."""

    def __init__(self, inner: TestClient, lose: float, refuse: float, seed: int = 1) -> None:
        self.inner, self.lose, self.refuse, self.rng = inner, lose, refuse, random.Random(seed)
        self.requests = 0

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.requests += 1
        draw = self.rng.random()
        request = httpx.Request(method, url)
        if draw < self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        response = self.inner.request(method, url, **kwargs)
        if draw < self.refuse + self.lose:
            raise httpx.ReadError("connection cut mid-response", request=request)
        return cast(httpx.Response, response)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("HEAD", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("PATCH", url, **kwargs)


def phone_over(http: object, folder: Path) -> Phone:
    return Phone(Outbox(folder), cast(httpx.Client, http), backoff=Backoff(base_s=0.0), rng=random.Random(3))


def test_lost_responses_and_refused_connections_make_one_job_per_photo(
    client: TestClient, auth: dict[str, str], services: Services, tmp_path: Path
) -> None:
    client.headers.update(auth)
    flaky = Flaky(client, lose=0.3, refuse=0.1)
    phone = phone_over(flaky, tmp_path)
    photos = [phone.outbox.take(path) for path in all_samples()[:20]]
    for _ in range(100):
        phone.step()
        if not phone.outbox.photos("waiting"):
            break
    sent = phone.outbox.photos("sent")
    assert len(sent) == 20
    assert flaky.requests > 20  # some uploads were tried more than once
    with Session(services.engine) as session:
        jobs = session.exec(select(Job).where(col(Job.idempotency_key).in_([p.key for p in photos]))).all()
    assert len(jobs) == 20  # one job per photo however often it was sent
    assert {job.idempotency_key: job.id for job in jobs} == {p.key: p.job_id for p in sent}
    phone.outbox.close()


def test_retry_after_is_honoured_for_every_photo_of_the_phone(tmp_path: Path, samples: Path) -> None:
    now = [1000.0]
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers["Idempotency-Key"])
        return httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "Slow down."})

    http = httpx.Client(transport=httpx.MockTransport(server), base_url="http://api")
    phone = Phone(Outbox(tmp_path), http, clock=lambda: now[0])
    photo, other = (phone.outbox.take(path) for path in all_samples()[:2])
    phone.step()
    later = phone.outbox.get(photo.key)
    assert later.state == "waiting"
    assert later.next_try_at == 1007.0
    assert later.error == "HTTP 429"
    assert asked == [photo.key]  # the limit is the phone's: the other photo waits too, unasked
    assert phone.outbox.get(other.key).attempts == 0
    now[0] = 1006.9
    phone.step()
    assert asked == [photo.key]
    now[0] = 1007.0
    phone.step()
    assert asked == [photo.key, photo.key]  # then one try again, and held once more
    assert phone.told_to_wait == {429: 2}
    phone.outbox.close()


def test_over_its_rate_the_phone_waits_as_told_and_sends_every_photo_and_label_once(
    services: Services, publisher: RecordingPublisher, token: str, tmp_path: Path
) -> None:
    limited = dataclasses.replace(
        services, limiter=RateLimiter(MemoryStorage(), {"upload": parse("4/second"), "feedback": parse("4/second")})
    )
    with TestClient(create_app(limited, sweep_on_startup=False), raise_server_exceptions=False) as client:
        client.headers.update({"Authorization": f"Bearer {token}"})
        phone = phone_over(client, tmp_path)
        photos = [phone.outbox.take(path) for path in all_samples()[:10]]
        for photo in photos:  # said before the diagnosis is in: it goes once it is
            phone.outbox.add_feedback(photo.key, "cbsd", "brown streaks on the stem")
        deadline = time.monotonic() + 30
        while phone.outbox.photos("waiting") and time.monotonic() < deadline:
            phone.step()
            time.sleep(0.05)
        assert len(phone.outbox.photos("sent")) == 10
        assert publisher.feedback == []
        with Session(services.engine) as session:  # the workers' part, done in-process
            for photo in phone.outbox.photos():
                assert jobs.finish(session, str(photo.job_id), Finding(label="cmd", model_version="v"))
        assert phone.flush(timeout_s=60) == 0
    sent = phone.outbox.photos()
    assert {event.job_id for event in publisher.feedback} == {photo.job_id for photo in sent}
    assert len(publisher.feedback) == 10  # one event each, however the limit got in the way
    assert {(event.label, event.source) for event in publisher.feedback} == {("cbsd", "farmer")}
    assert all(item.event_id is not None and item.error is None for item in phone.outbox.feedback())
    with Session(services.engine) as session:
        found = session.exec(select(Job).where(col(Job.idempotency_key).in_([p.key for p in photos]))).all()
    assert len(found) == 10
    # Held back for the whole phone after each 429 (10 photos at 4 a second: two holds, and as many for the
    # labels, give or take a window's edge), not refused photo by photo (that would be 16 at least).
    assert 4 <= phone.told_to_wait[429] <= 8
    phone.outbox.close()


def test_a_photo_taken_as_it_is_goes_byte_for_byte_and_a_callers_key_makes_a_rerun_a_replay(
    client: TestClient, auth: dict[str, str], services: Services, tmp_path: Path
) -> None:
    client.headers.update(auth)
    with Image.open(io.BytesIO(sample_bytes("cgm"))) as image:
        source = tmp_path / "leaf.png"
        source.write_bytes(png_bytes(image.convert("RGB")))
    phone = phone_over(client, tmp_path / "first")
    photo = phone.outbox.take(source, as_is=True, key="leaf-1")
    assert phone.outbox.take(source, as_is=True, key="leaf-1") == photo  # taken again: the same photo
    assert photo.media_type == "image/png"
    phone.step()
    job_id = phone.outbox.get("leaf-1").job_id
    assert job_id is not None
    assert stored_photos(services, ["leaf-1"]) == {"leaf-1": source.read_bytes()}  # neither shrunk nor a JPEG
    rerun = phone_over(client, tmp_path / "rerun")  # another run of the caller, with an outbox of its own
    rerun.outbox.take(source, as_is=True, key="leaf-1")
    rerun.step()
    assert rerun.outbox.get("leaf-1").job_id == job_id  # the server's replay, not a second job
    phone.outbox.close()
    rerun.outbox.close()


def test_feedback_on_a_photo_the_server_refused_is_kept_with_the_reason(
    client: TestClient, auth: dict[str, str], publisher: RecordingPublisher, tmp_path: Path
) -> None:
    client.headers.update(auth)
    phone = phone_over(client, tmp_path)
    photo = phone.outbox.take(all_samples()[0])
    phone.outbox.photo_path(photo.key).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    item = phone.outbox.add_feedback(photo.key, "cmd")
    assert phone.flush(timeout_s=10) == 0
    done = phone.outbox.feedback_item(item.key)
    assert done.state == "done"
    assert done.event_id is None
    assert done.error is not None
    assert done.error.startswith("the photo was not taken: HTTP 422")
    assert publisher.feedback == []
    phone.outbox.close()


def test_a_photo_the_server_refuses_for_good_is_kept_with_the_reason_not_retried(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    client.headers.update(auth)
    phone = phone_over(client, tmp_path)
    photo = phone.outbox.take(all_samples()[0])
    phone.outbox.photo_path(photo.key).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # damaged on the phone
    phone.step()
    done = phone.outbox.get(photo.key)
    assert done.state == "done"
    assert done.error is not None
    assert done.error.startswith("HTTP 422")
    assert phone.step() == 0  # nothing left to try
    phone.outbox.close()


def test_photos_are_shrunk_once_and_uprighted_before_they_are_sent(tmp_path: Path) -> None:
    with Image.open(io.BytesIO(sample_bytes("cmd"))) as image:
        big = image.convert("RGB").resize((2400, 1800))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera held sideways: rotate 90 degrees to show it upright
    camera = io.BytesIO()
    big.save(camera, format="JPEG", quality=95, exif=exif)
    source = tmp_path / "camera.jpg"
    source.write_bytes(camera.getvalue())
    outbox = Outbox(tmp_path / "outbox")
    photo = outbox.take(source, max_side=1024, quality=85)
    sent = outbox.photo_path(photo.key).read_bytes()
    with Image.open(io.BytesIO(sent)) as image:
        assert image.size == (768, 1024)  # upright, longer side 1024
    assert photo.sent_bytes == len(sent) < photo.original_bytes / 3
    assert shrink(jpeg_bytes(big), 1024, 85) != sent  # the rotation is in the pixels, not left to the server
    outbox.close()
    reopened = Outbox(tmp_path / "outbox")
    assert reopened.get(photo.key) == photo  # the key and the bytes survive the app being closed
    reopened.close()


def stored_photos(services: Services, keys: list[str]) -> dict[str, bytes]:
    with Session(services.engine) as session:
        found = session.exec(select(Job).where(col(Job.idempotency_key).in_(keys))).all()
        return {job.idempotency_key: services.blobs.get(job.blob_key) for job in found}


def test_resumable_uploads_over_a_bad_link_make_one_job_with_the_very_bytes_taken(
    client: TestClient, auth: dict[str, str], services: Services, tmp_path: Path
) -> None:
    client.headers.update(auth)
    flaky = Flaky(client, lose=0.25, refuse=0.1, seed=4)
    phone = phone_over(flaky, tmp_path)
    phone.resumable_above, phone.chunk_bytes = 0, 8 * 1024  # every photo in chunks of 8 KiB
    photos = [phone.outbox.take(path) for path in all_samples()[:6]]
    for _ in range(300):
        phone.step()
        if not phone.outbox.photos("waiting"):
            break
    assert len(phone.outbox.photos("sent")) == 6
    stored = stored_photos(services, [p.key for p in photos])
    assert stored == {p.key: phone.outbox.photo_path(p.key).read_bytes() for p in photos}  # one job each, intact
    assert all(p.upload_url is None for p in phone.outbox.photos())
    phone.outbox.close()


class PowerCut(BaseException):
    """The phone switched off: not an error the app could handle."""


def test_a_phone_killed_mid_upload_sends_only_the_rest_after_restart(
    client: TestClient, auth: dict[str, str], services: Services, tmp_path: Path
) -> None:
    client.headers.update(auth)
    sent: list[int] = []

    class Counting:
        def __init__(self, dies_after: int | None) -> None:
            self.dies_after = dies_after

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def patch(self, url: str, **kwargs: Any) -> Any:
            if self.dies_after is not None and len(sent) == self.dies_after:
                raise PowerCut
            sent.append(len(kwargs["content"]))
            return client.patch(url, **kwargs)

    phone = phone_over(Counting(dies_after=3), tmp_path)
    phone.resumable_above, phone.chunk_bytes = 0, 4 * 1024
    photo = phone.outbox.take(all_samples()[0])
    size = photo.sent_bytes
    assert size > 4 * 4 * 1024
    with pytest.raises(PowerCut):
        phone.step()
    phone.outbox.close()
    assert sent == [4 * 1024] * 3

    again = phone_over(Counting(dies_after=None), tmp_path)  # the app starts again on the same outbox
    again.resumable_above, again.chunk_bytes = 0, 4 * 1024
    again.step()
    assert again.outbox.get(photo.key).state == "sent"
    assert sum(sent) == size  # nothing sent twice: the rest went from where the server stood
    assert stored_photos(services, [photo.key]) == {photo.key: again.outbox.photo_path(photo.key).read_bytes()}
    again.outbox.close()


def test_an_older_outbox_s_agronomist_label_is_refused_and_kept_with_the_reason(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher, tmp_path: Path
) -> None:
    """An outbox of the app before this release may hold feedback marked "agronomist": it is not passed off as a
    farmer's word, nor retried; the server's reason stays beside it."""
    client.headers.update(auth)
    phone = phone_over(client, tmp_path)
    photo = phone.outbox.take(all_samples()[0])
    phone.step()
    with Session(services.engine) as session:
        assert jobs.finish(session, str(phone.outbox.get(photo.key).job_id), Finding(label="cmd", model_version="v"))
    item = phone.outbox.add_feedback(photo.key, "cbsd")
    phone.outbox.db.execute("UPDATE feedback SET source = 'agronomist' WHERE key = ?", (item.key,))
    assert phone.flush(timeout_s=10) == 0
    done = phone.outbox.feedback_item(item.key)
    assert (done.state, done.event_id) == ("done", None)
    assert done.error is not None
    assert done.error.startswith("HTTP 403: A device's feedback is a farmer's word")
    assert publisher.feedback == []
    phone.outbox.close()


class PatchesCut(Flaky):
    """Every PATCH cut before it leaves, until `cuts` of them were; everything else goes through."""

    def __init__(self, inner: TestClient, cuts: int) -> None:
        super().__init__(inner, lose=0.0, refuse=0.0)
        self.cuts = cuts

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        if self.cuts > 0:
            self.cuts -= 1
            raise httpx.ConnectError("connection refused", request=httpx.Request("PATCH", url))
        return self._send("PATCH", url, **kwargs)


def test_told_it_holds_too_many_open_uploads_the_phone_finishes_those_under_way_first(
    services: Services, token: str, tmp_path: Path
) -> None:
    """The server bounds the uploads a phone holds open (429 to one more, Retry-After 60). A phone back from a cut with
    a backlog goes on with the uploads it has under way, which frees places, instead of holding back every photo for
    the whole minute (as it did: the 429 held all of them)."""
    config = services.settings.model_copy(update={"MAX_OPEN_UPLOADS": 2})
    app = create_app(dataclasses.replace(services, settings=config), sweep_on_startup=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers.update({"Authorization": f"Bearer {token}"})
        now = [0.0]
        phone = Phone(Outbox(tmp_path), cast(httpx.Client, PatchesCut(client, cuts=2)), backoff=Backoff(base_s=0.0),
                      rng=random.Random(3), clock=lambda: now[0], resumable_above=0, chunk_bytes=1 << 20)  # fmt: skip
        photos = [phone.outbox.take(path) for path in all_samples()[:5]]
        while phone.outbox.photos("waiting") and now[0] < 300:
            phone.step()
            now[0] += 1.0
        assert phone.told_to_wait[429] >= 1  # the third creation was refused while two uploads were open
        assert now[0] < 60  # and every photo went before its Retry-After was up
        assert {photo.key for photo in phone.outbox.photos("sent")} == {photo.key for photo in photos}
        phone.outbox.close()
