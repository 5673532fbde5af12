"""Redis with a password, over TLS only (rediss://): the API, the workers and beat connect with nothing but the URL,
photos go through, and no secret (the Redis password, a device token, the operator password) reaches any log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
import trustme

from tests.integration.conftest import live_stack
from tests.utils.factories import sample_bytes
from tests.utils.processes import free_port, redis_server_binary, start, start_mhogo, stop, wait_for

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SecureRedis:
    url: str  # rediss://:password@host:port/0?ssl_cert_reqs=required&ssl_ca_certs=...
    password: str
    port: int
    ca: Path


@pytest.fixture
def secure_redis(tmp_path: Path) -> Iterator[SecureRedis]:
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "redis.pem", tmp_path / "redis.key"
    authority.cert_pem.write_to_path(str(ca))
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    password = f"p@ss w/rd:{uuid.uuid4().hex[:12]}"  # characters that must be escaped in a URL
    port = free_port()
    command = [redis_server_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
               "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
               "--tls-auth-clients", "no", "--requirepass", password, "--save", "", "--appendonly", "no"]  # fmt: skip
    process = start(command, {}, tmp_path / "redis.log")
    url = f"rediss://:{quote(password, safe='')}@127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    try:
        wait_for(lambda: redis.Redis.from_url(url).ping(), 10, "redis-server with TLS")
        yield SecureRedis(url, password, port, ca)
    finally:
        stop(process)


def test_the_pipeline_runs_on_redis_with_a_password_over_tls_and_logs_keep_every_secret(
    secure_redis: SecureRedis, tmp_path: Path
) -> None:
    # The server really asks for both: no password, or no TLS, and nothing gets in.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(f"rediss://127.0.0.1:{secure_redis.port}/0?ssl_ca_certs={secure_redis.ca}").ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=secure_redis.port, password=secure_redis.password, socket_timeout=2).ping()

    operator_password = f"op-{uuid.uuid4().hex}"
    env = {"MHOGO_FLOWER_PASSWORD": operator_password, "MHOGO_LOG_LEVEL": "DEBUG"}  # everything that gets logged
    with live_stack(tmp_path, f"sqlite:///{tmp_path / 'mhogo.db'}", secure_redis.url, env) as stack:
        beat = start_mhogo(["beat"], stack.env, tmp_path / "beat.log")
        try:
            token = stack.new_token("phone on TLS")
            with stack.client(token) as client:
                job_ids = []
                for index, kind in enumerate(["cmd", "healthy", "cbsd"]):
                    headers = {"Content-Type": "image/jpeg", "Idempotency-Key": f"tls-{index}"}
                    accepted = client.post("/v1/photos", content=sample_bytes(kind), headers=headers)
                    assert accepted.status_code == 202, accepted.text
                    job_ids.append(accepted.json()["job_id"])

                def finished() -> bool:
                    return all(client.get(f"/v1/jobs/{j}").json()["status"] == "classified" for j in job_ids)

                wait_for(finished, 90, "the photos to be classified through TLS Redis")
                assert client.get("/healthz").json()["checks"]["redis"] == "ok"
            wrong = httpx.get(f"{stack.api_url}/v1/jobs/{job_ids[0]}", headers={"Authorization": f"Bearer {token}x"})
            assert wrong.status_code == 401
            ops = httpx.get(f"{stack.api_url}/metrics", auth=("operator", operator_password))
            assert ops.status_code == 200
        finally:
            stop(beat)

    logs = {name: (tmp_path / name).read_text() for name in ("api.log", "worker.log", "beat.log")}
    assert "photo accepted" in logs["api.log"]
    assert "succeeded" in logs["worker.log"]
    secrets = {
        "the Redis password": secure_redis.password,
        "the Redis password, URL-encoded": quote(secure_redis.password, safe=""),
        "the device token": token,
        "the operator password": operator_password,
    }
    leaks = [f"{what} in {name}" for name, text in logs.items() for what, value in secrets.items() if value in text]
    assert leaks == []
