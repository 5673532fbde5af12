"""Task of the retraining queue: train a challenger from the base data. Promotion is decided elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import settings
from schemas.queues import TaskName
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
    result = train(source, out, config, settings.quality_thresholds, made_by=f"retraining: {reason}")
    return {"path": str(result.path), "sha256": result.sha256, "version": result.checkpoint.version}
