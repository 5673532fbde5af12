"""Keep secrets out of logs and terminal output: passwords in URLs, bearer and basic credentials, `password=` pairs,
and the configured secrets themselves wherever they appear (a password echoed in an error message, say)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

from core.config import Settings

MASK = "***"
PATTERNS = [
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@\"']*:)[^@\s\"']+@", re.IGNORECASE), rf"\g<1>{MASK}@"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\g<1> {MASK}"),
    (re.compile(r"\b(password|passwd|pwd|secret|token|basic_auth)(['\"]?\s*[=:]\s*['\"]?)[^&\s\"',]+", re.IGNORECASE),
     rf"\g<1>\g<2>{MASK}"),
]  # fmt: skip
MIN_SECRET_LENGTH = 4  # shorter literals would mask ordinary words


def url_password(url: str | None) -> str | None:
    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        return None
    return unquote(password) if password else None


def secrets_of(settings: Settings) -> set[str]:
    """The literal secrets this configuration holds, as written and as they appear URL-encoded."""
    found = {url_password(settings.REDIS_URL), url_password(settings.DATABASE_URL)}
    for secret in (settings.FLOWER_PASSWORD, settings.METRICS_TOKEN):
        if secret is not None:
            found.add(secret.get_secret_value())
    values = {value for value in found if value and len(value) >= MIN_SECRET_LENGTH}
    return values | {quote(value, safe="") for value in values}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: a secret may contain another
        text = text.replace(secret, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text
