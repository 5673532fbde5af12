"""Resumable uploads (tus 1.0 core, creation, checksum, expiration, termination) at /v1/uploads."""

import base64
import contextlib
import dataclasses
import hashlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from httpx2 import Response as Answer  # what the test client answers with
from sqlmodel import Session, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tusclient.client import TusClient

from core import jobs
from core.config import Settings
from core.sweeper import sweep_once
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.tables import Job, Upload, UploadChunk, utcnow
from tests.producers.conftest import MAX_UPLOAD, new_token
from tests.utils.factories import add_chunk, part_files, sample_bytes
from tests.utils.fakes import RecordingPublisher, fill_the_disk
from tests.utils.hostile import html_as_jpeg
from tests.utils.processes import free_port

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = 8 * 1024


def raw(headers: dict[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    """Headers as bytes on the wire: a value may be any byte, as a hostile client sends it (httpx takes str as
    ASCII only)."""
    return [(name.encode(), value if isinstance(value, bytes) else value.encode()) for name, value in headers.items()]


def create(
    client: TestClient, auth: dict[str, str], length: int, key: str = "photo-1", **headers: str | bytes
) -> Answer:
    return client.post("/v1/uploads", headers=raw({**auth, **TUS, "Upload-Length": str(length),
                                                   "Idempotency-Key": key, **headers}))  # fmt: skip


def patch(
    client: TestClient, auth: dict[str, str], url: str, offset: int, body: bytes, **headers: str | bytes
) -> Answer:
    sha1 = base64.b64encode(hashlib.sha1(body).digest()).decode()
    return client.patch(url, content=body, headers=raw({**auth, **TUS, "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream", "Upload-Checksum": f"sha1 {sha1}",
                        **headers}))  # fmt: skip


def head(client: TestClient, auth: dict[str, str], url: str) -> Answer:
    return client.head(url, headers={**auth, **TUS})


def send_all(client: TestClient, auth: dict[str, str], url: str, data: bytes, start: int = 0) -> Answer:
    offset, response = start, None
    while offset < len(data):
        response = patch(client, auth, url, offset, data[offset : offset + CHUNK])
        assert response.status_code == 204, response.text
        offset = int(response.headers["Upload-Offset"])
    assert response is not None
    return response


def test_options_advertise_the_protocol_and_its_extensions(client: TestClient, services: Services) -> None:
    response = client.options("/v1/uploads")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {"creation", "checksum", "expiration", "termination"}
    assert "sha1" in response.headers["Tus-Checksum-Algorithm"].split(",")
    assert int(response.headers["Tus-Max-Size"]) == services.settings.MAX_UPLOAD_BYTES


def test_a_photo_in_chunks_becomes_one_job_with_exactly_its_bytes(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    data = sample_bytes("cbsd")
    meta = f"filename {base64.b64encode(b'leaf.jpg').decode()},filetype {base64.b64encode(b'image/jpeg').decode()}"
    created = create(client, auth, len(data), **{"Upload-Metadata": meta})
    assert created.status_code == 201, created.text
    assert created.headers["Tus-Resumable"] == "1.0.0"
    url = created.headers["Location"]
    assert url.startswith("/v1/uploads/")  # relative: the upload goes on at the address the client reached
    assert "GMT" in created.headers["Upload-Expires"]

    first = patch(client, auth, url, 0, data[:CHUNK])
    assert (first.status_code, first.headers["Upload-Offset"]) == (204, str(CHUNK))
    assert "Mhogo-Job-Id" not in first.headers
    with Session(services.engine) as session:  # the bytes are a file of the blob store; the row says where
        [chunk] = session.exec(select(UploadChunk)).all()
    assert (chunk.start, chunk.size_bytes, chunk.data) == (0, CHUNK, None)
    assert part_files(services.blobs) == {chunk.key: data[:CHUNK]}
    probe = head(client, auth, url)
    assert (probe.status_code, probe.headers["Upload-Offset"], probe.headers["Upload-Length"]) == (
        200, str(CHUNK), str(len(data)))  # fmt: skip
    assert probe.headers["Cache-Control"] == "no-store"

    last = send_all(client, auth, url, data, start=CHUNK)
    job_id = last.headers["Mhogo-Job-Id"]
    assert last.headers["Mhogo-Job-Url"] == f"https://mhogo.example/v1/jobs/{job_id}"
    assert head(client, auth, url).headers["Mhogo-Job-Id"] == job_id
    with Session(services.engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.idempotency_key == "photo-1"
        assert services.blobs.get(job.blob_key) == data
        assert session.exec(select(UploadChunk)).all() == []  # freed once the job exists, files too
    assert part_files(services.blobs) == {}
    assert publisher.photos == [(job_id, job.blob_key)]
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "queued"


def test_retried_creation_finds_the_same_upload_and_a_key_is_one_photo(
    client: TestClient, auth: dict[str, str], publisher: RecordingPublisher
) -> None:
    data = sample_bytes("cmd")
    first = create(client, auth, len(data))
    again = create(client, auth, len(data))
    assert again.status_code == 201
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert create(client, auth, len(data) + 1).status_code == 409  # same key, another photo
    job_id = send_all(client, auth, first.headers["Location"], data).headers["Mhogo-Job-Id"]
    # The same photo sent again in one request with the same key: the same job, nothing enqueued twice.
    plain = client.post("/v1/photos", content=data, headers={**auth, "Idempotency-Key": "photo-1",
                                                               "Content-Type": "image/jpeg"})  # fmt: skip
    assert plain.json()["job_id"] == job_id
    assert len(publisher.photos) == 1


def test_a_key_already_accepted_in_one_request_gives_a_complete_upload(
    client: TestClient, auth: dict[str, str]
) -> None:
    data = sample_bytes("cgm")
    plain = client.post("/v1/photos", content=data, headers={**auth, "Idempotency-Key": "k9",
                                                               "Content-Type": "image/jpeg"})  # fmt: skip
    url = create(client, auth, len(data), key="k9").headers["Location"]
    probe = head(client, auth, url)
    assert probe.headers["Upload-Offset"] == str(len(data))
    assert probe.headers["Mhogo-Job-Id"] == plain.json()["job_id"]


def test_wrong_offset_is_409_and_a_bad_checksum_is_460_and_neither_moves_the_upload(
    client: TestClient, auth: dict[str, str]
) -> None:
    data = sample_bytes("cmd")
    url = create(client, auth, len(data)).headers["Location"]
    assert patch(client, auth, url, 0, data[:CHUNK]).status_code == 204
    replayed = patch(client, auth, url, 0, data[:CHUNK])  # the answer was lost and the client sent it again
    assert (replayed.status_code, replayed.headers["Upload-Offset"]) == (409, str(CHUNK))
    wrong = "sha1 " + base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    corrupt = patch(client, auth, url, CHUNK, data[CHUNK : 2 * CHUNK], **{"Upload-Checksum": wrong})
    assert corrupt.status_code == 460
    assert head(client, auth, url).headers["Upload-Offset"] == str(CHUNK)
    too_much = patch(client, auth, url, CHUNK, data[CHUNK:] + b"extra")
    assert too_much.status_code == 413
    sha256 = base64.b64encode(hashlib.sha256(data[CHUNK:]).digest()).decode()
    rest = patch(client, auth, url, CHUNK, data[CHUNK:], **{"Upload-Checksum": f"sha256 {sha256}"})
    assert rest.status_code == 204
    assert rest.headers["Mhogo-Job-Id"]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"Tus-Resumable": "0.2.2"}, 412),
        ({"Content-Type": "application/octet-stream"}, 415),
        ({"Upload-Offset": "-1"}, 400),
        ({"Upload-Offset": "\u00b9".encode("latin-1")}, 400),  # '¹'.isdigit() is true, int('¹') raised: a 500
        ({"Upload-Offset": "9" * 4400}, 400),  # int() refuses more than 4300 digits: a 500
        ({"Upload-Offset": "99999999999999999999"}, 400),  # 20 digits: no upload is that long
        ({"Upload-Checksum": "crc32 AAAA"}, 400),
        ({"Upload-Checksum": "sha1 not base64!"}, 400),
    ],
)
def test_malformed_patch_requests_get_4xx(
    client: TestClient, auth: dict[str, str], change: dict[str, str], status: int
) -> None:
    data = sample_bytes("cmd")
    url = create(client, auth, len(data)).headers["Location"]
    response = patch(client, auth, url, 0, data[:CHUNK], **change)
    assert response.status_code == status, response.text
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert head(client, auth, url).headers["Upload-Offset"] == "0"


