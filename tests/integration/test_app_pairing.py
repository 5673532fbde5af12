"""A farmer's phone pairs through a live `mhogo api` (uvicorn, with its access log on): the link the command prints
opens the app, its code pairs the phone, and neither the code nor the token it buys ever reaches the API's log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.utils.processes import free_port, start_mhogo, stop, wait_for

pytestmark = pytest.mark.integration


def test_the_pairing_code_and_token_stay_out_of_the_access_log(tmp_path: Path, redis_url: str) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>mhogo</title>")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ) | {"MHOGO_HOME": str(tmp_path), "MHOGO_API_PORT": str(port), "MHOGO_PUBLIC_URL": url,
                              "MHOGO_APP_DIR": str(dist), "MHOGO_LOG_LEVEL": "INFO",
                              "MHOGO_REDIS_URL": redis_url}  # fmt: skip
    added = subprocess.run([sys.executable, "-m", "mhogo", "devices", "add", "Amina", "--link"], env=env,
                           capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    link = added.stdout.strip().splitlines()[-1]
    code = link.split("#pair=", 1)[1]
    api = start_mhogo(["api"], env, tmp_path / "api.log")
    try:
        wait_for(lambda: httpx.get(f"{url}/healthz").status_code == 200, 60, "the API")
        opened = httpx.get(link)  # what the phone's browser asks for: the fragment stays on the phone
        assert (opened.status_code, opened.text) == (200, (dist / "index.html").read_text())
        paired = httpx.post(f"{url}/v1/pairings", json={"code": code})
        assert paired.status_code == 201, paired.text
        token = paired.json()["token"]
        assert httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.post(f"{url}/v1/pairings", json={"code": code}).status_code == 410
    finally:
        stop(api)
    log = (tmp_path / "api.log").read_text()
    assert "GET /app/ HTTP/1.1" in log  # the access log was on and saw every request
    assert log.count("POST /v1/pairings HTTP/1.1") == 2
    assert code not in log
    assert token not in log
