"""The Redis dedup store on a Redis Cluster: the standalone properties, batches spread over
every master in one round trip per master, and a master killed (SIGKILL) mid-use: claims
raise a ``RedisError`` while its slots have no master (never hang), work again once its
replica took over, with the marks set before the kill; the node restarted rejoins as a
replica."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.exceptions import RedisClusterException, RedisError, SlotNotCoveredError

from tests.integration.test_dedup_store import PROPERTIES, check_concurrent_claims
from worker.dedup import RedisDedup, verdicts
from worker.redis_link import RedisLink, RedisUnavailable, guarded

from .redis_cluster import RedisCluster


async def delete_keys(cluster: RedisCluster, namespace: str) -> None:
    for port in cluster.masters():
        client: aioredis.Redis = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        try:
            async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                await client.delete(key)
        finally:
            await client.aclose()


@pytest.fixture
async def cluster_namespace(redis_cluster: RedisCluster) -> AsyncIterator[str]:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    yield namespace
    await asyncio.to_thread(redis_cluster.wait_ok)
    await delete_keys(redis_cluster, namespace)


@pytest.fixture
async def cluster_link(redis_cluster: RedisCluster) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_cluster.url(4))  # any node will do: here a replica at start
    yield link
    await link.aclose()


def node_port(client: ClusterClient, key: str) -> int:
    node = client.get_node_from_key(key)
    assert node is not None
    return int(node.port)


def ids_on(client: ClusterClient, store: RedisDedup, port: int, count: int) -> list[str]:
    """``count`` event ids whose keys live on the master ``port``."""
    out: list[str] = []
    while len(out) < count:
        event_id = uuid.uuid4().hex
        if node_port(client, store.key(event_id)) == port:
            out.append(event_id)
    return out


async def cluster_client(link: RedisLink) -> ClusterClient:
    client = await link.client()
    assert isinstance(client, ClusterClient)
    return client


def test_the_cluster_started(redis_cluster: RedisCluster) -> None:
    assert redis_cluster.started_seconds is not None
    print(f"Redis Cluster of 6 nodes started in {redis_cluster.started_seconds:.2f} s")
    assert len(redis_cluster.masters()) == 3
    assert all(redis_cluster.replica_of(port) for port in redis_cluster.masters())


@pytest.mark.parametrize("name", list(PROPERTIES))
async def test_cluster(name: str, cluster_link: RedisLink, cluster_namespace: str) -> None:
    store = RedisDedup(cluster_link, 60, cluster_namespace)
    await PROPERTIES[name](store, await cluster_link.client())
    assert cluster_link.cluster is True


async def test_cluster_concurrent_claims_from_many_workers_give_one_winner(
    redis_cluster: RedisCluster, cluster_namespace: str
) -> None:
    await check_concurrent_claims(redis_cluster.url(0), cluster_namespace)


async def test_a_batch_over_every_master_takes_one_round_trip_per_master(
    redis_cluster: RedisCluster,
    cluster_link: RedisLink,
    cluster_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = RedisDedup(cluster_link, 60, cluster_namespace)
    client = await cluster_client(cluster_link)
    claims = [(f"e{i}", f"m/{i}") for i in range(60)]
    spread = Counter(node_port(client, store.key(event_id)) for event_id, _ in claims)
    assert set(spread) == set(redis_cluster.masters())

    sent: Counter[int] = Counter()
    original = ClusterNode.execute_pipeline

    async def counting(node: ClusterNode, commands: list[Any]) -> bool:
        sent[int(node.port)] += 1
        return await original(node, commands)

    monkeypatch.setattr(ClusterNode, "execute_pipeline", counting)
    assert await verdicts(store, claims) == [True] * 60
    assert sent == Counter(dict.fromkeys(spread, 1))
    sent.clear()
    await store.settle(claims[:30])
    await store.release(claims[30:])

    def masters_of(part: list[tuple[str, str]]) -> set[int]:
        return {node_port(client, store.key(event_id)) for event_id, _ in part}

    assert sent == Counter(masters_of(claims[:30])) + Counter(masters_of(claims[30:]))
    monkeypatch.undo()
    assert await verdicts(store, [(event_id, "other") for event_id, _ in claims]) == (
        [False] * 30 + [True] * 30
    )


async def test_a_killed_master_is_replaced_by_its_replica_and_rejoins_as_one(
    redis_cluster: RedisCluster, cluster_link: RedisLink, cluster_namespace: str
) -> None:
    await asyncio.to_thread(redis_cluster.wait_replicated)
    store = RedisDedup(cluster_link, 600, cluster_namespace)
    client = await cluster_client(cluster_link)
    victim = redis_cluster.masters()[0]
    heir = redis_cluster.replica_of(victim)
    assert heir is not None

    # Marks on the victim: claimed, half of them settled, and (at once, no wait) more
    # claimed in the very last batch before the kill.
    before = ids_on(client, store, victim, 40)
    assert await verdicts(store, [(i, f"m/{i}") for i in before]) == [True] * 40
    await store.settle([(i, f"m/{i}") for i in before[:20]])
    await asyncio.sleep(0.2)  # loopback replication is far quicker than that
    last = ids_on(client, store, victim, 40)
    assert await verdicts(store, [(i, f"m/{i}") for i in last]) == [True] * 40
    probes = [(i, "probe") for i in ids_on(client, store, victim, 10)]
    redis_cluster.kill(victim)
    killed = time.monotonic()

    # While the slots have no master: every claim fails with a RedisError, in bounded time.
    errors: Counter[str] = Counter()
    slowest = 0.0
    first_ok: float | None = None
    while time.monotonic() - killed < 60:
        started = time.monotonic()
        try:
            answers = await asyncio.wait_for(verdicts(store, probes), 30)
        except RedisError as exc:
            errors[type(exc).__name__] += 1
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.1)
            continue
        first_ok = time.monotonic() - killed
        assert answers == [True] * len(probes)
        break
    print(
        f"master {victim} killed: claims failed for {first_ok}s "
        f"({dict(errors)}; slowest failing call {slowest:.2f}s)"
    )
    assert first_ok is not None, f"no claim worked within 60 s of the kill: {dict(errors)}"
    assert slowest < 15
    assert errors, "a claim worked although the killed master's slots had no master"

    # The replica took over, with the marks.
    await asyncio.to_thread(redis_cluster.wait_ok)
    masters = redis_cluster.masters()
    assert heir in masters and victim not in masters, (victim, heir, masters)
    assert node_port(client, store.key(before[0])) == heir
    own = await verdicts(store, [(i, f"m/{i}") for i in before])
    assert own == [False] * 20 + [True] * 20, own  # settled marks stop their own delivery
    kept_last = await verdicts(store, [(i, "other") for i in last])
    lost = kept_last.count(True)
    print(f"marks of the last batch before the kill lost by the failover: {lost} of 40")
    others = await verdicts(store, [(i, "other") for i in before])
    assert others == [False] * 40, others

    # The killed node comes back as the replica of its heir.
    redis_cluster.start(victim)
    deadline = time.monotonic() + 30
    while redis_cluster.replica_of(heir) != victim:
        assert time.monotonic() < deadline, redis_cluster.logs()
        await asyncio.sleep(0.1)
    await asyncio.to_thread(redis_cluster.wait_ok)
    await asyncio.to_thread(redis_cluster.wait_replicated)
    masters = redis_cluster.masters()
    assert len(masters) == 3 and heir in masters and victim not in masters
    assert await verdicts(store, [(i, "other") for i in before]) == [False] * 40


async def test_cluster_client_failures_outside_redis_error_are_raised_as_redis_errors() -> None:
    """The cluster client's ``RedisClusterException`` (slots not covered, no node
    reachable) is not a ``RedisError``; the link raises it as one, so the worker waits."""
    with pytest.raises(RedisUnavailable) as caught:
        async with guarded():
            raise SlotNotCoveredError("All slots are not covered")
    assert isinstance(caught.value, RedisError)
    assert isinstance(caught.value.__cause__, RedisClusterException)
