"""The README documents every setting, and its two commands are the ones CI and the Makefile run."""

import subprocess
from pathlib import Path

from core.config import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [name for name in Settings.model_fields if f"MHOGO_{name}" not in README]
    assert missing == []


def test_the_main_and_test_commands() -> None:
    assert "```sh\nmake up\n```" in README
    assert "```sh\nmake test\n```" in README
    assert "make test" in (REPO / ".ci" / "run").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "mhogo up --demo" in makefile
    assert "torch==2.13.0" in makefile


def dry_run(target: str) -> str:
    """What `make TARGET` would run on a fresh clone: every recipe, none of them run."""
    done = subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_main_command_installs_no_browser_and_the_tests_do() -> None:
    """`make up` once ran apt-get (and upgraded system packages on a fresh machine) for a browser only a test needs."""
    main = dry_run("up")
    assert "apt-get" not in main
    assert "chromium" not in main
    assert "[dev]" not in main
    tests = dry_run("test")
    assert "apt-get install -y -qq --no-upgrade chromium chromium-driver" in tests
    assert "pip install -q -e '.[dev]'" in tests


def test_every_phone_event_kind_is_documented() -> None:
    from schemas.tasks import ClientEventKind

    assert [kind.value for kind in ClientEventKind if f"`{kind.value}`" not in README] == []
