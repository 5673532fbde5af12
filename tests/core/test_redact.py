"""Secrets never reach a log line or the terminal of `mhogo up`."""

import io
import logging
import stat
from pathlib import Path

from pydantic import SecretStr

from core.config import Settings
from core.logs import configure_logging
from core.redact import redact, secrets_of
from mhogo.stack import Stack

log = logging.getLogger("tests.redact")


def test_patterns_mask_url_passwords_credentials_and_password_pairs() -> None:
    assert redact("broker rediss://:p%40ss@redis:6380/0?ssl_cert_reqs=required") == (
        "broker rediss://:***@redis:6380/0?ssl_cert_reqs=required")  # fmt: skip
    assert redact("postgresql+psycopg://mhogo:hunter22@db/mhogo") == "postgresql+psycopg://mhogo:***@db/mhogo"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"  # a port is not a password
    assert redact("Authorization: Bearer abc.DEF_123-x") == "Authorization: Bearer ***"
    assert redact("authorization: basic b3A6czNjcmV0") == "authorization: basic ***"
    assert redact("connect(password='x', host=h) token=abc&x=1") == "connect(password='***', host=h) token=***&x=1"
    assert redact('{"password": "hunter22", "user": "u"}') == '{"password": "***", "user": "u"}'


def test_configured_secrets_are_masked_wherever_they_appear() -> None:
    settings = Settings(REDIS_URL="redis://:s3cr%2Ft@r:6379/0", DATABASE_URL="postgresql://u:dbpass@h/d",
                        FLOWER_PASSWORD=SecretStr("op-pass"))  # fmt: skip
    secrets = secrets_of(settings)
    assert {"s3cr/t", "s3cr%2Ft", "dbpass", "op-pass"} <= secrets
    assert redact("auth failed for 's3cr/t' and op-pass", secrets) == "auth failed for '***' and ***"


def test_log_lines_are_redacted_message_extra_fields_and_tracebacks(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out, secrets={"op-pass"})
    log.info("connecting to redis://:hunter22@r:6379/0", extra={"header": "Bearer tok123456"})
    try:
        raise ValueError("login refused for op-pass")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert "hunter22" not in text
    assert "tok123456" not in text
    assert "op-pass" not in text
    assert text.count("***") >= 3


def test_mhogo_up_masks_what_it_and_its_services_print_and_keeps_a_made_up_password_in_a_private_file(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    settings = Settings(HOME=tmp_path, REDIS_URL="redis://:hunter22@127.0.0.1:1/0", FLOWER_PASSWORD=None)
    stack = Stack(settings, services=(), out=out)
    stack.env["MHOGO_REDIS_URL"] = settings.REDIS_URL
    stack.start(explicit_redis_url=True)
    password = stack.env["MHOGO_FLOWER_PASSWORD"]
    stack.say("worker-photos", f"a service printing {password} and {settings.REDIS_URL}")
    stack.stop()
    text = out.getvalue()
    assert password not in text
    assert "hunter22" not in text
    saved = tmp_path / "flower-password"
    assert saved.read_text().strip() == password
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert str(saved) in text
