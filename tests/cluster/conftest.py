"""Fixtures of the cluster suite: private clusters started for the session, stopped after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .rabbit_cluster import ClusterError, RabbitCluster
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


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """Three RabbitMQ nodes clustered on loopback (``pause_minority``, management plugin
    when installed), private ports, cookie and ``epmd``; ``started_in`` says how long the
    start took. Fails, never skips, when it cannot start (with the nodes' logs)."""
    cluster = RabbitCluster()
    try:
        cluster.start()
    except (ClusterError, OSError) as exc:
        # start() has already stopped what it started; the message carries the logs.
        pytest.fail(f"the RabbitMQ cluster did not start: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
