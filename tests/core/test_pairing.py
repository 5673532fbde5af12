"""Pairing codes on SQLite and PostgreSQL: a code pairs one phone, once, before it expires and while its device is not
revoked; of redemptions at once exactly one wins; a revoked device's token is remembered as revoked."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from core.devices import (
    add_device,
    device_for_token,
    hash_token,
    new_pairing,
    redeem_pairing,
    revoke_device,
    token_revoked,
)
from schemas.errors import DeviceRevoked, PairingCodeSpent, PairingCodeUnknown, PairingRefused
from schemas.tables import Device, DeviceRevocation, PairingCode, utcnow

WEEK = 7 * 24 * 3600.0


def test_a_code_pairs_once_with_a_new_token(session: Session) -> None:
    device, old_token = add_device(session, "farmer")
    assert device.id is not None
    pairing = new_pairing(session, device.id, WEEK)
    assert len(pairing.code) >= 22  # 128 bits or more, URL-safe
    assert pairing.expires_at - utcnow() == pytest.approx(timedelta(seconds=WEEK), abs=timedelta(seconds=60))
    paired, token = redeem_pairing(session, pairing.code)
    assert (paired.id, paired.name) == (device.id, "farmer")
    found = device_for_token(session, token)
    assert found is not None
    assert found.id == device.id
    assert device_for_token(session, old_token) is None  # the phone paired before (if any) is out
    with pytest.raises(PairingCodeSpent):
        redeem_pairing(session, pairing.code)
    assert device_for_token(session, token) is not None  # the refused second try changed nothing


def test_only_the_codes_hash_is_stored(session: Session) -> None:
    device, _ = add_device(session, "farmer")
    assert device.id is not None
    code = new_pairing(session, device.id, WEEK).code
    row = session.exec(select(PairingCode)).one()
    assert row.code_hash == hash_token(code)
    assert code not in repr(row.model_dump())


def test_an_unknown_code_is_told_from_a_spent_one(session: Session) -> None:
    with pytest.raises(PairingCodeUnknown):
        redeem_pairing(session, "never-given-out")


def test_a_code_past_its_time_pairs_nothing(session: Session) -> None:
    device, _ = add_device(session, "farmer")
    assert device.id is not None
    code = new_pairing(session, device.id, WEEK).code
    session.exec(update(PairingCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    with pytest.raises(PairingCodeSpent):
        redeem_pairing(session, code)


def test_revoking_the_device_kills_its_codes_and_it_gets_no_new_one(session: Session) -> None:
    device, _ = add_device(session, "lost phone")
    assert device.id is not None
    code = new_pairing(session, device.id, WEEK).code
    revoke_device(session, device.id, "ops", "stolen")
    with pytest.raises(PairingCodeSpent):
        redeem_pairing(session, code)
    with pytest.raises(DeviceRevoked):
        new_pairing(session, device.id, WEEK)
    with pytest.raises(LookupError):
        new_pairing(session, 999, WEEK)


def test_a_code_of_a_revoked_device_pairs_nothing_even_if_it_was_not_voided(session: Session) -> None:
    """The redemption itself checks the revocation (a revocation committed between its two steps cannot be missed)."""
    device, _ = add_device(session, "lost phone")
    assert device.id is not None
    code = new_pairing(session, device.id, WEEK).code
    session.add(DeviceRevocation(device_id=device.id, revoked_by="ops"))  # the codes left as they were
    session.commit()
    with pytest.raises(PairingCodeSpent):
        redeem_pairing(session, code)


def test_a_new_link_voids_the_earlier_one(session: Session) -> None:
    device, _ = add_device(session, "farmer")
    assert device.id is not None
    first = new_pairing(session, device.id, WEEK).code
    second = new_pairing(session, device.id, WEEK).code
    with pytest.raises(PairingCodeSpent):
        redeem_pairing(session, first)
    assert redeem_pairing(session, second)[0].id == device.id


def test_of_redemptions_at_once_exactly_one_wins(engine: Engine) -> None:
    with Session(engine) as session:
        device, _ = add_device(session, "farmer")
        assert device.id is not None
        code = new_pairing(session, device.id, WEEK).code
    contenders = 6
    start = threading.Barrier(contenders)
    tokens: list[str] = []
    refused: list[PairingRefused] = []
    errors: list[BaseException] = []

    def redeem() -> None:
        with Session(engine, expire_on_commit=False) as own:
            start.wait(30)
            try:
                tokens.append(redeem_pairing(own, code)[1])
            except PairingRefused as exc:
                refused.append(exc)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=redeem) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(tokens) == 1
    assert [type(exc) for exc in refused] == [PairingCodeSpent] * (contenders - 1)
    with Session(engine) as session:
        assert session.exec(select(Device)).one().token_hash == hash_token(tokens[0])


def test_a_revoked_token_is_known_as_revoked(session: Session) -> None:
    device, token = add_device(session, "lost phone")
    _, other = add_device(session, "kept phone")
    assert device.id is not None
    assert not token_revoked(session, token)
    revoke_device(session, device.id, "ops")
    assert device_for_token(session, token) is None
    assert token_revoked(session, token)
    assert not token_revoked(session, other)
    assert not token_revoked(session, "never-given-out")
    revoke_device(session, device.id, "ops")  # twice: the first revocation and its token stand
    assert token_revoked(session, token)
