"""The five things the classifier can say about a cassava leaf, with the farmer-facing name and advice."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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

LABEL_INFO: dict[Label, LabelInfo] = {
    Label.CBB: LabelInfo(
        "Cassava Bacterial Blight",
        "Remove and burn the affected leaves and stems. Plant clean cuttings from healthy plants, and do not "
        "move cuttings from this field. Clean your knife between plants.",
    ),
    Label.CBSD: LabelInfo(
        "Cassava Brown Streak Disease",
        "Check the roots: brown streaks mean the tubers will rot, so harvest early. Uproot badly affected plants "
        "and replant with clean cuttings of a tolerant variety. Control whiteflies.",
    ),
    Label.CGM: LabelInfo(
        "Cassava Green Mottle",
        "Usually mild. Watch the plant; if new leaves stay mottled and small, uproot it. Use clean cuttings next "
        "season.",
    ),
    Label.CMD: LabelInfo(
        "Cassava Mosaic Disease",
        "Uproot and destroy the affected plants early, before whiteflies spread it. Replant with cuttings of a "
        "resistant variety from a clean source.",
    ),
    Label.HEALTHY: LabelInfo(
        "Healthy",
        "No disease seen on this leaf. Keep checking your plants every two weeks, and photograph any leaf with "
        "spots, yellow patches or twisting.",
    ),
}
