"""The phone's own graph: small and fast enough for a low-end phone, for the farmer's app's provisional answer.

The served model is a pair of networks with four test-time views (36 MB in fp32, 10.5 MB in int8, about a second a
photo in a phone's browser). The phone graph keeps one network of the pair and one view, quantised to int8: a
third of the download and an eighth of the work. Its answer is provisional (the server's replaces it), so it only
has to agree with the served model on most photos; bench/phone_graph.py measures how often it does.

The served leaf gate reads the pair's joined embedding, so one network needs a gate of its own: fitted here as the
served one was (ml/gatefit.py), on cassava photos of every class and photos of other things, the network's own
embedding of each. The preprocessing, the quality gate and the graph's input and outputs are those of every build
(ml/export.py), so the app runs the phone graph and the server's builds alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.augment import AugmentConfig
from ml.checkpoint import Checkpoint
from ml.data import Sample
from ml.ensemble import Ensemble
from ml.export import Exported, export_int8, export_onnx
from ml.gatefit import GateConfig, attach_gate
from ml.quality import QualityThresholds

PHONE_MEMBER = 0  # the pair's first network (Lite1): the smaller of the two


def phone_version(version: str) -> str:
    """The phone graph of a champion names it: its answers say which champion they stand in for."""
    return f"{version}-phone"


@dataclass(frozen=True)
class GatePhotos:
    """What the phone graph's leaf gate is fitted on: cassava leaves (class folders) and photos of other things."""

    leaves: Sequence[Sample]
    others: Sequence[Sample]


def phone_checkpoint(
    champion: Checkpoint, photos: GatePhotos, gate: GateConfig | None = None, augment: AugmentConfig | None = None
) -> Checkpoint:
    """One network of the champion (its first member, or the champion itself when it is one network), served with
    one view, with a leaf gate fitted for it when there are photos of other things to fit it on (else none: the
    phone then answers for every photo the quality gate lets through, and the server's answer turns others away)."""
    model = champion.model.nets()[PHONE_MEMBER] if isinstance(champion.model, Ensemble) else champion.model
    phone = Checkpoint(
        model=model.eval(),
        classes=champion.classes,
        preprocess=champion.preprocess,
        version=phone_version(champion.version),
        meta={"phone_of": champion.version, "member": PHONE_MEMBER},
        tta_views=1,
    )
    if photos.leaves and photos.others:
        attach_gate(phone, photos.leaves, photos.others, gate or GateConfig(), augment or AugmentConfig())
    return phone


def export_phone(
    champion: Checkpoint,
    photos: GatePhotos,
    folder: Path,
    limits: QualityThresholds,
    calibration: Sequence[np.ndarray],
    checkpoint_sha256: str | None = None,
    gate: GateConfig | None = None,
) -> Exported:
    """The champion's phone graph, int8, in `folder` (phone.onnx and its .json); the fp32 graph it was quantised from
    is left beside it (phone.fp32.onnx)."""
    phone = phone_checkpoint(champion, photos, gate)
    fp32 = export_onnx(phone, folder / "phone.fp32.onnx", limits, checkpoint_sha256)
    return export_int8(phone, fp32.path, folder / "phone.onnx", calibration, limits, checkpoint_sha256)