def test_creation_is_checked(client: TestClient, auth: dict[str, str], services: Services) -> None:
    assert create(client, auth, 0).status_code == 422
    assert create(client, auth, services.settings.MAX_UPLOAD_BYTES + 1).status_code == 413
    lengths: list[str | bytes] = ["ten", "\u00b2".encode("latin-1"), "4" * 4400, "+10", "1e3"]  # '²': once a 500
    for length in lengths:
        headers = raw({**auth, **TUS, "Upload-Length": length, "Idempotency-Key": "photo-1"})
        assert client.post("/v1/uploads", headers=headers).status_code == 400, length
    assert create(client, auth, 10, key="").status_code == 400
    assert create(client, auth, 10, **{"Upload-Metadata": "filename %%%"}).status_code == 400
    svg = f"filetype {base64.b64encode(b'image/svg+xml').decode()}"
    assert create(client, auth, 10, **{"Upload-Metadata": svg}).status_code == 415
    missing_version = client.post("/v1/uploads", headers={**auth, "Upload-Length": "10", "Idempotency-Key": "a"})
    assert missing_version.status_code == 412
    assert missing_version.headers["Tus-Version"] == "1.0.0"
    anonymous = client.post("/v1/uploads", headers={**TUS, "Upload-Length": "10", "Idempotency-Key": "a"})
    assert anonymous.status_code == 401
    assert anonymous.headers["Tus-Resumable"] == "1.0.0"


