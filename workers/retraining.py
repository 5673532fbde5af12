"""Task of the retraining queue: train a challenger from the base data and register it. Promotion is decided
elsewhere (an operator, or the loop of issue 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import registry
from core.config import settings
from schemas.queues import TaskName
from schemas.tables import ModelAliasName
from workers.app import app
from workers.base import MhogoTask


@app.task(
    name=TaskName.RETRAIN,
    bind=True,
    base=MhogoTask,
    soft_time_limit=settings.RETRAIN_TIME_LIMIT_S - 60,
    time_limit=settings.RETRAIN_TIME_LIMIT_S,
)
def retrain(self: MhogoTask, reason: str, data_dir: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    from ml.train import TrainConfig, train

    source = Path(data_dir) if data_dir else settings.TRAIN_DATA_DIR
    if source is None:
        raise ValueError("no training data: set MHOGO_TRAIN_DATA_DIR or pass data_dir")
    out = settings.model_dir / f"challenger-{self.request.id}.pt"
    config = TrainConfig(dry_run=dry_run, threads=settings.torch_threads)
    made_by = f"retraining: {reason}"
    result = train(source, out, config, settings.quality_thresholds, made_by=made_by)
    with self.session() as session:
        champion = registry.ensure_champion(session, self.blobs, settings.model_path)
        row = registry.register(session, self.blobs, out, made_by=made_by, parent=champion.version)
        registry.set_alias(session, ModelAliasName.CHALLENGER, row.version, made_by, "trained")
    return {"version": row.version, "sha256": result.sha256, "parent": champion.version}
