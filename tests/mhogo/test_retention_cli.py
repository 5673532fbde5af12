"""`mhogo retention run [--dry-run]` on a MHOGO_HOME of its own and the real Redis: the dry run counts and changes
nothing, the run deletes and says what, the next run finds nothing more."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import update
from sqlmodel import Session, col

from core import jobs, telemetry
from core.blobs import BlobStore
from core.config import Settings, settings
from core.db import open_database
from core.feedback import record_feedback
from core.namespace import resolve
from mhogo.cli import db as db_commands
from mhogo.cli import main
from mhogo.cli import retention as retention_commands
from schemas.findings import Finding
from schemas.tables import FeedbackSource, Job, utcnow
from schemas.tasks import FeedbackEvent
from tests.utils.factories import make_device
from tests.utils.processes import ensure_default_redis

MADE_UP = ("mhogo_client_events_total", frozenset({"kind": "made_up_by_an_old_release"}.items()))


def counts(output: str) -> dict[str, int]:
    """The figures the command printed, by name."""
    return {line.split()[0]: int(line.split()[1]) for line in output.splitlines()[1:]}


def old_photos(config: Settings) -> tuple[str, str]:
    """An old photo without a label and one an agronomist labelled."""
    blobs = BlobStore(config.blob_dir)
    with Session(open_database(config.database_url), expire_on_commit=False) as session:
        device, _ = make_device(session)
        assert device.id is not None
        keys = []
        for _ in range(2):
            data = uuid.uuid4().bytes
            key = blobs.put("photos", data, ".jpg")
            sha = hashlib.sha256(data).hexdigest()
            new = jobs.NewPhoto(device.id, uuid.uuid4().hex, sha, key, "image/jpeg", len(data))
            [job_id] = jobs.insert_jobs(session, [new])
            assert job_id is not None
            jobs.finish(session, job_id, Finding(label="cmd", confidence=0.9, model_version="v1"))
            session.execute(update(Job).where(col(Job.id) == job_id).values(created_at=utcnow() - timedelta(days=91)))
            session.commit()
            keys.append(key)
        record_feedback(session, FeedbackEvent(event_id=uuid.uuid4().hex, job_id=job_id, label="cbsd",
                                               source=FeedbackSource.AGRONOMIST, agronomist="an agronomist",
                                               created_at=utcnow()))  # fmt: skip
    return keys[0], keys[1]


def test_dry_run_counts_the_run_deletes_and_the_next_finds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Settings(HOME=tmp_path, REDIS_URL=settings.REDIS_URL)
    monkeypatch.setattr(retention_commands, "settings", config)
    monkeypatch.setattr(db_commands, "settings", config)  # the database and deployment it checks first
    unlabelled, labelled = old_photos(config)
    blobs = BlobStore(config.blob_dir)
    ensure_default_redis()
    client = redis.Redis.from_url(settings.REDIS_URL)
    namespace = resolve(open_database(config.database_url), None)  # the deployment `mhogo retention` runs in
    telemetry.add(client, namespace, {MADE_UP: 3.0})

    dry = CliRunner().invoke(main, ["retention", "run", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would delete (dry run, nothing changed):")
    assert counts(dry.output) == {"photos": 1, "photos_kept_labelled": 1, "jobs": 0, "client_events": 0,
                                  "metric_points": 0, "challengers": 0, "run_files": 0, "part_files": 0,
                                  "counters": 1}  # fmt: skip
    assert blobs.exists(unlabelled)

    run = CliRunner().invoke(main, ["retention", "run"])
    assert run.exit_code == 0, run.output
    assert run.output.startswith("deleted:")
    figures = counts(run.output)
    assert figures.pop("bytes_freed") == 16
    assert figures == {"photos": 1, "photo_files": 1, "photos_kept_labelled": 1, "jobs": 0, "client_events": 0,
                       "metric_points": 0, "challengers": 0, "run_files": 0, "part_files": 0,
                       "counters": 1}  # fmt: skip
    assert not blobs.exists(unlabelled)
    assert blobs.exists(labelled)  # training data
    assert all(labels.get("kind") != "made_up_by_an_old_release" for _, labels, _ in telemetry.read(client, namespace))

    again = CliRunner().invoke(main, ["retention", "run"])
    assert counts(again.output) == {"photos": 0, "photos_kept_labelled": 1, "jobs": 0, "client_events": 0,
                                    "metric_points": 0, "challengers": 0, "run_files": 0, "part_files": 0}  # fmt: skip
    client.close()
