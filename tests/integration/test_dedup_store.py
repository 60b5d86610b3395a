"""The Redis dedup store against a real Redis: atomic claims, settle, release, TTL.

The properties are written once, as functions of a store (and the raw client to look at its
keys), and run here against the shared standalone Redis and in ``tests/cluster`` against a
Redis Cluster: the same answers, the same expiry, on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support import REDIS_URL
from worker.dedup import RedisDedup, open_store, verdicts
from worker.redis_link import Client, RedisLink

Property = Callable[[RedisDedup, Client], Awaitable[None]]
PROPERTIES: dict[str, Property] = {}


def prop(fn: Property) -> Property:
    PROPERTIES[fn.__name__.removeprefix("prop_")] = fn
    return fn


async def pttl(client: Client, store: RedisDedup, event_id: str) -> int:
    value = await client.pttl(store.key(event_id))
    assert isinstance(value, int)
    return value


async def held(client: Client, store: RedisDedup, event_id: str) -> bytes | None:
    value = await client.get(store.key(event_id))
    assert value is None or isinstance(value, bytes)
    return value


@prop
async def prop_first_claim_wins_and_other_copies_are_duplicates(
    store: RedisDedup, client: Client
) -> None:
    assert await verdicts(store, [("e1", "m1/p1"), ("e1", "m2/p7"), ("e2", "m1/p2")]) == [
        True,
        False,
        True,
    ]
    assert await held(client, store, "e1") == b"m1/p1"


@prop
async def prop_a_claim_answers_for_its_mark_even_twice_in_one_batch(
    store: RedisDedup, client: Client
) -> None:
    assert await verdicts(store, [("e1", "m1/p1"), ("e1", "m1/p1")]) == [True, True]
    assert await verdicts(store, [("e2", "m2/p2"), ("e2", "m1/p1"), ("e2", "m2/p2")]) == [
        True,
        False,
        True,
    ]


@prop
async def prop_a_redelivery_before_its_commit_takes_its_own_mark_over(
    store: RedisDedup, client: Client
) -> None:
    await verdicts(store, [("e1", "m1/p1")])
    assert await verdicts(store, [("e1", "m1/p1")]) == [True]
    assert await verdicts(store, [("e1", "m2/p2")]) == [False]
    assert await held(client, store, "e1") == b"m1/p1"


@prop
async def prop_a_mark_lives_ttl_seconds(store: RedisDedup, client: Client) -> None:
    store.ttl = 1
    await verdicts(store, [("e1", "m1/p1"), ("e2", "m1/p2")])
    assert 0 < await pttl(client, store, "e1") <= 1000
    await asyncio.sleep(0.6)
    assert await verdicts(store, [("e1", "m2/p2")]) == [False]
    await store.settle([("e2", "m1/p2")])  # settled at 0.6 s: still gone at 1 s
    await asyncio.sleep(0.5)
    assert await verdicts(store, [("e1", "m2/p2"), ("e2", "m2/p2")]) == [True, True]
    await store.release([("e1", "m1/p1")])  # the expired mark's release: m2 keeps it
    assert await held(client, store, "e1") == b"m2/p2"


@prop
async def prop_an_own_mark_claimed_again_keeps_its_first_expiry(
    store: RedisDedup, client: Client
) -> None:
    await verdicts(store, [("e1", "m1/p1")])
    await asyncio.sleep(0.05)
    before = await pttl(client, store, "e1")
    assert await verdicts(store, [("e1", "m1/p1")]) == [True]
    assert 0 < await pttl(client, store, "e1") <= before < store.ttl * 1000


@prop
async def prop_settle_keeps_the_ttl_and_stops_even_the_same_delivery(
    store: RedisDedup, client: Client
) -> None:
    await verdicts(store, [("e1", "m1/p1")])
    await asyncio.sleep(0.05)
    before = await pttl(client, store, "e1")
    await store.settle([("e1", "m1/p1")])
    assert await held(client, store, "e1") == b"done:m1/p1"
    assert 0 < await pttl(client, store, "e1") <= before < store.ttl * 1000
    assert await verdicts(store, [("e1", "m1/p1"), ("e1", "m9/p9")]) == [False, False]
    await store.settle([("e1", "m1/p1")])  # again: nothing changes
    assert await held(client, store, "e1") == b"done:m1/p1"


@prop
async def prop_settle_touches_only_its_own_mark(store: RedisDedup, client: Client) -> None:
    await verdicts(store, [("e1", "m1/p1")])
    await store.settle([("e1", "m2/p2"), ("e2", "m1/p1")])  # another mark; an id not held
    assert await held(client, store, "e1") == b"m1/p1"
    assert await held(client, store, "e2") is None
    assert await verdicts(store, [("e1", "m1/p1"), ("e2", "m3/p3")]) == [True, True]


@prop
async def prop_release_forgets_only_the_exact_mark(store: RedisDedup, client: Client) -> None:
    await verdicts(store, [("e1", "m1/p1"), ("e2", "m1/p2")])
    await store.release([("e1", "m2/p2"), ("e2", "m1/p1")])  # other marks: nothing happens
    assert await verdicts(store, [("e1", "m3/p3"), ("e2", "m3/p3")]) == [False, False]
    await store.release([("e1", "m1/p1")])
    assert await held(client, store, "e1") is None
    assert await verdicts(store, [("e1", "m3/p3"), ("e2", "m3/p3")]) == [True, False]


@prop
async def prop_release_does_not_forget_a_settled_mark(store: RedisDedup, client: Client) -> None:
    await verdicts(store, [("e1", "m1/p1")])
    await store.settle([("e1", "m1/p1")])
    await store.release([("e1", "m1/p1")])
    assert await held(client, store, "e1") == b"done:m1/p1"
    assert await verdicts(store, [("e1", "m2/p2")]) == [False]


@prop
async def prop_empty_batches_answer_without_asking(store: RedisDedup, client: Client) -> None:
    assert await verdicts(store, []) == []
    await store.settle([])
    await store.release([])


@prop
async def prop_a_large_batch_answers_in_order(store: RedisDedup, client: Client) -> None:
    claims = [(f"e{i}", f"m/{i}") for i in range(500)]
    assert await verdicts(store, claims[:250]) == [True] * 250
    flipped = [(event_id, "other") for event_id, _ in claims[:250:2]]
    assert await verdicts(store, flipped + claims) == [False] * 125 + [True] * 500
    await store.settle(claims[::2])
    assert await verdicts(store, claims) == [i % 2 == 1 for i in range(500)]


async def check_concurrent_claims(url: str, namespace: str) -> None:
    """Eight workers, each with its own link, claim one id at once: one wins."""
    links = [RedisLink(url) for _ in range(8)]
    stores = [RedisDedup(link, 60, namespace, owns_link=True) for link in links]
    try:
        results = await asyncio.gather(
            *(verdicts(store, [("e1", f"m{i}/p")]) for i, store in enumerate(stores))
        )
        assert sorted(flag for (flag,) in results) == [False] * 7 + [True]
    finally:
        for store in stores:
            await store.close()


# -- against the shared standalone Redis -------------------------------------------------


@pytest.fixture
async def link() -> AsyncIterator[RedisLink]:
    link = RedisLink(REDIS_URL)
    yield link
    await link.aclose()


@pytest.mark.parametrize("name", list(PROPERTIES))
async def test_standalone(name: str, link: RedisLink, namespace: str) -> None:
    store = RedisDedup(link, 60, namespace)
    await PROPERTIES[name](store, await link.client())
    assert link.cluster is False


async def test_standalone_concurrent_claims_from_many_workers_give_one_winner(
    namespace: str,
) -> None:
    await check_concurrent_claims(REDIS_URL, namespace)


async def test_standalone_batches_take_one_round_trip_each(
    link: RedisLink, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.asyncio.client import Pipeline

    store = RedisDedup(link, 60, namespace)
    claims = [(f"e{i}", f"m/{i}") for i in range(100)]
    await store.ping()
    sent: list[int] = []
    original = Pipeline._execute_pipeline

    async def counting(pipe: Pipeline, connection: Any, commands: Any, raise_on_error: bool) -> Any:
        sent.append(len(commands))
        return await original(pipe, connection, commands, raise_on_error)

    monkeypatch.setattr(Pipeline, "_execute_pipeline", counting)
    assert await verdicts(store, claims) == [True] * 100
    await store.settle(claims[:50])
    await store.release(claims[50:])
    # One round trip each; on standalone Redis each is one script call per 256 ids.
    assert sent == [1, 1, 1]
    sent.clear()
    many = [(f"m{i}", f"m/{i}") for i in range(600)]
    assert await verdicts(store, many) == [True] * 600
    assert sent == [3]


async def test_open_store_owns_its_link_and_closes_it(namespace: str) -> None:
    store = open_store(REDIS_URL, 60, namespace)
    assert isinstance(store, RedisDedup)
    assert store.link.cluster is None  # nothing asked yet
    await store.ping()
    assert store.link.cluster is False
    await store.close()
    assert store.link.cluster is None


async def test_a_store_starts_while_redis_is_down_and_raises_a_redis_error() -> None:
    from redis.exceptions import RedisError

    store = open_store("redis://127.0.0.1:1/0", 60, "nowhere")
    with pytest.raises(RedisError):
        await verdicts(store, [("e1", "m1/p1")])
    with pytest.raises(RedisError):
        await store.ping()
    await store.close()
