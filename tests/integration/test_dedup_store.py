"""The Redis dedup store against a real Redis: atomic claims, settle, release, TTL."""

from __future__ import annotations

import asyncio

from tests.support import REDIS_URL
from worker.dedup import RedisDedup


async def test_concurrent_claims_from_many_workers_give_one_winner(namespace: str) -> None:
    stores = [RedisDedup(REDIS_URL, 60, namespace) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(store.claim([("e1", f"m{i}/p")]) for i, store in enumerate(stores))
        )
        assert sorted(flag for (flag,) in results) == [False] * 7 + [True]
    finally:
        for store in stores:
            await store.close()


async def test_settled_marks_stop_a_redelivery_and_keep_the_ttl(namespace: str) -> None:
    store = RedisDedup(REDIS_URL, 60, namespace)
    try:
        assert await store.claim([("e1", "m1/p1"), ("e2", "m1/p2")]) == [True, True]
        assert await store.claim([("e1", "m1/p1")]) == [True]  # redelivery, not committed
        await store.settle([("e1", "m1/p1")])
        assert await store.claim([("e1", "m1/p1"), ("e2", "m1/p2")]) == [False, True]
        ttl = await store.client.ttl(f"{namespace}:dedup:e1")
        assert 0 < ttl <= 60
        await store.release([("e2", "m1/p2")])
        assert await store.claim([("e2", "m5/p5")]) == [True]
    finally:
        await store.close()
