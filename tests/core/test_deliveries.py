"""Unit test of the Redis logic behind the poison-message guard, on fakeredis."""

import fakeredis

from core.deliveries import KEY_TTL_S, DeliveryCounter


def test_counts_deliveries_per_task_and_expires() -> None:
    redis = fakeredis.FakeRedis()
    counter = DeliveryCounter(redis, "mhogo:a1a1a1a1a1a1:deliveries")
    assert [counter.record("a") for _ in range(3)] == [1, 2, 3]
    assert counter.record("b") == 1
    assert 0 < redis.ttl("mhogo:a1a1a1a1a1a1:deliveries:a") <= KEY_TTL_S
