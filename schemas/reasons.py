"""Why a photo was turned away, as a stable code and a message a farmer can act on."""

from __future__ import annotations

from enum import StrEnum

from schemas.catalogue import text


class RejectReason(StrEnum):
    UNREADABLE = "unreadable"
    TOO_SMALL = "too_small"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    BLURRY = "blurry"
    LEAF_TOO_SMALL = "leaf_too_small"
    NOT_CASSAVA_LEAF = "not_cassava_leaf"

    @property
    def message(self) -> str:
        return REJECT_MESSAGES[self]


# In English, from the catalogue the farmer's app reads in every language (schemas/catalogue/).
REJECT_MESSAGES: dict[RejectReason, str] = {reason: text(f"reason.{reason.value}") for reason in RejectReason}
