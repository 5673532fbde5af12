from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from core.blobs import BlobStore
from core.config import Settings
from core.devices import add_device
from producers.api.app import create_app
from producers.api.deps import Services
from tests.utils.fakes import RecordingPublisher

MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def services(tmp_path: Path, sqlite_engine: Engine, blobs: BlobStore, publisher: RecordingPublisher) -> Services:
    config = Settings(HOME=tmp_path, MAX_UPLOAD_BYTES=MAX_UPLOAD, PUBLIC_URL="https://mhogo.example")
    return Services(settings=config, engine=sqlite_engine, blobs=blobs, publisher=publisher)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, sweep_on_startup=False), raise_server_exceptions=False) as client:
        yield client


def new_token(services: Services, name: str = "phone") -> str:
    with Session(services.engine) as session:
        return add_device(session, name)[1]


@pytest.fixture
def token(services: Services) -> str:
    return new_token(services)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
