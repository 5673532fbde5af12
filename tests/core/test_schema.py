"""The schema's migrations: they make exactly the tables of the models (the check CI runs instead of autogenerate), a
database of the release before migrations upgrades in place with its devices and jobs, and a database behind or ahead
of the code is refused with what to do, never served with 503s."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from fastapi.testclient import TestClient
from filelock import FileLock
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from core import schema
from core.blobs import BlobStore
from core.config import Settings
from core.db import make_engine
from core.devices import hash_token
from core.namespace import deployment_id
from mhogo.cli import db as db_commands
from mhogo.cli import main
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.errors import DatabaseNotReady
from schemas.tables import ClientEvent, Job, UploadChunk, utcnow
from tests.utils.factories import sample_bytes
from tests.utils.fakes import RecordingPublisher
from tests.utils.postgres import postgres_database

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Made by the release of 2026-12-02 (commit 41c016a, before migrations) with its own create_all: two devices (the
# second revoked), a classified job with feedback, a rejected one and a queued one.
PREVIOUS_RELEASE = FIXTURES / "release-2026-12-02.db"
PREVIOUS_TOKEN = "XbfThoUwuDOCFC4ulqb37Aix3U10SBaf5-WooBjMvGo"  # of device 1, 'field phone'
CLASSIFIED, REJECTED, QUEUED = (
    "83155acc269345ddb74a30a365667a1c",
    "cc7818b8abe84fedb26d5e605a10fe4e",
    "794d81519142433297fa9c8cb8b30fb9",
)


def previous_release(tmp_path: Path) -> Engine:
    copy = tmp_path / "mhogo.db"
    shutil.copy(PREVIOUS_RELEASE, copy)
    return make_engine(f"sqlite:///{copy}")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_migrations_make_exactly_the_tables_of_the_models(dialect: str, tmp_path: Path) -> None:
    """What `alembic revision --autogenerate` would find: nothing. A change to schemas/tables.py without its
    migration fails here."""

    def check(engine: Engine) -> None:
        assert schema.upgrade(engine).ready
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                           SQLModel.metadata)  # fmt: skip
        assert differences == []

    if dialect == "sqlite":
        check(make_engine(f"sqlite:///{tmp_path / 'fresh.db'}"))
        return
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            check(engine)
        finally:
            engine.dispose()


def test_an_empty_database_is_made_by_whoever_opens_it_first_even_all_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'racing.db'}"
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            schema.ensure(make_engine(url))  # an engine each: as separate processes would
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert schema.state(make_engine(url)).ready


def test_a_service_that_opens_the_database_while_another_makes_it_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the tables of an empty database appear before its revision: the API, opening it while Flower made
    it (both check the deployment as they start), took it for the release before migrations and exited."""
    database = tmp_path / "making.db"
    url = f"sqlite:///{database}"
    looked = threading.Event()
    state = schema.state

    def state_seen(engine: Engine) -> schema.SchemaState:
        found = state(engine)
        looked.set()
        return found

    monkeypatch.setattr(schema, "state", state_seen)
    engine = make_engine(url)
    making = FileLock(f"{database}.upgrade.lock")  # what the process making the tables holds (schema._exclusive)
    making.acquire()
    with engine.begin() as connection:  # its first table is made, its revision not yet
        connection.execute(text("CREATE TABLE devices (id INTEGER PRIMARY KEY)"))
    outcome: list[object] = []
    opening = threading.Thread(target=lambda: outcome.append(_ensure(make_engine(url))))
    opening.start()
    looked.wait()  # the second process looked while the first is half way
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE devices"))
        command.upgrade(schema.config(connection), "head")
    making.release()
    opening.join()
    assert outcome == [schema.head()]


def _ensure(engine: Engine) -> object:
    try:
        return schema.ensure(engine).revision
    except DatabaseNotReady as exc:
        return exc


