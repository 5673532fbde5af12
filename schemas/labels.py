"""The five things the classifier can say about a cassava leaf, with the farmer-facing name and advice (the words
are the catalogue's: schemas/catalogue/)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.catalogue import text


class Label(StrEnum):
    """Class codes, in the order of the Kaggle 2020 label map (ids 0..4), which is also the model's output order."""

    CBB = "cbb"
    CBSD = "cbsd"
    CGM = "cgm"
    CMD = "cmd"
    HEALTHY = "healthy"

    @property
    def id(self) -> int:
        return LABELS.index(self)

    @property
    def info(self) -> LabelInfo:
        return LABEL_INFO[self]


@dataclass(frozen=True)
class LabelInfo:
    name: str
    advice: str


LABELS: tuple[Label, ...] = tuple(Label)

# In English, from the catalogue the farmer's app reads in every language (schemas/catalogue/).
LABEL_INFO: dict[Label, LabelInfo] = {
    label: LabelInfo(text(f"label.{label.value}.name"), text(f"label.{label.value}.advice")) for label in Label
}
