"""Device credentials: a phone authenticates with a bearer token, which it gets once from the operator (`mhogo devices
add NAME`) or by opening a one-time pairing link (`--link`: the farmer's app). Only sha256 hashes of tokens and codes
are stored. A revoked device keeps the hash of the token it had, so its phone is told it was revoked."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, exists, update
from sqlalchemy.orm import configure_mappers
from sqlmodel import Session, select

from schemas.errors import DeviceRevoked, PairingCodeSpent, PairingCodeUnknown
from schemas.tables import Device, DeviceRevocation, PairingCode, utcnow

DEVICES = Device.__table__  # type: ignore[attr-defined]
REVOCATIONS = DeviceRevocation.__table__  # type: ignore[attr-defined]
CODES = PairingCode.__table__  # type: ignore[attr-defined]
DEVICE_BY_TOKEN_HASH = select(DEVICES).where(DEVICES.c.token_hash == bindparam("token_hash"))
REVOKED_TOKEN_HASH = select(REVOCATIONS.c.device_id).where(REVOCATIONS.c.token_hash == bindparam("token_hash"))
# A Device made with model_construct (below) reads its attributes through the ORM's instrumentation, which exists only
# once the mappers are configured: before any ORM query has run, the API's first request would find it missing.
configure_mappers()


def hash_token(token: str) -> str:
    # Tokens are 256 random bits (pairing codes 144), so a plain hash is as good as a slow one and keeps each
    # request cheap.
    return hashlib.sha256(token.encode()).hexdigest()


def add_device(session: Session, name: str) -> tuple[Device, str]:
    """Register a device and return it with its token; the token is shown this once and never stored."""
    token = secrets.token_urlsafe(32)
    device = Device(name=name, token_hash=hash_token(token))
    session.add(device)
    session.commit()
    session.refresh(device)
    return device, token


def device_for_token(session: Session, token: str) -> Device | None:
    """Every request asks this, so it is a Core query (a quarter of the ORM's CPU); the device is detached."""
    row = session.connection().execute(DEVICE_BY_TOKEN_HASH, {"token_hash": hash_token(token)}).first()
    return Device.model_construct(**row._mapping) if row is not None else None


def token_revoked(session: Session, token: str) -> bool:
    """Whether `token` is one a revocation took away (asked only of tokens that open nothing)."""
    return session.connection().execute(REVOKED_TOKEN_HASH, {"token_hash": hash_token(token)}).first() is not None


def list_devices(session: Session) -> list[Device]:
    return list(session.exec(select(Device).order_by(Device.id)).all())  # type: ignore[arg-type]


def revoke_device(session: Session, device_id: int, revoked_by: str, reason: str | None = None) -> Device:
    """Its token stops working at once, on every API process (each request looks the hash up), and its pairing links
    that were not used yet never will. Its jobs stay."""
    _void_codes(session, device_id, utcnow())  # first, as a redemption does: neither waits on the other's next lock
    # Locked (PostgreSQL), so that a pairing being redeemed meanwhile has committed its new token before it is read.
    device = session.exec(select(Device).where(Device.id == device_id).with_for_update()).first()
    if device is None:
        session.rollback()
        raise LookupError(f"no device {device_id}")
    if session.get(DeviceRevocation, device_id) is None:
        session.add(DeviceRevocation(device_id=device_id, revoked_by=revoked_by, reason=reason,
                                     token_hash=device.token_hash))  # fmt: skip
    device.token_hash = hash_token(secrets.token_urlsafe(32))  # a hash no token that was ever given out has
    session.add(device)
    session.commit()
    return device


def revoked(session: Session) -> dict[int, DeviceRevocation]:
    return {row.device_id: row for row in session.exec(select(DeviceRevocation)).all()}


@dataclass(frozen=True)
class Pairing:
    code: str  # shown once, in the link; only its hash is stored
    expires_at: datetime


def new_pairing(session: Session, device_id: int, valid_for_s: float) -> Pairing:
    """A one-time pairing code for the device, valid for `valid_for_s`. The device's earlier codes that were not used
    stop working: one link at a time is out (the one the farmer was given last)."""
    if session.get(Device, device_id) is None:
        raise LookupError(f"no device {device_id}")
    if session.get(DeviceRevocation, device_id) is not None:
        raise DeviceRevoked(f"device {device_id} was revoked: register a new device for this phone instead")
    now = utcnow()
    _void_codes(session, device_id, now)
    code = secrets.token_urlsafe(18)  # 144 random bits, 24 characters: a short link, a small QR code
    expires_at = now + timedelta(seconds=valid_for_s)
    session.add(PairingCode(device_id=device_id, code_hash=hash_token(code), created_at=now, expires_at=expires_at))
    session.commit()
    return Pairing(code, expires_at)


def redeem_pairing(session: Session, code: str) -> tuple[Device, str]:
    """Pair a phone: the code's device with a new token (returned, shown this once), and the code used. One
    conditional UPDATE claims the code, in the same transaction as the new token: of two redemptions at once exactly
    one wins; the other finds the code used. The phone that held the device's token before loses it."""
    now = utcnow()
    code_hash = hash_token(code)
    revoked = exists().where(REVOCATIONS.c.device_id == CODES.c.device_id)
    live = (CODES.c.used_at.is_(None), CODES.c.expires_at > now, ~revoked)
    claim = update(CODES).where(CODES.c.code_hash == code_hash, *live).values(used_at=now).returning(CODES.c.device_id)
    connection = session.connection()
    device_id = connection.execute(claim).scalar()
    if device_id is None:
        session.rollback()
        known = session.connection().execute(select(CODES.c.id).where(CODES.c.code_hash == code_hash)).first()
        session.rollback()
        if known is None:
            raise PairingCodeUnknown("no such pairing code")
        raise PairingCodeSpent("the pairing code was used already, is past its time, or its device was revoked")
    token = secrets.token_urlsafe(32)
    connection.execute(update(DEVICES).where(DEVICES.c.id == device_id).values(token_hash=hash_token(token)))
    row = connection.execute(select(DEVICES).where(DEVICES.c.id == device_id)).one()
    session.commit()
    return Device.model_construct(**row._mapping), token


def _void_codes(session: Session, device_id: int, now: datetime) -> None:
    """The device's codes not used yet end now (not committed: the caller's transaction does)."""
    session.connection().execute(
        update(CODES)
        .where(CODES.c.device_id == device_id, CODES.c.used_at.is_(None), CODES.c.expires_at > now)
        .values(expires_at=now)
    )