def test_the_previous_release_s_database_is_refused_until_it_is_upgraded(tmp_path: Path) -> None:
    engine = previous_release(tmp_path)
    before = schema.state(engine)
    assert before.revision is None
    assert "jobs" in before.tables
    with pytest.raises(DatabaseNotReady, match="run `mhogo db upgrade`"):
        schema.ensure(engine)
    services = Services(settings=_settings(tmp_path), engine=engine, blobs=None, publisher=RecordingPublisher())  # type: ignore[arg-type]
    with pytest.raises(DatabaseNotReady), TestClient(create_app(services, sweep_on_startup=False)):
        pass  # the API does not start, rather than answering every upload with a 503


def test_the_previous_release_s_database_upgrades_in_place_and_keeps_its_devices_and_jobs(tmp_path: Path) -> None:
    engine = previous_release(tmp_path)
    after = schema.upgrade(engine)
    assert after.ready
    assert schema.upgrade(engine) == after  # a second upgrade changes nothing
    services = Services(settings=_settings(tmp_path), engine=engine, blobs=None, publisher=RecordingPublisher())  # type: ignore[arg-type]
    with TestClient(create_app(services, sweep_on_startup=False)) as client:
        auth = {"Authorization": f"Bearer {PREVIOUS_TOKEN}"}
        classified = client.get(f"/v1/jobs/{CLASSIFIED}", headers=auth).json()
        assert classified["status"] == "classified"
        assert classified["result"]["label"] == "cmd"
        assert classified["result"]["model_version"] == "lite1+lite2-20261202-070550"
        rejected = client.get(f"/v1/jobs/{REJECTED}", headers=auth).json()
        assert rejected["rejection"]["reason"] == "too_dark"
        assert client.get(f"/v1/jobs/{QUEUED}", headers=auth).json()["status"] == "queued"
        assert client.get(f"/v1/jobs/{CLASSIFIED}").status_code == 401


def test_a_database_older_than_any_release_is_not_adopted(tmp_path: Path) -> None:
    """A database whose tables lack a column of the baseline (create_all never added columns) is not marked as
    upgraded: it is refused, with the columns it lacks."""
    engine = previous_release(tmp_path)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE jobs DROP COLUMN timings_ms"))
    with pytest.raises(DatabaseNotReady, match=r"jobs\.timings_ms"):
        schema.upgrade(engine)
    assert schema.state(engine).revision is None


def test_a_database_newer_than_the_code_is_refused_everywhere(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'newer.db'}")
    schema.upgrade(engine)
    with engine.begin() as connection:
        command.stamp(schema.config(connection), "head")
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(DatabaseNotReady, match="newer release"):
        schema.ensure(engine)
    with pytest.raises(DatabaseNotReady, match="newer release"):
        schema.upgrade(engine)


