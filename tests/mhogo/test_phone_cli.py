"""`mhogo phone feedback`: what someone says a photo shows waits in the outbox beside the photo, with its own key."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mhogo.cli import main
from producers.phone import Outbox
from tests.utils.factories import sample_photo


def test_feedback_waits_in_the_outbox_for_the_photos_diagnosis(tmp_path: Path) -> None:
    runner = CliRunner()
    taken = runner.invoke(main, ["phone", "take", str(sample_photo("cmd")), "--outbox", str(tmp_path)])
    assert taken.exit_code == 0, taken.output
    key = taken.output.split()[0]
    said = runner.invoke(main, ["phone", "feedback", key, "cbsd", "--outbox", str(tmp_path)])
    assert said.exit_code == 0, said.output
    box = Outbox(tmp_path)
    [item] = box.feedback()
    box.close()
    assert (item.key, item.photo, item.label, item.source, item.state) == (said.output.strip(), key, "cbsd",
                                                                            "farmer", "waiting")  # fmt: skip
    listed = runner.invoke(main, ["phone", "list", "--outbox", str(tmp_path)])
    assert f"feedback on {key}: cbsd (farmer)  waiting" in listed.output
    unknown = runner.invoke(main, ["phone", "feedback", "no-such-photo", "cmd", "--outbox", str(tmp_path)])
    assert unknown.exit_code == 2
    assert "no photo no-such-photo in this outbox" in unknown.output
