"""Every error mhogo raises on purpose, in one hierarchy. Retry only on the transient branch.

MhogoError
├── TransientError            the broker or database is briefly away: retry with backoff
│   └── BrokerUnavailable     a message could not be published
├── BadInput                  the request or photo is wrong: never retried, told to the sender
│   ├── UploadTooLarge        HTTP 413
│   ├── UnsupportedMediaType  HTTP 415: not a JPEG or PNG
│   └── UnreadableImage       HTTP 422: truncated, corrupt, or a decompression bomb
├── IdempotencyConflict       HTTP 422: a key reused for other bytes
├── RegistryError             an operator asked the registry for something it cannot do
└── ModelError                the model file is missing or does not fit the code: an operator must act
"""

from __future__ import annotations


class MhogoError(Exception):
    """Base of every error mhogo raises on purpose."""


class TransientError(MhogoError):
    """Something outside mhogo is briefly unavailable; the same call may succeed later."""


class BrokerUnavailable(TransientError):
    """The message broker did not take a message."""


class BadInput(MhogoError):
    """The sender's input is wrong. The message says what to do about it."""


class UploadTooLarge(BadInput):
    pass


class UnsupportedMediaType(BadInput):
    pass


class UnreadableImage(BadInput):
    pass


class IdempotencyConflict(MhogoError):
    pass


class RegistryError(MhogoError):
    pass


class ModelError(MhogoError):
    pass
