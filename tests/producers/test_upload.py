"""POST /v1/photos: accepted means durable, idempotent by key, and every bad input is a clear 4xx."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session, select

from producers.api.deps import Services
from schemas.tables import Job
from tests.producers.conftest import MAX_UPLOAD
from tests.utils.factories import jpeg_bytes, png_bomb, png_bytes, sample_bytes
from tests.utils.fakes import RecordingPublisher


def upload(client: TestClient, auth: dict[str, str], data: bytes, key: str | None = "key-1",
           content_type: str = "image/jpeg") -> Any:  # fmt: skip
    headers = {**auth, "Content-Type": content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/photos", content=data, headers=headers)


def all_jobs(services: Services) -> list[Job]:
    with Session(services.engine) as session:
        return list(session.exec(select(Job)).all())


def test_accepted_photo_is_stored_committed_and_enqueued(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    data = sample_bytes("cmd")
    response = upload(client, auth, data)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"https://mhogo.example/v1/jobs/{body['job_id']}"
    assert response.headers["Location"] == body["status_url"]
    [job] = all_jobs(services)
    assert job.id == body["job_id"]
    assert services.blobs.get(job.blob_key) == data
    assert publisher.photos == [(job.id, job.blob_key)]
    assert job.enqueue_count == 1


def test_multipart_and_png_are_accepted(client: TestClient, auth: dict[str, str]) -> None:
    files = {"photo": ("leaf.jpg", sample_bytes("cbb"), "image/jpeg")}
    response = client.post("/v1/photos", files=files, headers={**auth, "Idempotency-Key": "multi"})
    assert response.status_code == 202, response.text
    png = png_bytes(Image.new("RGB", (300, 300), "green"))
    assert upload(client, auth, png, key="png", content_type="image/png").status_code == 202


def test_same_key_same_bytes_is_the_same_job(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    data = sample_bytes("cmd")
    first = upload(client, auth, data)
    again = upload(client, auth, data)
    assert again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(all_jobs(services)) == 1
    assert len(publisher.photos) == 1


def test_same_key_other_bytes_is_422(client: TestClient, auth: dict[str, str], services: Services) -> None:
    upload(client, auth, sample_bytes("cmd", 0))
    response = upload(client, auth, sample_bytes("cmd", 1))
    assert response.status_code == 422
    assert "different photo" in response.json()["detail"]
    assert len(all_jobs(services)) == 1


@pytest.mark.parametrize("key", [None, "", "x" * 256, "clé"])
def test_missing_or_malformed_key_is_400(client: TestClient, auth: dict[str, str], key: str | None) -> None:
    headers = {**auth, "Content-Type": "image/jpeg"}
    if key is not None:
        headers["Idempotency-Key"] = key
    encoded = [(k.encode(), v.encode()) for k, v in headers.items()]
    response = client.post("/v1/photos", content=sample_bytes(), headers=encoded)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


def test_broker_down_still_accepts_and_leaves_the_job_received(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    publisher.down = True
    response = upload(client, auth, sample_bytes())
    assert response.status_code == 202
    assert response.json()["status"] == "received"
    [job] = all_jobs(services)
    assert job.status == "received"
    assert services.blobs.exists(job.blob_key)


def test_body_over_the_limit_is_413(client: TestClient, auth: dict[str, str], services: Services) -> None:
    big = b"\xff\xd8\xff" + b"\x00" * (MAX_UPLOAD + 1)
    response = upload(client, auth, big)
    assert response.status_code == 413
    assert "MB" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while the body streams in
        yield b"\xff\xd8\xff"
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"\x00" * 65536

    streamed = client.post(
        "/v1/photos", content=chunks(), headers={**auth, "Idempotency-Key": "s", "Content-Type": "image/jpeg"}
    )
    assert streamed.status_code == 413
    files = {"photo": ("big.jpg", big[: MAX_UPLOAD + 10], "image/jpeg")}
    multipart = client.post("/v1/photos", files=files, headers={**auth, "Idempotency-Key": "m"})
    assert multipart.status_code == 413
    assert all_jobs(services) == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"hello, this is text", "text/plain"),
        (b"hello, this is text", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"GIF89a\x01\x00\x01\x00", "image/png"),
        (b"%PDF-1.4 ...", "application/octet-stream"),
    ],
)
def test_not_a_jpeg_or_png_is_415(client: TestClient, auth: dict[str, str], data: bytes, content_type: str) -> None:
    response = upload(client, auth, data, content_type=content_type)
    assert response.status_code == 415
    assert "JPEG or PNG" in response.json()["detail"].replace("image/jpeg or image/png", "JPEG or PNG")


def test_a_multipart_photo_that_declares_no_type_is_judged_by_its_bytes(
    client: TestClient, auth: dict[str, str]
) -> None:
    """A part with no Content-Type of its own (some phone HTTP libraries leave it out) is treated like
    application/octet-stream: a JPEG is accepted, and what is not a JPEG or PNG still gets a 415 with the reason."""

    def send(data: bytes, key: str) -> Any:
        boundary = "mhogo-boundary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="leaf"\r\n\r\n'.encode()
        body = head + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {**auth, "Idempotency-Key": key, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        return client.post("/v1/photos", content=body, headers=headers)

    accepted = send(sample_bytes("cbb"), "untyped")
    assert accepted.status_code == 202, accepted.text
    refused = send(b"GIF89a\x01\x00\x01\x00", "untyped-gif")
    assert refused.status_code == 415
    assert "JPEG or PNG" in refused.json()["detail"]


def test_multipart_without_photo_field_is_422(client: TestClient, auth: dict[str, str]) -> None:
    files = {"picture": ("leaf.jpg", sample_bytes(), "image/jpeg")}
    response = client.post("/v1/photos", files=files, headers={**auth, "Idempotency-Key": "m"})
    assert response.status_code == 422
    assert "'photo'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (sample_bytes()[:3000], "image/jpeg", "incomplete"),
        (png_bytes(Image.new("RGB", (100, 100)))[:-20], "image/png", "incomplete"),
        (png_bomb(), "image/png", "pixels"),
        (b"", "image/jpeg", "no photo"),
    ],
    ids=["truncated-jpeg", "truncated-png", "decompression-bomb", "empty"],
)
def test_unreadable_photo_is_422(
    client: TestClient, auth: dict[str, str], services: Services, data: bytes, content_type: str, reason: str
) -> None:
    response = upload(client, auth, data, content_type=content_type)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert all_jobs(services) == []


def test_a_photo_over_what_a_phone_takes_is_422_with_the_reason(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    """7000x7000 (49 MP) was under the cap of 50 MP, and cost 1.2 s and 191 MB to check as a PNG; a phone saves 8 to
    16 MP by default, and the cap is 24 MP."""
    response = upload(client, auth, png_bomb(7000, 7000), content_type="image/png")
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "The photo is 7000x7000 pixels, more than the 24000000 allowed. Send a smaller photo."
    )
    assert all_jobs(services) == []


def test_unknown_or_missing_token_is_401(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = client.post("/v1/photos", content=sample_bytes(), headers={**headers, "Idempotency-Key": "k"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_random_bytes_never_cause_a_server_error(client: TestClient, auth: dict[str, str]) -> None:
    import random

    rng = random.Random(7)
    base = sample_bytes()
    for i in range(60):
        data = bytearray(base[: rng.randint(0, len(base))])
        for _ in range(rng.randint(0, 20)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        kind = rng.choice(["image/jpeg", "image/png", "application/octet-stream", "text/plain", ""])
        response = upload(client, auth, bytes(data), key=uuid.uuid4().hex, content_type=kind)
        assert response.status_code < 500, (i, response.status_code, response.text)


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/photos", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/feedback", "/healthz"} <= set(spec["paths"])
    assert "image/jpeg" in spec["paths"]["/v1/photos"]["post"]["requestBody"]["content"]
    _ = jpeg_bytes
