import subprocess
import sys
from pathlib import Path

from sqlmodel import Session, select

from core.db import open_database
from core.devices import add_device, device_for_token, hash_token, list_devices
from schemas.tables import Device


def test_token_is_shown_once_and_only_its_hash_is_stored(session: Session) -> None:
    device, token = add_device(session, "phone")
    stored = session.exec(select(Device)).one()
    assert stored.token_hash == hash_token(token)
    assert token not in stored.token_hash
    assert len(token) >= 40
    assert device_for_token(session, token) == device
    assert device_for_token(session, token + "x") is None
    assert [d.name for d in list_devices(session)] == ["phone"]


def test_tokens_differ(session: Session) -> None:
    _, one = add_device(session, "a")
    _, two = add_device(session, "b")
    assert one != two


def test_a_token_is_checked_in_a_process_that_has_run_no_query_yet(tmp_path: Path) -> None:
    """The API's first request looks the device up before anything else has touched the ORM: the detached Device it
    builds must still read its fields (it raised AttributeError until the mappers were configured at import)."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with Session(open_database(url)) as session:
        device, token = add_device(session, "phone")
    code = ("import sys; from sqlmodel import Session; from core.db import get_engine; "
            "from core.devices import device_for_token; "
            "print(device_for_token(Session(get_engine(sys.argv[1])), sys.argv[2]).id)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, url, token], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(device.id)
