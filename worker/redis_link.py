"""One Redis client per process, built from ``REDIS_URL``: standalone Redis or Redis Cluster.

``REDIS_URL`` may be ``redis://``, ``rediss://`` or ``unix://``, and may name a standalone
server or any node of a Redis Cluster. The mode is noticed once, on the first successful
contact: ``INFO cluster`` on a plain connection to the named node says ``cluster_enabled:1``
on a cluster node. Then the link holds a ``redis.asyncio.cluster.RedisCluster`` (which
follows the cluster's slots, MOVED/ASK redirections and failovers, and splits a pipeline
into one pipeline per node, sent in parallel), otherwise the plain ``redis.asyncio.Redis``
it probed with.

Building a :class:`RedisLink` does no I/O, so a process can start while Redis is down: the
first use raises as any later one does while Redis cannot answer. Every failure to reach
Redis surfaces as a :class:`redis.exceptions.RedisError` (the cluster client's own
``RedisClusterException`` for "slots not covered" and "no node reachable" is not one; it is
raised again as :class:`RedisUnavailable`, a ``ConnectionError``), so callers wait and retry
on ``RedisError``/``OSError`` alone.

Timeouts: 5 s to connect, 5 s per reply, a health check on connections idle 10 s. The
cluster client retries a command at most 3 times after a connection error, a timeout or
``CLUSTERDOWN`` (rebuilding its slot map in between, 0.25 s apart for a pipeline), so a
command fails within about a second while a master is gone and its slots are not yet taken
over, rather than hiding the outage; callers retry with their own back-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError
from redis.retry import Retry

Client: TypeAlias = "aioredis.Redis | RedisCluster"

TIMEOUTS: dict[str, Any] = {
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
}
CLUSTER_RETRIES = 3


class RedisUnavailable(RedisConnectionError):
    """The cluster client could not map or reach the slots (raised from its
    ``RedisClusterException``)."""


class RedisConfigError(ValueError):
    """``REDIS_URL`` cannot work as given (a cluster node behind a unix socket, say)."""


@asynccontextmanager
async def guarded() -> AsyncIterator[None]:
    """Turn the cluster client's non-``RedisError`` failures into :class:`RedisUnavailable`."""
    try:
        yield
    except RedisClusterException as exc:
        raise RedisUnavailable(f"redis cluster: {exc}") from exc


async def detect_cluster(probe: aioredis.Redis) -> bool:
    """Whether the node ``probe`` talks to runs in cluster mode: ``INFO cluster``, or for a
    user not allowed ``INFO``, whether ``CLUSTER INFO`` answers (a standalone server
    refuses it: cluster support disabled)."""
    try:
        info = await probe.info("cluster")
    except ResponseError:
        try:
            await probe.cluster("info")
        except ResponseError:
            return False
        return True
    return bool(int(info.get("cluster_enabled", 0)))


def cluster_client(url: str) -> RedisCluster:
    return RedisCluster.from_url(
        url,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=CLUSTER_RETRIES),
        **TIMEOUTS,
    )


class RedisLink:
    """The process's Redis client, built on first use and kept; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Client | None = None
        self._probe: aioredis.Redis | None = None
        self._lock = asyncio.Lock()

    @property
    def cluster(self) -> bool | None:
        """``True`` on a Redis Cluster, ``False`` on standalone Redis, ``None`` before the
        first contact."""
        if self._client is None:
            return None
        return isinstance(self._client, RedisCluster)

    async def client(self) -> Client:
        """The client, noticing the mode first if still unknown (raises ``RedisError`` or
        ``OSError`` while Redis cannot answer)."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> Client:
        if self._probe is None:
            self._probe = aioredis.Redis.from_url(self.url, **TIMEOUTS)
        probe = self._probe
        if not await detect_cluster(probe):
            self._probe = None
            return probe
        await probe.aclose()
        self._probe = None
        if self.url.startswith("unix:"):
            raise RedisConfigError(
                "REDIS_URL names a Redis Cluster node by a unix socket; "
                "a cluster client needs host:port (redis:// or rediss://)"
            )
        client = cluster_client(self.url)
        try:
            async with guarded():
                await client.initialize()
        except BaseException:
            await client.aclose()
            raise
        return client

    async def ping(self) -> None:
        """Raise unless Redis answers: on a cluster, every master (a dead replica is no
        outage)."""
        client = await self.client()
        async with guarded():
            if isinstance(client, RedisCluster):
                await client.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await client.ping()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        probe, self._probe = self._probe, None
        for each in (client, probe):
            if each is not None:
                await each.aclose()


async def connect(url: str) -> RedisLink:
    """A :class:`RedisLink` that has already noticed the mode (raises while Redis is down)."""
    link = RedisLink(url)
    try:
        await link.client()
    except BaseException:
        await link.aclose()
        raise
    return link
