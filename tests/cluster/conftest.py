"""Fixtures of the cluster suite: private clusters started for the session, stopped after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_cluster import RedisCluster, RedisClusterError


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """Six ``redis-server`` nodes (three masters, three replicas) on free loopback ports;
    ``started_seconds`` says how long the start took. Fails, never skips, when it cannot
    start (with the nodes' logs)."""
    cluster = RedisCluster()
    try:
        cluster.start_all()
    except (RedisClusterError, OSError) as exc:
        logs = cluster.logs()
        cluster.stop()
        pytest.fail(f"the Redis Cluster did not start: {exc}\n{logs}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
