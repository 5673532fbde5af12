"""compose.yaml cannot run here (no Docker engine), so it is validated against the Compose specification and
compared with what `mhogo up` runs."""

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mhogo.stack import SERVICES

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema)


def test_services_are_what_mhogo_up_runs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres"} | {s.name for s in SERVICES}
    for service in SERVICES:
        assert services[service.name]["command"] == ["mhogo", *service.argv]


def test_redis_is_durable_and_protected(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert "MHOGO_REDIS_PASSWORD" in flags["--requirepass"]


def test_mhogo_services_use_postgres_and_the_password_protected_redis(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        env = compose["services"][service.name]["environment"]
        assert env["MHOGO_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["MHOGO_DATABASE_URL"]
        assert env["MHOGO_REDIS_URL"].startswith("redis://:${MHOGO_REDIS_PASSWORD")
        assert "mhogo-data:/data" in compose["services"][service.name]["volumes"]


def test_the_image_installs_the_cpu_torch_first() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.index("torch==2.13.0") < dockerfile.index("pip install .")


def test_the_image_builds_the_farmer_s_app_and_serves_it() -> None:
    """Without its build stage the image had no app/dist and compose's /app/ answered 503. What it copies from the
    repository is there (a machine without Docker can check that much of a build)."""
    dockerfile = (REPO / "Dockerfile").read_text()
    copies = [line.split()[1:] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources = [part for args in copies if not args[0].startswith("--from=") for part in args[:-1]]
    assert sources
    assert [source for source in sources if not (REPO / source).exists()] == []
    [(built, served)] = [args[1:] for args in copies if args[0] == "--from=farmer-app"]
    assert built.endswith("/app/dist")
    assert f"MHOGO_APP_DIR={served}" in dockerfile
    assert "npm ci" in dockerfile
