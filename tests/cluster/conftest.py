"""Fixtures of the cluster suite: private clusters started for the session, stopped after."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.faults.kit import Downstream, timer_queues
from tests.support import ROOT, new_namespace

from .kit import ClusterReport, Processes, delete_namespace, restore
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


# --- the cluster fault suite (test_cluster_faults.py) ---------------------------------------

CLUSTER_REPORT = Path(os.environ.get("CLUSTER_REPORT", ROOT / "build" / "cluster" / "report.md"))
SUBSCRIBER = "faults"


@pytest.fixture(scope="session")
def cluster_suite_started() -> float:
    return time.monotonic()


@pytest.fixture(scope="session")
def cluster_report(
    cluster_suite_started: float, rabbit_cluster: RabbitCluster, redis_cluster: RedisCluster
) -> Iterator[ClusterReport]:
    """The measured table of the cluster fault suite, rewritten after every test."""
    result = ClusterReport(
        CLUSTER_REPORT,
        started=cluster_suite_started,
        broker=(
            "a private 3-node RabbitMQ cluster (`pause_minority`, started in "
            f"{rabbit_cluster.started_in or 0:.0f} s) and a private 3-master/3-replica Redis "
            f"Cluster (started in {redis_cluster.started_seconds or 0:.0f} s); the shared "
            "RabbitMQ and Redis are never touched"
        ),
    )
    yield result
    result.write()
    print(f"\ncluster fault report: {CLUSTER_REPORT}")


@pytest.fixture
async def procs(
    rabbit_cluster: RabbitCluster, redis_cluster: RedisCluster, tmp_path: Path
) -> AsyncIterator[Processes]:
    """The project processes of one test, in a fresh namespace on both clusters; killed and
    the namespace deleted afterwards. Every node is up and uncut when the test begins."""
    await asyncio.to_thread(restore, rabbit_cluster, redis_cluster)
    running = Processes(new_namespace(), tmp_path, rabbit_cluster, redis_cluster)
    try:
        yield running
    finally:
        running.close()
        await asyncio.to_thread(restore, rabbit_cluster, redis_cluster)
        queues = [running.names.subscriber(SUBSCRIBER)]
        await delete_namespace(running, [*queues, *timer_queues(running.names, running.services)])


@pytest.fixture
async def downstream(procs: Processes) -> Downstream:
    """``NS.sub.faults`` bound ``#``, declared before any process starts."""
    reader = Downstream(procs.live_amqp_url(), procs.names)
    await reader.declare()
    return reader
