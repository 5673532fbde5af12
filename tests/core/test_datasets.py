"""Dataset versions (core.datasets): the id is the manifest's hash; the same set is the same version; splits never
move and near-duplicates join their photo's side; the holdout grows only from agronomists' labels; diff; export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance
from sqlmodel import Session, select

from core.blobs import BlobStore
from core.config import Settings
from core.datasets import diff, export, manifest, snapshot, version_id
from core.labels import add_label, import_curated
from ml.data import declared_version, scan, scan_negatives
from schemas.errors import BadInput
from schemas.labels import LABELS
from schemas.tables import LabelSource, PhotoLabel, PhotoSplit
from tests.utils.factories import jpeg_bytes, make_person, sample_bytes

CLASSES = [label.value for label in LABELS]


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    return Settings(HOME=tmp_path, DATASET_HOLDOUT_SHARE=0.5, MAX_DEVICE_SHARE=1.0)


def agronomist_label(session: Session, blobs: BlobStore, data: bytes, label: str, user: int) -> str:
    key = blobs.put("photos", data, ".jpg")
    sha = key.split("/")[-1].removesuffix(".jpg")
    add_label(session, PhotoLabel(photo_sha256=sha, blob_key=key, label=label, source=LabelSource.AGRONOMIST,
                                  user_id=user))  # fmt: skip
    session.commit()
    return sha


def test_a_version_is_its_manifest_s_hash_and_the_same_set_is_the_same_version(
    session: Session, blobs: BlobStore, config: Settings, samples: Path
) -> None:
    import_curated(session, blobs, samples)
    first = snapshot(session, blobs, config, "test")
    rows = manifest(blobs, first)
    assert first.id == version_id(blobs.get(first.manifest_key))
    assert len(rows) == first.photos == len(list(samples.rglob("*.jpg")))
    assert {row["split"] for row in rows} == {"train"}  # curated photos never go to the holdout
    assert {row["source"] for row in rows} == {"curated"}
    assert snapshot(session, blobs, config, "again").id == first.id


def test_splits_never_move_near_duplicates_join_and_only_agronomists_grow_the_holdout(
    session: Session, blobs: BlobStore, config: Settings
) -> None:
    amina = make_person(session, "amina")[0].id or 0
    photos = [sample_bytes(kind, i) for kind in ("cmd", "cbsd") for i in range(6)]
    shas = [agronomist_label(session, blobs, data, "cmd", amina) for data in photos]
    first = snapshot(session, blobs, config, "test")
    sides = {row.photo_sha256: row.split for row in session.exec(select(PhotoSplit)).all()}
    assert set(sides.values()) == {"train", "holdout"}  # half the agronomists' photos, by hash
    holdout = next(sha for sha in shas if sides[sha] == "holdout")
    # A brighter copy of a held-out photo, labelled later: a near-duplicate, so it joins the holdout.
    image = Image.open(io.BytesIO(blobs.get(f"photos/{holdout[:2]}/{holdout}.jpg")))
    twin = agronomist_label(session, blobs, jpeg_bytes(ImageEnhance.Brightness(image).enhance(1.05)), "cmd", amina)
    relabel = next(sha for sha in shas if sides[sha] == "train")
    add_label(session, PhotoLabel(photo_sha256=relabel, blob_key=f"photos/{relabel[:2]}/{relabel}.jpg",
                                  label="cbsd", source=LabelSource.AGRONOMIST, user_id=amina))  # fmt: skip
    session.commit()
    second = snapshot(session, blobs, config, "test")
    after = {row.photo_sha256: row.split for row in session.exec(select(PhotoSplit)).all()}
    assert {sha: after[sha] for sha in sides} == sides  # nothing moved
    assert after[twin] == "holdout"
    assert second.parent == first.id
    assert diff(session, blobs, first.id, second.id) == {"cbsd": {"relabelled_to": 1},
                                                         "cmd": {"added": 1, "relabelled_from": 1}}  # fmt: skip


def test_export_writes_the_shared_data_layout_and_training_checks_it(
    session: Session, blobs: BlobStore, config: Settings, samples: Path, tmp_path: Path
) -> None:
    import_curated(session, blobs, samples)
    version = snapshot(session, blobs, config, "test")
    out = tmp_path / "export"
    assert export(session, blobs, version.id, out) == version.photos
    assert len(scan(out, CLASSES)) == len(list((samples / "cassava").rglob("*.jpg")))
    assert len(scan_negatives(out / "negatives")) == len(list((samples / "negatives").iterdir()))
    with (out / "MANIFEST.csv").open() as file:
        assert {row["dataset_version"] for row in csv.DictReader(file)} == {version.id}
    photos = scan(out, CLASSES) + scan_negatives(out / "negatives")
    assert declared_version(out, photos) == version.id
    photos[0].path.write_bytes(sample_bytes("cgm", 9))  # tampered with after the export
    with pytest.raises(BadInput, match="changed since the export"):
        declared_version(out, photos)
    with pytest.raises(BadInput, match="not empty"):
        export(session, blobs, version.id, out)
