"""`mhogo up`: the supervisor, its Redis fallback, and the whole main command end to end."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Settings
from mhogo.stack import Stack, redis_answers
from tests.utils.processes import free_port


def test_starts_an_embedded_redis_when_none_answers(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    stack = Stack(Settings(HOME=tmp_path, REDIS_URL=dead), services=(), out=io.StringIO())
    try:
        url = stack.resolve_redis(explicit_url=False)
        assert url != dead
        assert redis_answers(url)
        assert (tmp_path / "redis").is_dir()
    finally:
        stack.stop()
    assert not redis_answers(url)


def test_an_explicit_url_is_used_as_it_is(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    stack = Stack(Settings(HOME=tmp_path, REDIS_URL=dead), services=(), out=io.StringIO())
    assert stack.resolve_redis(explicit_url=True) == dead
    assert stack.processes == {}


@pytest.mark.integration
def test_up_with_the_demo_prints_a_result_for_every_sample(tmp_path: Path) -> None:
    env = dict(os.environ) | {
        "MHOGO_HOME": str(tmp_path),
        "MHOGO_API_PORT": str(free_port()),
        "MHOGO_FLOWER_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mhogo", "up", "--demo", "--once"],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    summary = re.search(r"demo: (\d+) classified, (\d+) rejected, (\d+) failed, (\d+) unfinished", done.stdout)
    assert summary is not None, done.stdout[-3000:]
    classified, rejected, failed, unfinished = map(int, summary.groups())
    assert (classified + rejected, failed, unfinished) == (60, 0, 0)
    assert "stopping worker-inference" in done.stdout
    assert "Warm shutdown" in done.stdout
