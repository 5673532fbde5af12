"""Test-wide setup. The environment is set before any mhogo module is imported, because `core.config.settings` is
read once at import: every test run gets its own MHOGO_HOME and its own Redis database number."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

_HOME = Path(tempfile.mkdtemp(prefix="mhogo-test-"))
os.environ["MHOGO_HOME"] = str(_HOME)
# A Redis database number of its own per run and per xdist worker (1..15): two runs on one machine (CI and a
# person, say), or the two workers of one run, would otherwise share queues and take each other's tasks.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_RUN = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()
os.environ.setdefault("MHOGO_REDIS_URL", f"redis://127.0.0.1:6379/{1 + (_RUN % 7) * 2 + _WORKER % 2}")
os.environ.setdefault("MHOGO_FLOWER_PASSWORD", "test-password")
os.environ["MHOGO_TORCH_THREADS"] = "1"
if "PYTEST_XDIST_WORKER" in os.environ:  # two test processes on two cores: one math thread each, or they thrash
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
os.environ.pop("MHOGO_DATABASE_URL", None)
os.environ.pop("MHOGO_DEPLOYMENT", None)  # every test database is a deployment of its own

import pytest  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from sqlmodel import Session  # noqa: E402

from core.blobs import BlobStore  # noqa: E402
from core.celery_app import app as celery_app  # noqa: E402
from core.db import open_database  # noqa: E402
from core.namespace import BOUND  # noqa: E402
from tests.utils.postgres import postgres_database  # noqa: E402

if TYPE_CHECKING:
    from ml.export import Exported

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def unbound_celery_app() -> Iterator[None]:
    """A process binds its Celery app to one deployment for good (core.namespace.bind); a test process goes through
    many test databases, each its own deployment: a task applied in one test works in that test's namespace."""
    before = {key: celery_app.conf.get(key) for key in (BOUND, "broker_transport_options")}
    yield
    celery_app.conf.update(before)


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'test.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The same storage tests on SQLite and on this machine's PostgreSQL, each in a fresh database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        engine = open_database(url)
        yield engine
        engine.dispose()
        return
    with postgres_database() as url:
        engine = open_database(url)
        yield engine
        engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="session")
def baseline_onnx(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The shipped model's phone build (fp32 ONNX and its JSON), exported once for every test that needs it."""
    from core.config import settings
    from ml.checkpoint import load_checkpoint
    from ml.export import export_onnx

    folder = tmp_path_factory.mktemp("phone-build")
    return export_onnx(load_checkpoint(settings.model_path), folder / "baseline.onnx", settings.quality_thresholds)
