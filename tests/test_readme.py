"""The README documents every setting, and its two commands are the ones CI and the Makefile run."""

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
