"""Hostile files through POST /v1/photos (the corpus in tests/utils/hostile.py): each refused file gets its 4xx with
a message that says what to do, and leaves nothing behind; each accepted file is taken for what its bytes are, whatever
its name and Content-Type say. Never a 5xx."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from ml.imaging import sniff_format
from producers.api.deps import Services
from producers.intake import MEDIA_TYPES, SUFFIXES
from schemas.tables import Job
from tests.utils.fakes import RecordingPublisher
from tests.utils.hostile import CORPUS, Hostile

FILES = {make.__name__: make() for make in CORPUS}  # made once: the bombs take a moment to build
SAYS_WHAT_TO_DO = re.compile(r"\b(Send|Take|Put|Use)\b")


def send(
    client: TestClient, auth: dict[str, str], item: Hostile, transport: str, content_type: str = ""
) -> Any:  # TestClient's response
    """The file as a phone app would send it: the raw body, or multipart field 'photo' with its file name."""
    declared = content_type or item.content_type
    headers = {**auth, "Idempotency-Key": f"{item.name}-{transport}"}
    if transport == "multipart":
        return client.post("/v1/photos", files={"photo": (item.name, item.data, declared)}, headers=headers)
    return client.post("/v1/photos", content=item.data, headers={**headers, "Content-Type": declared})


def stored_jobs(services: Services) -> list[Job]:
    with Session(services.engine) as session:
        return list(session.exec(select(Job)).all())


def stored_files(services: Services) -> list[str]:
    return [str(path) for path in services.blobs.root.rglob("*") if path.is_file()]


@pytest.mark.parametrize("transport", ["body", "multipart"])
@pytest.mark.parametrize("item", FILES.values(), ids=FILES.keys())
def test_each_hostile_file_gets_its_answer(
    client: TestClient,
    auth: dict[str, str],
    services: Services,
    publisher: RecordingPublisher,
    item: Hostile,
    transport: str,
) -> None:
    response = send(client, auth, item, transport)
    if item.refused:
        assert response.status_code == item.expected, response.text
        detail = response.json()["detail"]
        assert SAYS_WHAT_TO_DO.search(detail), detail
        assert stored_jobs(services) == []
        assert stored_files(services) == []
        assert publisher.photos == []
        return
    assert response.status_code == 202, response.text
    [job] = stored_jobs(services)
    assert publisher.photos == [(job.id, job.blob_key)]
    fmt = sniff_format(item.data)  # what the bytes are, not what the name or the header said
    assert (job.content_type, job.blob_key[-4:]) == (MEDIA_TYPES[fmt], SUFFIXES[fmt])
    assert services.blobs.get(job.blob_key) == item.data


@pytest.mark.parametrize("item", FILES.values(), ids=FILES.keys())
def test_the_bytes_decide_not_the_declared_type(client: TestClient, auth: dict[str, str], item: Hostile) -> None:
    """Sent as application/octet-stream, every file gets the same answer as with its own Content-Type: a GIF or an
    SVG is refused by its content too, not only by its label."""
    response = send(client, auth, item, "body", content_type="application/octet-stream")
    assert response.status_code == (item.expected if item.refused else 202), response.text