def test_db_current_and_upgrade_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = previous_release(tmp_path)
    monkeypatch.setattr(db_commands, "settings", _settings(tmp_path))
    behind = CliRunner().invoke(main, ["db", "current"])
    assert behind.exit_code == 1
    assert "no revision (before migrations)" in behind.output
    assert "mhogo db upgrade" in behind.output
    upgraded = CliRunner().invoke(main, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"at {schema.head()}" in upgraded.output
    current = CliRunner().invoke(main, ["db", "current"])
    assert current.exit_code == 0, current.output
    assert schema.state(engine).ready
    with Session(engine) as session:
        made = deployment_id(session)  # by the upgrade, once
    assert f"deployment {made}: its keys in Redis are under mhogo:{made}:" in current.output


def _settings(tmp_path: Path) -> Settings:
    return Settings(HOME=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'mhogo.db'}", RATE_LIMIT="")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_phone_events_stored_before_retention_count_as_received_at_the_upgrade(dialect: str, tmp_path: Path) -> None:
    """Migration 0003_retention: an event stored before it gets a received time (retention's clock), the upgrade's,
    so it is kept for the whole retention from then on whatever the phone's clock said."""

    def check(engine: Engine) -> None:
        with engine.begin() as connection:
            command.upgrade(schema.config(connection), "0002")
            connection.execute(text("INSERT INTO devices (name, token_hash, created_at) VALUES ('p', 'h', :at)"),
                               {"at": "2020-01-01 00:00:00"})  # fmt: skip
            connection.execute(text("INSERT INTO client_events (id, device_id, kind, at, data) VALUES "
                                    "('event-1', 1, 'made_up_kind', :at, '{}')"),
                               {"at": "2000-01-01 00:00:00"})  # fmt: skip
        before = utcnow()
        assert schema.upgrade(engine).ready
        with Session(engine) as session:
            [event] = session.exec(select(ClientEvent)).all()
        assert event.received_at >= before - timedelta(seconds=1)
        assert event.at.year == 2000

    if dialect == "sqlite":
        check(make_engine(f"sqlite:///{tmp_path / 'events.db'}"))
        return
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            check(engine)
        finally:
            engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_feedback_of_before_0003_gets_its_job_s_device_and_is_a_farmer_s_word(dialect: str, tmp_path: Path) -> None:
    """Every label stored before was sent with a device token on that device's own job; those that said
    "agronomist" said it in the body, unchecked: they become the farmers' words their credential made them, and
    the per-source counts agree with the rows again."""

    def check(engine: Engine) -> None:
        with engine.begin() as connection:
            command.upgrade(schema.config(connection), "0002")
            for statement in (
                "INSERT INTO devices (id, name, token_hash, created_at) VALUES (7, 'phone', 'h7', '2026-12-01')",
                "INSERT INTO jobs (id, device_id, idempotency_key, content_sha256, blob_key, content_type, size_bytes,"
                " status, enqueue_count, created_at, updated_at, label, model_version) VALUES ('j1', 7, 'k', 's', 'b',"
                " 'image/jpeg', 1, 'classified', 1, '2026-12-01', '2026-12-01', 'cmd', 'v1')",
                "INSERT INTO feedback (id, job_id, label, source, model_version, agrees, created_at) VALUES"
                " ('f1', 'j1', 'cgm', 'agronomist', 'v1', false, '2026-12-01'),"
                " ('f2', 'j1', 'cmd', 'farmer', 'v1', true, '2026-12-01')",
                "INSERT INTO model_feedback_counts VALUES ('v1', 'agronomist', 0, 1), ('v1', 'farmer', 1, 0)",
            ):
                connection.execute(text(statement))
        assert schema.upgrade(engine).ready
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, source, device_id, agronomist FROM feedback ORDER BY id"))
            assert [tuple(row) for row in rows] == [("f1", "farmer", 7, None), ("f2", "farmer", 7, None)]
            counts = connection.execute(text("SELECT model_version, source, confirmed, corrected FROM "
                                             "model_feedback_counts"))  # fmt: skip
            assert [tuple(row) for row in counts] == [("v1", "farmer", 1, 1)]

    if dialect == "sqlite":
        check(make_engine(f"sqlite:///{tmp_path / 'old.db'}"))
        return
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            check(engine)
        finally:
            engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_an_upload_in_progress_across_0004_completes_with_every_byte(dialect: str, tmp_path: Path) -> None:
    """Migration 0004_upload_parts: the chunks a release before stored in the database keep their bytes there and get
    their size; the upload goes on in part files, and completes from both kinds of chunk."""
    data = sample_bytes("cmd")
    token = "a phone of the release before"

    def check(engine: Engine) -> None:
        with engine.begin() as connection:
            command.upgrade(schema.config(connection), "0003_namespace")
            connection.execute(text("INSERT INTO devices (id, name, token_hash, created_at) VALUES (1, 'phone', :hash, "
                                    "'2026-12-06 10:00:00')"), {"hash": hash_token(token)})  # fmt: skip
            connection.execute(text("INSERT INTO uploads (id, device_id, idempotency_key, length, received, meta, "
                                    "created_at, expires_at) VALUES ('u1', 1, 'k', :length, 1000, '{}', "
                                    "'2026-12-06 10:00:00', '2100-01-01 00:00:00')"),
                               {"length": len(data)})  # fmt: skip
            connection.execute(text("INSERT INTO upload_chunks (upload_id, start, data) VALUES ('u1', 0, :data)"),
                               {"data": data[:1000]})  # fmt: skip
        assert schema.upgrade(engine).ready
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT start, size_bytes, key FROM upload_chunks"))
            assert [tuple(row) for row in rows] == [(0, 1000, None)]
        blobs = BlobStore(tmp_path / dialect / "blobs")
        services = Services(settings=_settings(tmp_path), engine=engine, blobs=blobs, publisher=RecordingPublisher())
        auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
        with TestClient(create_app(services, sweep_on_startup=False)) as client:
            assert client.head("/v1/uploads/u1", headers=auth).headers["Upload-Offset"] == "1000"
            answers = [client.patch("/v1/uploads/u1", content=data[start:end], headers={
                **auth, "Upload-Offset": str(start), "Content-Type": "application/offset+octet-stream"})
                for start, end in ((1000, 4000), (4000, len(data)))]  # fmt: skip
        assert [answer.status_code for answer in answers] == [204, 204]
        with Session(engine) as session:
            job = session.get(Job, answers[-1].headers["Mhogo-Job-Id"])
            assert job is not None
            assert session.exec(select(UploadChunk)).all() == []
        assert blobs.get(job.blob_key) == data

    if dialect == "sqlite":
        check(make_engine(f"sqlite:///{tmp_path / 'mhogo.db'}"))
        return
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            check(engine)
        finally:
            engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_feedback_stored_before_0007_joins_the_label_history_once(dialect: str, tmp_path: Path) -> None:
    """Migration 0007_workbench: every feedback row becomes a label in the photos' history, on the job's photo, a
    farmer's with its device, an agronomist's without one, under its event id: the event redelivered after the
    upgrade adds no second label, and the rule gives the agronomist's word."""
    from core.feedback import record_feedback
    from core.labels import decide, history
    from schemas.tables import FeedbackSource, LabelSource
    from schemas.tasks import FeedbackEvent

    def check(engine: Engine) -> None:
        with engine.begin() as connection:
            command.upgrade(schema.config(connection), "0006_pairing")
            for statement in (
                "INSERT INTO devices (id, name, token_hash, created_at) VALUES (7, 'phone', 'h7', '2026-12-01')",
                "INSERT INTO jobs (id, device_id, idempotency_key, content_sha256, blob_key, content_type, size_bytes,"
                " status, enqueue_count, created_at, updated_at, label, model_version) VALUES ('j1', 7, 'k', 'sha1',"
                " 'photos/ab/x.jpg', 'image/jpeg', 1, 'classified', 1, '2026-12-01', '2026-12-01', 'cmd', 'v1')",
                "INSERT INTO feedback (id, job_id, label, source, device_id, agronomist, model_version, agrees,"
                " created_at) VALUES ('f1', 'j1', 'cgm', 'farmer', 7, NULL, 'v1', false, '2026-12-01 10:00:00'),"
                " ('f2', 'j1', 'cbb', 'agronomist', NULL, 'Amina', 'v1', false, '2026-12-01 11:00:00')",
            ):
                connection.execute(text(statement))
        assert schema.upgrade(engine).ready
        with Session(engine) as session:
            rows = history(session, "sha1")
            assert [(r.label, r.source, r.device_id, r.job_id, r.blob_key, r.feedback_id) for r in rows] == [
                ("cgm", LabelSource.FARMER, 7, "j1", "photos/ab/x.jpg", "f1"),
                ("cbb", LabelSource.AGRONOMIST, None, "j1", "photos/ab/x.jpg", "f2"),
            ]
            again = FeedbackEvent(event_id="f2", job_id="j1", label="cbb", source=FeedbackSource.AGRONOMIST,
                                  agronomist="Amina", created_at=rows[1].created_at)  # fmt: skip
            assert not record_feedback(session, again)
            assert len(history(session, "sha1")) == 2
            assert decide(history(session, "sha1"), farmers_to_agree=2).label == "cbb"

    if dialect == "sqlite":
        check(make_engine(f"sqlite:///{tmp_path / 'old.db'}"))
        return
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            check(engine)
        finally:
            engine.dispose()
