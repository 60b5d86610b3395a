"""Fixtures of the fault suite: a private RabbitMQ node and Redis server for the session
(never the shared ones), a fresh namespace and process set per test, and the report."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, new_namespace

from .kit import Cluster, Downstream, Report, delete_namespace, timer_queues
from .services import PrivateRabbit, PrivateRedis, port_open

REPORT_PATH = Path(os.environ.get("FAULTS_REPORT", ROOT / "build" / "faults" / "report.md"))


@pytest.fixture(scope="session")
def private_base() -> Iterator[Path]:
    # Short path: the node's files live here; removed at the end unless kept for debugging.
    base = Path(tempfile.mkdtemp(prefix="pbfaults-"))
    yield base
    if not os.environ.get("FAULTS_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def suite_started() -> float:
    return time.monotonic()


@pytest.fixture(scope="session")
def rabbit(suite_started: float, private_base: Path) -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(private_base / "rabbit")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def redis(private_base: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(private_base / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def report(suite_started: float, rabbit: PrivateRabbit, redis: PrivateRedis) -> Iterator[Report]:
    result = Report(
        REPORT_PATH,
        started=suite_started,
        broker=(
            f"private RabbitMQ node `{rabbit.node.split('@')[0].rstrip('0123456789')}` "
            f"on port {rabbit.port} and private Redis on port {redis.port} "
            "(the shared ones are never touched)"
        ),
    )
    yield result
    result.write()
    print(f"\nfault report: {REPORT_PATH}")


@pytest.fixture
async def cluster(
    rabbit: PrivateRabbit, redis: PrivateRedis, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """The processes of one test in a fresh namespace; all killed and deleted afterwards."""
    # A failed test may have left one of them down.
    if not port_open(rabbit.port):
        rabbit.start_app()
    if not redis.answers():
        redis.start()
    running = Cluster(new_namespace(), tmp_path, rabbit, redis)
    try:
        yield running
    finally:
        running.close()
        await delete_namespace(
            rabbit.url, running.names, timer_queues(running.names, running.services)
        )


@pytest.fixture
async def downstream(cluster: Cluster) -> Downstream:
    reader = Downstream(cluster.rabbit.url, cluster.names)
    await reader.declare()
    return reader
