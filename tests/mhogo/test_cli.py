"""The `mhogo` command, run in-process with click's runner on the test MHOGO_HOME."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlmodel import Session

from core.config import settings
from core.db import get_engine
from core.devices import device_for_token, list_devices
from mhogo.cli import main, services
from tests.utils.factories import SAMPLES, sample_photo
from tests.utils.processes import free_port, start_mhogo, stop, wait_for


def test_devices_add_prints_the_token_as_its_last_line() -> None:
    result = CliRunner().invoke(main, ["devices", "add", "field-phone-7"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    with Session(get_engine(settings.database_url)) as session:
        device = device_for_token(session, token)
    assert device is not None
    assert device.name == "field-phone-7"
    listed = CliRunner().invoke(main, ["devices", "list"])
    assert "field-phone-7" in listed.output


def qr_of(text: str) -> str:
    import qrcode

    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)  # small: a short link
    code.add_data(text)
    code.make(fit=True)
    return "\n".join("".join("#" if dark else " " for dark in row) for row in code.get_matrix())


def drawn_qr(output: str) -> str:
    """The modules of a QR code drawn with half blocks (two rows of modules a line), as '#' for dark and ' ' for
    light: the drawing is inverted (light modules are the terminal's foreground; dark ones no-break spaces)."""
    halves = {"█": (False, False), "▀": (False, True), "▄": (True, False), "\xa0": (True, True)}
    lines = [line for line in output.splitlines() if line and set(line) <= set(halves)]
    rows: list[str] = []
    for line in lines:
        rows.append("".join("#" if halves[c][0] else " " for c in line))
        rows.append("".join("#" if halves[c][1] else " " for c in line))
    return "\n".join(rows[: len(lines[0])])  # a QR code is square; the last half row may be padding


def test_devices_add_link_prints_the_pairing_link_last_and_draws_it_as_a_qr_code() -> None:
    from core.devices import redeem_pairing

    result = CliRunner().invoke(main, ["devices", "add", "Amina", "--link"])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[-1]
    prefix = f"{settings.public_url}/app/#pair="
    assert link.startswith(prefix)
    code = link.removeprefix(prefix)
    assert len(code) >= 22
    assert set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe
    assert drawn_qr(result.stderr) == qr_of(link)  # the QR code says exactly the link
    assert code not in result.stderr  # the token is not shown either: the link is the one secret printed
    with Session(get_engine(settings.database_url)) as session:
        device, token = redeem_pairing(session, code)
        assert device.name == "Amina"
        assert device_for_token(session, token) is not None


def test_devices_link_gives_a_new_link_and_the_earlier_one_stops_working() -> None:
    from core.devices import redeem_pairing
    from schemas.errors import PairingCodeSpent

    first = CliRunner().invoke(main, ["devices", "add", "Baraka", "--link"]).stdout.strip().splitlines()[-1]
    with Session(get_engine(settings.database_url)) as session:
        device_id = max(device.id or 0 for device in list_devices(session))
    again = CliRunner().invoke(main, ["devices", "link", str(device_id)])
    assert again.exit_code == 0, again.output
    second = again.stdout.strip().splitlines()[-1]
    assert second != first
    assert drawn_qr(again.stderr) == qr_of(second)
    with Session(get_engine(settings.database_url)) as session:
        with pytest.raises(PairingCodeSpent):
            redeem_pairing(session, first.rsplit("#pair=", 1)[1])
        assert redeem_pairing(session, second.rsplit("#pair=", 1)[1])[0].id == device_id
    assert CliRunner().invoke(main, ["devices", "revoke", str(device_id)]).exit_code == 0
    refused = CliRunner().invoke(main, ["devices", "link", str(device_id)])
    assert refused.exit_code != 0
    assert "revoked" in refused.output
    assert CliRunner().invoke(main, ["devices", "link", "99999"]).exit_code != 0


def test_predict_json_prints_one_object_per_image() -> None:
    leaf, hand = sample_photo("cgm", 2), sample_photo("negatives", 6)
    result = CliRunner().invoke(main, ["predict", str(leaf), str(hand), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [row["path"] for row in rows] == [str(leaf), str(hand)]
    for row in rows:
        assert {"path", "status", "label", "confidence", "probabilities", "reason", "model_version"} <= set(row)
    assert rows[0]["status"] == "classified"
    assert rows[0]["label"] in rows[0]["probabilities"]
    assert (rows[1]["status"], rows[1]["reason"], rows[1]["label"]) == ("rejected", "too_small", None)


def test_train_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(main, ["train", str(sample_photo().parent.parent), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["path"] == str(out)
    assert out.is_file()
    assert summary["dataset_version"].startswith("ds-")


def test_flower_refuses_to_run_without_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "settings", settings.model_copy(update={"FLOWER_PASSWORD": None}))
    result = CliRunner().invoke(main, ["flower"])
    assert result.exit_code != 0
    assert "MHOGO_FLOWER_PASSWORD" in result.output


def test_api_with_several_worker_processes_logs_their_requests_as_json(tmp_path: Path) -> None:
    """uvicorn's `--workers` processes are fresh interpreters: each sets up mhogo's logging for itself."""
    env = dict(os.environ) | {"MHOGO_HOME": str(tmp_path), "MHOGO_API_PORT": str(free_port()), "MHOGO_LOG_JSON": "true",
                              "MHOGO_LOG_LEVEL": "INFO"}  # fmt: skip
    url = f"http://127.0.0.1:{env['MHOGO_API_PORT']}"
    api = start_mhogo(["api", "--workers", "2"], env, tmp_path / "api.log")
    try:
        wait_for(lambda: httpx.get(f"{url}/healthz").status_code == 200, 60, "the API")
        assert httpx.get(f"{url}/v1/jobs/nope").status_code == 401
    finally:
        stop(api)
    lines = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines()]
    requests = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert any("/v1/jobs/nope" in line["message"] and "401" in line["message"] for line in requests), requests
    assert {line["service"] for line in lines} == {"api"}


def test_what_mhogo_writes_under_its_home_is_its_user_s_alone(tmp_path: Path) -> None:
    """MHOGO_HOME was made with the login's umask (0755, files 0644): any user of the machine could read the farmers'
    photos and copy the database, device tokens' hashes included."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    env = dict(os.environ) | {"MHOGO_HOME": str(home)}
    for command in (["devices", "add", "phone"], ["models", "list"]):  # the database, then a model in the blob store
        done = subprocess.run([sys.executable, "-m", "mhogo", *command], env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    made = [home, *home.rglob("*")]
    assert any(path.suffix == ".pt" for path in made)  # the seed model, copied into the blob store
    loose = {str(path.relative_to(tmp_path)): oct(stat.S_IMODE(path.stat().st_mode)) for path in made
             if stat.S_IMODE(path.stat().st_mode) & 0o077}  # fmt: skip
    assert loose == {}


def test_flower_s_open_pages_are_swapped_for_ones_that_ask_for_the_login() -> None:
    from flower import urls
    from flower.views import monitor

    from mhogo.flower import Healthcheck, Metrics, lock_down

    handlers = list(urls.handlers)
    lock_down(handlers)
    served = {entry[0]: entry[1] for entry in handlers if isinstance(entry, tuple)}
    assert (served["/metrics"], served["/healthcheck"]) == (Metrics, Healthcheck)
    assert monitor.Metrics not in served.values()


def test_the_retraining_scenario_refuses_a_folder_too_small_at_once(tmp_path: Path) -> None:
    """On a folder of 40 photos it trained a champion for minutes, then failed with "no rule fired"."""
    data = tmp_path / "data"
    for folder in sorted(SAMPLES.glob("cassava/*")):  # three photos of each class: 15 cassava photos
        (data / "cassava" / folder.name).mkdir(parents=True)
        for source in sorted(folder.glob("*.jpg"))[:3]:
            (data / "cassava" / folder.name / source.name).symlink_to(source)
    (data / "negatives").mkdir()
    for source in sorted(SAMPLES.glob("negatives/*.jpg"))[:10]:
        (data / "negatives" / source.name).symlink_to(source)
    result = CliRunner().invoke(main, ["scenario", "retrain", "--data", str(data), "--home", str(tmp_path / "run"),
                                       "--quick"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "needs at least 10" in result.output
    assert "at least 25 cassava photos" in result.output
    assert not (tmp_path / "run" / "champion.pt").exists()  # refused before any training


def test_the_scenario_s_rules_fit_the_photos_it_has() -> None:
    from mhogo.scenario import Photo, rules_for

    def stream(cassava: int) -> list[Photo]:
        return [Photo(Path(f"{n}.jpg"), "cmd") for n in range(cassava)] + [Photo(Path("x.jpg"), None)] * 5

    assert rules_for(stream(60))["MHOGO_TRIGGER_ACCURACY_LAST_N"] == "20"
    assert rules_for(stream(18))["MHOGO_TRIGGER_ACCURACY_LAST_N"] == "10"
