"""Every error mhogo raises on purpose, in one hierarchy. Retry only on the transient branch.

MhogoError
├── TransientError              the broker or database is briefly away: retry with backoff
│   ├── BrokerUnavailable       a message could not be published
│   └── StorageFull             HTTP 507: the disk under the blob store (or the database) is full: nothing was kept
├── BadInput                    the request or photo is wrong: never retried, told to the sender (HTTP 400)
│   ├── MissingIdempotencyKey   no Idempotency-Key, or not one of 1 to 255 visible ASCII characters
│   ├── UploadTooLarge          HTTP 413
│   ├── UnsupportedMediaType    HTTP 415: not a JPEG or PNG
│   ├── UnreadableImage         HTTP 422: truncated, corrupt, or a decompression bomb
│   └── AccountRefused          a person's account cannot be made or changed so (name taken, password too short)
├── IdempotencyConflict         HTTP 422: a key reused for other bytes
├── OffsetConflict              HTTP 409: a resumable upload is not where the request says it stands
├── PairingRefused              a pairing code that pairs nothing
│   ├── PairingCodeUnknown      HTTP 404: no such code was ever given out
│   └── PairingCodeSpent        HTTP 410: used already, expired, or its device was revoked
├── LoginRefused                a login that does not open: wrong name or password, or locked for a while
├── ReviewRefused               HTTP 409: a review answer that cannot be taken (labelled already, item done)
├── DeviceRevoked               the device was revoked: it gets no new pairing link (register a new device)
├── DatabaseNotReady            the database's schema is not this code's: upgrade it (or the code) first
├── DeploymentMismatch          a process would work in another deployment's namespace than its database's (or in
│                               none): it does not start
├── RegistryError               an operator asked the registry for something it cannot do
└── ModelError                  the model file is missing or does not fit the code: an operator must act
"""

from __future__ import annotations


class MhogoError(Exception):
    """Base of every error mhogo raises on purpose."""


class TransientError(MhogoError):
    """Something outside mhogo is briefly unavailable; the same call may succeed later."""


class BrokerUnavailable(TransientError):
    """The message broker did not take a message."""


class StorageFull(TransientError):
    """No room left where photos or uploads are written (ENOSPC, EDQUOT): this upload was not kept; the sender keeps
    it and sends it again later, while an operator frees space. Answered 507 with Retry-After."""


class BadInput(MhogoError):
    """The sender's input is wrong. The message says what to do about it."""


class MissingIdempotencyKey(BadInput):
    pass


class UploadTooLarge(BadInput):
    pass


class UnsupportedMediaType(BadInput):
    pass


class UnreadableImage(BadInput):
    pass


class IdempotencyConflict(MhogoError):
    pass


class OffsetConflict(MhogoError):
    """The request's Upload-Offset is not where the upload stands (another request moved it, or the client is
    behind); the client must ask (HEAD) and resume from there."""


class PairingRefused(MhogoError):
    """A pairing code that pairs nothing. The phone is told the same either way (a new link is needed)."""


class PairingCodeUnknown(PairingRefused):
    pass


class PairingCodeSpent(PairingRefused):
    """Used once already, past its time, or its device was revoked."""


class DeviceRevoked(MhogoError):
    pass


class DatabaseNotReady(MhogoError):
    """The database is behind this code (`mhogo db upgrade`) or ahead of it (a newer release made it)."""


class DeploymentMismatch(MhogoError):
    """MHOGO_DEPLOYMENT, or the deployment a process's Celery app was bound to, is not its database's: its tasks
    and keys would be another deployment's. Or the app is bound to no deployment at all."""


class RegistryError(MhogoError):
    pass


class ModelError(MhogoError):
    pass


class AccountRefused(BadInput):
    """`mhogo users add` or a change to an account that cannot be made; the message says why."""


class LoginRefused(MhogoError):
    """A login that does not open. `retry_after_s` is set while the login is locked after repeated failures."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReviewRefused(MhogoError):
    """A review answer that cannot be taken: this agronomist labelled the item already, or it is done."""
