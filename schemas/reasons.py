"""Why a photo was turned away, as a stable code and a message a farmer can act on."""

from __future__ import annotations

from enum import StrEnum


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


REJECT_MESSAGES: dict[RejectReason, str] = {
    RejectReason.UNREADABLE: "The photo could not be opened. Take it again with the phone's camera app.",
    RejectReason.TOO_SMALL: "The photo is too small to see the leaf. Take it again at the camera's normal size.",
    RejectReason.TOO_DARK: "The photo is too dark. Take it in daylight, with the sun behind you.",
    RejectReason.TOO_BRIGHT: "The photo is too bright and washed out. Stand so that your shadow covers the leaf.",
    RejectReason.BLURRY: "The photo is blurry. Hold the phone still, tap the leaf on the screen to focus, "
    "then take the photo.",
    RejectReason.LEAF_TOO_SMALL: "The leaf is too small in the photo. Come closer, so that one leaf fills the photo.",
    RejectReason.NOT_CASSAVA_LEAF: "This does not look like a cassava leaf. Take a photo of one cassava leaf, "
    "close up.",
}