def test_a_completed_upload_that_is_not_a_photo_is_refused_with_its_reason(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    page = html_as_jpeg().data
    url = create(client, auth, len(page)).headers["Location"]
    refused = patch(client, auth, url, 0, page)
    assert refused.status_code == 415, refused.text
    assert "JPEG or PNG" in refused.json()["detail"]
    assert head(client, auth, url).status_code == 404  # dropped: the phone keeps the refusal, nothing is left over
    with Session(services.engine) as session:
        assert session.exec(select(Job)).all() == []
    assert part_files(services.blobs) == {}


def test_the_last_answer_lost_is_recovered_with_an_empty_patch(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    """The last chunk is stored but the API dies before the job exists: HEAD says complete without a job, and an
    empty PATCH at the end finishes it."""
    data = sample_bytes("healthy")
    url = create(client, auth, len(data)).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    with Session(services.engine) as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        add_chunk(session, services.blobs, upload, 0, data)
    probe = head(client, auth, url)
    assert probe.headers["Upload-Offset"] == str(len(data))
    assert "Mhogo-Job-Id" not in probe.headers
    finished = patch(client, auth, url, len(data), b"")
    assert finished.status_code == 204
    assert finished.headers["Mhogo-Job-Id"]
    again = patch(client, auth, url, len(data), b"")  # and again: the same job
    assert again.headers["Mhogo-Job-Id"] == finished.headers["Mhogo-Job-Id"]


def test_uploads_belong_to_their_device_and_can_be_terminated(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    data = sample_bytes("cmd")
    url = create(client, auth, len(data)).headers["Location"]
    other = {"Authorization": f"Bearer {new_token(services, 'other')}"}
    assert head(client, other, url).status_code == 404
    assert patch(client, other, url, 0, data[:CHUNK]).status_code == 404
    assert client.delete(url, headers={**other, **TUS}).status_code == 404
    assert patch(client, auth, url, 0, data[:CHUNK]).status_code == 204
    assert len(part_files(services.blobs)) == 1
    assert client.delete(url, headers={**auth, **TUS}).status_code == 204
    assert head(client, auth, url).status_code == 404
    with Session(services.engine) as session:
        assert session.exec(select(UploadChunk)).all() == []
    assert part_files(services.blobs) == {}


def test_expired_uploads_answer_410_and_the_sweeper_removes_them(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    data = sample_bytes("cmd")
    url = create(client, auth, len(data)).headers["Location"]
    assert patch(client, auth, url, 0, data[:CHUNK]).status_code == 204
    with Session(services.engine) as session:
        upload = session.get(Upload, url.rsplit("/", 1)[1])
        assert upload is not None
        upload.expires_at = utcnow() - timedelta(seconds=1)
        session.add(upload)
        session.commit()
    assert head(client, auth, url).status_code == 410
    assert patch(client, auth, url, CHUNK, data[CHUNK:]).status_code == 410
    assert len(part_files(services.blobs)) == 1
    counts = sweep_once(lambda: Session(services.engine), publisher, services.settings, services.blobs)
    assert counts["uploads_expired"] == 1
    assert head(client, auth, url).status_code == 404
    with Session(services.engine) as session:
        assert session.exec(select(UploadChunk)).all() == []
        assert jobs.find_job(session, 1, "photo-1") is None
    assert part_files(services.blobs) == {}
    # The phone starts again with the same key and gets a fresh upload.
    fresh = create(client, auth, len(data))
    assert fresh.status_code == 201
    assert fresh.headers["Location"] != url
    assert send_all(client, auth, fresh.headers["Location"], data).headers["Mhogo-Job-Id"]


@contextlib.contextmanager
def serving(services: Services, wrap: Callable[[ASGIApp], ASGIApp] = lambda app: app) -> Iterator[str]:
    """The app (as `wrap` makes it) on a real port, under its public URL: for clients with their own HTTP stack, and
    for connections that really drop."""
    port = free_port()
    public = dataclasses.replace(services, settings=services.settings.model_copy(
        update={"PUBLIC_URL": f"http://127.0.0.1:{port}"}))  # fmt: skip
    app = wrap(create_app(public, sweep_on_startup=False))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_api(services: Services) -> Iterator[str]:
    with serving(services) as url:
        yield url


def test_the_tus_projects_own_client_uploads_and_resumes(live_api: str, token: str, services: Services) -> None:
    """tuspy, the tus project's Python client: a photo sent in part, then finished by a second client that only knows
    the upload's address (it asks HEAD where to go on), with sha1 checksums on every chunk."""
    data = sample_bytes("cbb")
    client = TusClient(f"{live_api}/v1/uploads", headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "t1"})
    first = client.uploader(file_stream=io.BytesIO(data), chunk_size=4096, upload_checksum=True,
                            metadata={"filename": "leaf.jpg", "filetype": "image/jpeg"})  # fmt: skip
    first.upload(stop_at=3 * 4096)
    assert first.url is not None
    assert first.url.startswith(f"{live_api}/v1/uploads/")
    second = client.uploader(file_stream=io.BytesIO(data), url=first.url, chunk_size=4096, upload_checksum=True)
    assert second.offset == 3 * 4096
    second.upload()
    job_id = second.request.response_headers["mhogo-job-id"]
    with Session(services.engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert services.blobs.get(job.blob_key) == data


class PatchWatch:
    """ASGI wrapper: says when the app has been handed `until` bytes of a PATCH body (so they left the socket), and
    when it has done with the request."""

    def __init__(self, app: ASGIApp, until: int) -> None:
        self.app = app
        self.until = until
        self.received = 0
        self.handed = threading.Event()
        self.done = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "PATCH":
            await self.app(scope, receive, send)
            return

        async def watched() -> Message:
            message = await receive()
            self.received += len(message.get("body", b""))
            if self.received >= self.until:
                self.handed.set()
            return message

        try:
            await self.app(scope, watched, send)
        finally:
            self.done.set()


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "with Upload-Checksum"])
def test_a_patch_cut_off_mid_body_keeps_what_arrived_unless_a_checksum_was_to_cover_it(
    services: Services, token: str, checksum: bool
) -> None:
    """tus 1.0: the server SHOULD store what it received of a PATCH whose connection dropped, so a phone whose link
    drops every few KB still moves on; HEAD says where. A checksum covers the whole body, so none of it is kept."""
    data = sample_bytes("cbsd")
    arrived = 5000
    auth = {"Authorization": f"Bearer {token}", **TUS}
    watches: list[PatchWatch] = []

    def watch(app: ASGIApp) -> ASGIApp:
        watches.append(PatchWatch(app, arrived))
        return watches[0]

    with serving(services, watch) as url, httpx.Client(base_url=url, timeout=10) as http:
        created = http.post("/v1/uploads", headers={**auth, "Upload-Length": str(len(data)), "Idempotency-Key": "cut"})
        path = urlsplit(created.headers["Location"]).path
        headers = {**auth, "Host": urlsplit(url).netloc, "Upload-Offset": "0", "Content-Length": str(len(data)),
                   "Content-Type": "application/offset+octet-stream"}  # fmt: skip
        if checksum:
            headers["Upload-Checksum"] = "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()
        head_lines = [f"PATCH {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items()), "", ""]
        with socket.create_connection(("127.0.0.1", urlsplit(url).port or 80)) as link:
            link.sendall("\r\n".join(head_lines).encode() + data[:arrived])
            assert watches[0].handed.wait(10)  # the app has those bytes: now the link drops
        assert watches[0].done.wait(10)
        kept = 0 if checksum else arrived
        probe = http.head(path, headers=auth)
        assert probe.headers["Upload-Offset"] == str(kept)
        assert sorted(part_files(services.blobs).values()) == ([] if checksum else [data[:arrived]])
        rest = data[kept:]
        sha1 = base64.b64encode(hashlib.sha1(rest).digest()).decode()
        finished = http.patch(path, content=rest, headers={**auth, "Upload-Offset": str(kept), "Upload-Checksum":
                              f"sha1 {sha1}", "Content-Type": "application/offset+octet-stream"})  # fmt: skip
        assert finished.status_code == 204, finished.text
    with Session(services.engine) as session:
        job = session.get(Job, finished.headers["Mhogo-Job-Id"])
        assert job is not None
    assert services.blobs.get(job.blob_key) == data  # byte for byte, across the cut
    assert part_files(services.blobs) == {}


@contextlib.contextmanager
def client_with(services: Services, **changes: object) -> Iterator[TestClient]:
    config = Settings(HOME=services.settings.HOME, MAX_UPLOAD_BYTES=MAX_UPLOAD, PUBLIC_URL="https://mhogo.example",
                      **changes)  # type: ignore[arg-type]  # fmt: skip
    app = create_app(dataclasses.replace(services, settings=config), sweep_on_startup=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_device_holds_only_so_many_open_uploads_and_declared_bytes(services: Services, auth: dict[str, str]) -> None:
    """Parts wait on the server's disk until their upload ends: a phone may not pile up more than its share."""
    data = sample_bytes("cmd")
    with client_with(services, MAX_OPEN_UPLOADS=3, MAX_OPEN_UPLOAD_BYTES=MAX_UPLOAD + 1000) as client:
        first = create(client, auth, len(data), key="a")
        assert first.status_code == 201
        too_large = create(client, auth, MAX_UPLOAD, key="b")  # with the first: over the bytes
        assert too_large.status_code == 429
        assert int(too_large.headers["Retry-After"]) > 0
        assert "DELETE" in too_large.json()["detail"]
        assert create(client, auth, 500, key="b").status_code == 201
        second = create(client, auth, 400, key="c")
        assert second.status_code == 201
        too_many = create(client, auth, 1, key="d")  # a fourth
        assert too_many.status_code == 429
        assert "Finish them, or abandon" in too_many.json()["detail"]
        replayed = create(client, auth, 500, key="b")  # the same upload found again is never refused
        assert (replayed.status_code, replayed.headers["Idempotent-Replayed"]) == (201, "true")
        other = {"Authorization": f"Bearer {new_token(services, 'other')}"}
        assert create(client, other, 1, key="d").status_code == 201  # each phone its own
        send_all(client, auth, first.headers["Location"], data)  # finished: no longer open
        assert create(client, auth, 1, key="d").status_code == 201
        assert create(client, auth, 1, key="e").status_code == 429
        assert client.delete(second.headers["Location"], headers={**auth, **TUS}).status_code == 204  # abandoned
        assert create(client, auth, 1, key="e").status_code == 201


def test_a_full_disk_while_a_chunk_is_written_is_507_and_keeps_nothing(
    client: TestClient, auth: dict[str, str], services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sample_bytes("cmd")
    url = create(client, auth, len(data)).headers["Location"]
    fill_the_disk(monkeypatch)
    full = patch(client, auth, url, 0, data[:CHUNK])
    assert full.status_code == 507, full.text
    assert int(full.headers["Retry-After"]) > 0
    assert "no room left" in full.json()["detail"]
    assert head(client, auth, url).headers["Upload-Offset"] == "0"
    assert part_files(services.blobs) == {}
    monkeypatch.undo()  # space freed: the phone sends the same bytes again
    assert send_all(client, auth, url, data).headers["Mhogo-Job-Id"]
