"""The in-process dedup store: the same claim semantics as Redis, without I/O."""

from __future__ import annotations

from worker.dedup import MemoryDedup


async def test_first_claim_wins_and_other_copies_are_duplicates() -> None:
    store = MemoryDedup(ttl=60)
    assert await store.claim([("e1", "m1/p1"), ("e1", "m2/p7"), ("e2", "m1/p2")]) == [
        True,
        False,
        True,
    ]


async def test_a_redelivery_before_its_commit_takes_its_own_mark_over() -> None:
    store = MemoryDedup(ttl=60)
    await store.claim([("e1", "m1/p1")])
    assert await store.claim([("e1", "m1/p1")]) == [True]


async def test_a_settled_mark_stops_even_the_same_delivery() -> None:
    store = MemoryDedup(ttl=60)
    await store.claim([("e1", "m1/p1")])
    await store.settle([("e1", "m1/p1")])
    assert await store.claim([("e1", "m1/p1"), ("e1", "m9/p9")]) == [False, False]


async def test_settle_and_release_touch_only_their_own_marks() -> None:
    store = MemoryDedup(ttl=60)
    await store.claim([("e1", "m1/p1")])
    await store.settle([("e1", "m2/p2")])
    await store.release([("e1", "m2/p2")])
    assert await store.claim([("e1", "m1/p1")]) == [True]
    await store.release([("e1", "m1/p1")])
    assert await store.claim([("e1", "m3/p3")]) == [True]


async def test_ids_are_forgotten_after_the_ttl() -> None:
    store = MemoryDedup(ttl=1)
    now = [1000.0]
    store._monotonic = lambda: now[0]
    await store.claim([("e1", "m1/p1")])
    now[0] += 2
    assert await store.claim([("e1", "m2/p2")]) == [True]
