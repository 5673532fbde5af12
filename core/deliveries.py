"""Counting how often a message was delivered, to stop a poison message from looping forever.

With late acknowledgement a message whose task kills its worker process (out of memory, a crash in native code)
comes back again and again. Counting deliveries per task id in Redis lets the next delivery past the limit give
the job up as failed instead.
"""

from __future__ import annotations

from redis import Redis

KEY_TTL_S = 24 * 3600


class DeliveryCounter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        """`prefix`: the deployment's (core.namespace `Namespace.deliveries`): task ids are unique, but a count kept
        beside another deployment's would be deleted with it."""
        self.redis = redis
        self.prefix = prefix

    def record(self, task_id: str) -> int:
        """Count one more delivery of `task_id` and return the count so far (1 on the first delivery)."""
        key = f"{self.prefix}:{task_id}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, KEY_TTL_S)
        count, _ = pipe.execute()
        return int(count)
