"""The phone graph: one network of the served pair, one view, int8, with a leaf gate of its own. The shipped one is
the baseline's and answers as the served model does on most sample photos; one made here (as `mhogo api` makes it
for a new champion) comes out of the same steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.config import settings
from core.serving import calibration_pixels, is_shipped, prebuilt_path
from ml.checkpoint import load_checkpoint
from ml.data import negatives_beside, scan
from ml.ensemble import Ensemble
from ml.files import file_sha256
from ml.gatefit import GateConfig
from ml.imaging import MAX_LOCAL_PIXELS
from ml.phone_build import PhoneBuild
from ml.phone_graph import GatePhotos, export_phone, phone_checkpoint
from tests.utils.factories import SAMPLES

SHIPPED = prebuilt_path(settings.model_path, "phone")


def answer(build: PhoneBuild, path: Path) -> str:
    finding = build.examine(path.read_bytes())
    return finding.label if finding.label is not None else "rejected"


def test_the_shipped_phone_graph_is_the_baseline_s_small_and_mostly_the_server_s_answer() -> None:
    assert is_shipped(SHIPPED, file_sha256(settings.model_path))  # copied into place, never made again
    served = PhoneBuild(prebuilt_path(settings.model_path, "onnx-fp32"))
    phone = PhoneBuild(SHIPPED)
    assert phone.version == f"{served.version}-phone"
    assert phone.precision == "int8"
    assert phone.leaf_threshold is not None
    assert SHIPPED.stat().st_size < 0.2 * prebuilt_path(settings.model_path, "onnx-fp32").stat().st_size
    photos = [*(p.path for p in scan(SAMPLES / "cassava", served.classes)), *sorted((SAMPLES / "negatives").iterdir())]
    same = [answer(phone, path) == answer(served, path) for path in photos]
    # Its gate was fitted on ../shared/data, which holds these photos: bench/phone_graph.py measures agreement on
    # photos it was not fitted on (0.874 when it was made).
    assert sum(same) / len(same) >= 0.9


def test_a_phone_graph_is_one_network_one_view_and_a_gate_of_its_own(tmp_path: Path) -> None:
    champion = load_checkpoint(settings.model_path)
    assert isinstance(champion.model, Ensemble)
    photos = tmp_path / "photos"  # two photos a class and four others: the steps, not the figures
    for label in champion.classes:
        (photos / label).mkdir(parents=True)
        for path in sorted((SAMPLES / "cassava" / label).iterdir())[:2]:
            shutil.copy(path, photos / label)
    (photos / "negatives").mkdir()
    for path in sorted((SAMPLES / "negatives").iterdir())[:4]:
        shutil.copy(path, photos / "negatives")
    gate_photos = GatePhotos(scan(photos, champion.classes), negatives_beside(photos))
    quick = GateConfig(augmented_views=1, inner_folds=2)

    phone = phone_checkpoint(champion, gate_photos, quick)
    assert phone.model is champion.model.nets()[0]
    assert (phone.tta_views, phone.version) == (1, f"{champion.version}-phone")
    assert phone.leaf_gate is not None
    assert phone.leaf_gate.mean.shape[0] == champion.model.nets()[0].config.head_channels  # its own embedding
    assert phone_checkpoint(champion, GatePhotos(gate_photos.leaves, [])).leaf_gate is None  # nothing to fit on

    pixels = calibration_pixels(photos, champion, MAX_LOCAL_PIXELS)
    built = export_phone(champion, gate_photos, tmp_path / "build", settings.quality_thresholds, pixels, "abc", quick)
    spec = json.loads(built.path.with_suffix(".json").read_text())
    assert (spec["precision"], spec["checkpoint_sha256"], spec["sha256"]) == ("int8", "abc", built.sha256)
    build = PhoneBuild(built.path)
    leaf = sorted((SAMPLES / "cassava" / "cmd").iterdir())[0]
    assert build.examine(leaf.read_bytes()).model_version == phone.version
