"""Operators see every task in Flower, behind basic auth, with readable names and arguments: ids and blob keys,
never image bytes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.queues import TaskName
from tests.integration.conftest import LiveStack, live_stack
from tests.utils.factories import sample_bytes
from tests.utils.processes import free_port, start_mhogo, stop, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def flower(tmp_path: Path, redis_url: str) -> Iterator[tuple[LiveStack, str]]:
    port = free_port()
    env = {"MHOGO_FLOWER_PORT": str(port), "MHOGO_FLOWER_USER": "op", "MHOGO_FLOWER_PASSWORD": "s3cret"}
    with live_stack(tmp_path, f"sqlite:///{tmp_path / 'mhogo.db'}", redis_url, env) as stack:
        process = start_mhogo(["flower"], stack.env, tmp_path / "flower.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: httpx.get(f"{url}/api/workers", auth=("op", "s3cret")).status_code == 200, 60, "Flower")
            # The password is in Flower's environment, not on its command line where `ps` shows it to anyone.
            assert b"s3cret" not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
            yield stack, url
            assert "s3cret" not in (tmp_path / "flower.log").read_text()
        finally:
            stop(process)


def test_flower_shows_the_pipeline_tasks_with_readable_arguments(flower: tuple[LiveStack, str]) -> None:
    stack, url = flower
    assert httpx.get(f"{url}/api/tasks").status_code == 401
    assert httpx.get(f"{url}/api/tasks", auth=("op", "wrong")).status_code == 401
    with stack.client(stack.new_token()) as client:
        headers = {"Content-Type": "image/jpeg", "Idempotency-Key": uuid.uuid4().hex}
        job_id = client.post("/v1/photos", content=sample_bytes("cbb"), headers=headers).json()["job_id"]
        wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "classified", 60, "the photo")

    def pipeline_tasks() -> dict[str, dict[str, object]]:
        tasks = httpx.get(f"{url}/api/tasks", auth=("op", "s3cret")).json()
        mine = {t["name"]: t for t in tasks.values() if job_id in str(t.get("args"))}
        return mine if mine and all(t["state"] == "SUCCESS" for t in mine.values()) else {}

    tasks = wait_for(pipeline_tasks, 30, "Flower to see the task of the job")
    assert isinstance(tasks, dict)
    assert set(tasks) == {TaskName.DIAGNOSE}  # one task per photo
    for task in tasks.values():
        args = str(task["args"])
        assert len(args) < 2000, args  # small JSON: ids, keys and figures
        assert "\\xff\\xd8" not in args
        assert "/9j/" not in args  # nor a base64 JPEG
    assert "photos/" in str(tasks[TaskName.DIAGNOSE]["args"])


def test_flower_is_read_only_on_loopback_and_every_page_asks_for_the_login(flower: tuple[LiveStack, str]) -> None:
    """Flower listened on every interface, served /metrics and /healthcheck to anyone, and ran any task for the
    operator login (`POST /api/task/async-apply/mhogo.retraining.train` started a retraining)."""
    _, url = flower
    for page in ("/metrics", "/healthcheck", "/api/workers"):
        assert httpx.get(f"{url}{page}").status_code == 401, page
        assert httpx.get(f"{url}{page}", auth=("op", "s3cret")).status_code == 200, page
    ran = httpx.post(f"{url}/api/task/async-apply/{TaskName.RETRAIN.value}", auth=("op", "s3cret"), json={"args": [1]})
    assert ran.status_code == 403, ran.text
    port = url.rsplit(":", 1)[1]
    outside = next((address for address in host_addresses() if not address.startswith("127.")), None)
    if outside is not None:  # the machine's own address on its network: nothing listens there
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{outside}:{port}/api/workers", auth=("op", "s3cret"), timeout=3)


def host_addresses() -> list[str]:
    """This machine's IPv4 addresses."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the outgoing interface
        return [probe.getsockname()[0]]
