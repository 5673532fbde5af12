"""The farmer's app pairs with its device: the one-time code of a pairing link (`mhogo devices add NAME --link`,
`mhogo devices link ID`) is traded for the device's bearer token, once."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response, status

from core.devices import redeem_pairing
from producers.api.deps import ServicesDep, SessionDep, client_address, too_many
from schemas.api import Paired, PairingIn, Problem
from schemas.catalogue import text
from schemas.errors import PairingCodeUnknown, PairingRefused

log = logging.getLogger(__name__)
router = APIRouter()

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": Problem} for code in (404, 410, 413, 422, 429, 503)}


@router.post(
    "/v1/pairings",
    status_code=status.HTTP_201_CREATED,
    response_model=Paired,
    responses=ERRORS,
    summary="Pair the farmer's app with its device: a pairing link's code for the device's token, once",
)
def pair(body: PairingIn, request: Request, services: ServicesDep, session: SessionDep, response: Response) -> Paired:
    """No token needed: the code is the credential. 404 for a code never given out, 410 for one used already, past
    its time (MHOGO_PAIRING_EXPIRE_S) or whose device was revoked; both count, like bad tokens, against the client
    address's MHOGO_AUTH_FAILURE_RATE_LIMIT (429 past it)."""
    try:
        device, token = redeem_pairing(session, body.code)
    except PairingRefused as exc:
        limiter = services.limiter
        wait = limiter.client_wait_s(client_address(request), "auth-failure") if limiter is not None else None
        if wait is not None:
            raise too_many(wait, "Too many pairing codes that pair nothing. Wait before sending again.") from exc
        gone = not isinstance(exc, PairingCodeUnknown)
        raise HTTPException(status.HTTP_410_GONE if gone else status.HTTP_404_NOT_FOUND, text("app.pair.used")) from exc
    assert device.id is not None
    log.info("device %s '%s' paired with a phone", device.id, device.name)
    response.headers["Cache-Control"] = "no-store"  # the answer holds a credential
    return Paired(token=token, device_id=device.id, device_name=device.name)
