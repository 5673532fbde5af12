from sqlmodel import Session, select

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
