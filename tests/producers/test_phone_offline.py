"""Out of coverage the phone answers at once from its own build of the model (ONNX), marked provisional; once the
network is back it shows the server's answer instead. Both come from the same bytes and the same code, so they agree."""

from __future__ import annotations

import random
from pathlib import Path
from typing import cast

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlmodel import Session

from core import jobs
from core.config import settings
from mhogo.cli import main
from ml.checkpoint import load_checkpoint
from ml.diagnose import examine
from ml.export import Exported
from ml.phone_build import PhoneBuild
from ml.predictor import Predictor
from producers.api.deps import Services
from producers.phone import Backoff, Outbox, Phone
from schemas.errors import ModelError
from schemas.tables import Job
from tests.utils.factories import SAMPLES

PHOTOS = [*sorted(SAMPLES.glob("cassava/*/*.jpg"))[::10], *sorted(SAMPLES.glob("negatives/*.jpg"))[:3]]


@pytest.fixture(scope="module")
def build(baseline_onnx: Exported) -> PhoneBuild:
    return PhoneBuild(baseline_onnx.path)


def no_network(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("no coverage", request=request)


def serve(services: Services, job_id: str) -> None:
    """What the workers do with the photo, in-process: the served model's diagnosis, stored on the job."""
    with Session(services.engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        data = services.blobs.get(job.blob_key)
    finding = examine(data, Predictor(load_checkpoint(settings.model_path)), settings.quality_thresholds, 10**8)
    with Session(services.engine) as session:
        assert jobs.finish(session, job_id, finding)


def test_offline_the_phone_answers_provisionally_and_later_shows_the_servers_answer(
    build: PhoneBuild, client: TestClient, auth: dict[str, str], services: Services, tmp_path: Path
) -> None:
    offline = httpx.Client(transport=httpx.MockTransport(no_network), base_url="http://api")
    phone = Phone(Outbox(tmp_path), offline, backoff=Backoff(base_s=0.0), rng=random.Random(1))
    source = {phone.outbox.take(path, offline=build).key: path for path in PHOTOS}
    phone.step()  # out of coverage: nothing goes, every photo waits, and each already has its answer
    for photo in phone.outbox.photos():
        assert photo.state == "waiting"
        assert photo.answer is not None
        assert photo.answer["provisional"] is True
        assert photo.answer["source"] == "phone"
        assert photo.answer["model_version"] == build.version
    guesses = {p.key: p.answer for p in phone.outbox.photos()}
    assert {g["status"] for g in guesses.values() if g} == {"classified", "rejected"}  # negatives turned away
    for key, guess in guesses.items():
        if source[key].parent.name == "negatives":
            assert guess is not None
            assert guess["reason"] == "not_cassava_leaf"

    client.headers.update(auth)  # back in coverage
    phone.client = cast(httpx.Client, client)
    phone.step()
    for photo in phone.outbox.photos("sent"):
        assert photo.job_id is not None
        serve(services, photo.job_id)
    phone.step()
    for photo in phone.outbox.photos():
        assert photo.state == "done"
        answer = photo.answer
        assert answer is not None
        assert answer["source"] == "server"
        assert "provisional" not in answer
        guess = guesses[photo.key]
        assert guess is not None
        assert answer["status"] == guess["status"]  # the same bytes, the same code: the same answer
        if answer["status"] == "classified":
            assert answer["result"]["label"] == guess["label"]
            assert abs(answer["result"]["confidence"] - guess["confidence"]) < 0.01
        else:
            assert answer["rejection"]["reason"] == guess["reason"]
        assert photo.provisional == guess  # kept, to compare
    phone.outbox.close()


def test_mhogo_phone_take_with_the_build_prints_the_provisional_answer(build: PhoneBuild, tmp_path: Path) -> None:
    photo = sorted(SAMPLES.glob("cassava/cmd/*.jpg"))[0]
    result = CliRunner().invoke(main, ["phone", "take", str(photo), "--outbox", str(tmp_path),
                                       "--model", str(build.path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(provisional, this phone's model)" in result.output
    listed = CliRunner().invoke(main, ["phone", "list", "--outbox", str(tmp_path)])
    assert "provisional" in listed.output


def test_a_build_that_does_not_match_its_description_is_refused(build: PhoneBuild, tmp_path: Path) -> None:
    copy = tmp_path / "phone.onnx"
    copy.write_bytes(build.path.read_bytes() + b"\0")
    copy.with_suffix(".json").write_text(build.path.with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="sha256"):
        PhoneBuild(copy)
