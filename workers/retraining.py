"""Task of the retraining queue: carry a fired run (core.triggers) through dataset, training, evaluation and the
promotion decision (core.retraining). One at a time: the queue's worker runs with concurrency 1."""

from __future__ import annotations

from typing import Any

from core import triggers
from core.config import settings
from core.retraining import run_retraining
from schemas.queues import TaskName
from schemas.tables import RetrainRun, RetrainStatus
from workers.app import app
from workers.base import MhogoTask


class RetrainTask(MhogoTask):
    def on_failure(
        self, exc: Exception, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """A run that failed is closed with the error, so the next rule can fire after the cooldown."""
        with self.session() as session:
            run = session.get(RetrainRun, args[0]) if args else None
            if run is not None and RetrainStatus(run.status).open:
                triggers.finish_run(session, run, RetrainStatus.FAILED, f"{type(exc).__name__}: {exc}")


@app.task(
    name=TaskName.RETRAIN,
    bind=True,
    base=RetrainTask,
    soft_time_limit=settings.RETRAIN_TIME_LIMIT_S - 60,
    time_limit=settings.RETRAIN_TIME_LIMIT_S,
)
def retrain(self: RetrainTask, run_id: int) -> dict[str, Any]:
    with self.session() as session:
        if session.get(RetrainRun, run_id) is None:  # a run this database never fired: refused, not failed
            self.refuse(f"retraining run {run_id}", self.delivered())
        threads = settings.RETRAIN_TORCH_THREADS or settings.torch_threads
        run = run_retraining(session, self.blobs, settings, run_id, threads, settings.model_path)
        return {"run": run.id, "status": str(run.status), "challenger": run.challenger_version,
                "decision": run.decision}  # fmt: skip
