"""Device tokens: a phone authenticates with a bearer token; only the token's sha256 is stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import bindparam
from sqlalchemy.orm import configure_mappers
from sqlmodel import Session, select

from schemas.tables import Device, DeviceRevocation

DEVICES = Device.__table__  # type: ignore[attr-defined]
DEVICE_BY_TOKEN_HASH = select(DEVICES).where(DEVICES.c.token_hash == bindparam("token_hash"))
# A Device made with model_construct (below) reads its attributes through the ORM's instrumentation, which exists only
# once the mappers are configured: before any ORM query has run, the API's first request would find it missing.
configure_mappers()


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain hash is as good as a slow one and keeps each request cheap.
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


def list_devices(session: Session) -> list[Device]:
    return list(session.exec(select(Device).order_by(Device.id)).all())  # type: ignore[arg-type]


def revoke_device(session: Session, device_id: int, revoked_by: str, reason: str | None = None) -> Device:
    """Its token stops working at once, on every API process (each request looks the hash up). Its jobs stay."""
    device = session.get(Device, device_id)
    if device is None:
        raise LookupError(f"no device {device_id}")
    device.token_hash = hash_token(secrets.token_urlsafe(32))  # a hash no token that was ever given out has
    session.add(device)
    if session.get(DeviceRevocation, device_id) is None:
        session.add(DeviceRevocation(device_id=device_id, revoked_by=revoked_by, reason=reason))
    session.commit()
    return device


def revoked(session: Session) -> dict[int, DeviceRevocation]:
    return {row.device_id: row for row in session.exec(select(DeviceRevocation)).all()}
