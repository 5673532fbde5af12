"""PostgreSQL unreachable for 20 seconds in the middle of a run: uploads get 503 with Retry-After (nothing is
accepted that cannot be made durable), the tasks in flight retry and finish, and everything works again on its own.
The stack reaches PostgreSQL through a proxy that this test takes away and puts back on the same port."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import Job
from tests.integration.conftest import live_stack
from tests.utils.factories import all_samples
from tests.utils.faultproxy import FaultProxy
from tests.utils.postgres import postgres_database
from tests.utils.processes import free_port, wait_for

pytestmark = pytest.mark.integration
OUTAGE_S = 20


def test_postgres_away_for_20_seconds(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    photos = all_samples()[:11]
    with postgres_database() as direct:
        proxied = direct.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
        assert proxied != direct
        proxy = FaultProxy(5432, port=port).__enter__()
        with live_stack(tmp_path, proxied, redis_url) as stack, stack.client(stack.new_token()) as client:
            ids = []
            for path in photos[:10]:
                headers = {"Content-Type": "image/jpeg", "Idempotency-Key": uuid.uuid4().hex}
                ids.append(client.post("/v1/photos", content=path.read_bytes(), headers=headers).json()["job_id"])
            proxy.__exit__(None, None, None)  # PostgreSQL unreachable, with photos in flight
            went_away = time.monotonic()
            headers = {"Content-Type": "image/jpeg", "Idempotency-Key": "during-the-outage"}
            refused = client.post("/v1/photos", content=photos[10].read_bytes(), headers=headers)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "10"
            assert "send it again" in refused.json()["detail"]
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - went_away)))
            proxy = FaultProxy(5432, port=port).__enter__()  # back, on the same address
            try:
                again = client.post("/v1/photos", content=photos[10].read_bytes(), headers=headers)
                assert again.status_code == 202  # the phone's retry goes through, once
                ids.append(again.json()["job_id"])

                def statuses() -> list[str]:
                    with Session(stack.engine) as session:
                        return [str(j.status) for j in session.exec(select(Job).where(col(Job.id).in_(ids))).all()]

                wait_for(lambda: all(s in TERMINAL_STATUSES for s in statuses()), 180,
                         "every photo to finish after the outage")  # fmt: skip
                assert len(statuses()) == 11
                assert "failed" not in statuses()  # the tasks retried through the outage
            finally:
                proxy.__exit__(None, None, None)
