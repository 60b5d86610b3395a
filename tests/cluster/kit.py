"""Tools of the cluster fault suite: ``postbacks receive``/``work`` processes given every node
of the private RabbitMQ cluster and one node of the private Redis Cluster, which broker node
each of them is connected to, a watch on their ``/readyz``, their republished counters, and
the report. Load, downstream reader and tally are the single-node suite's
(``tests/faults/kit.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiohttp
import redis

from ingest.names import Names
from tests.faults.kit import (
    Load,
    Report,
    Row,
    Service,
    Shot,
    readiness,
    wait_ready,
)
from tests.faults.services import pid_alive
from tests.support import Stack, delete_topology, free_port

from .rabbit_cluster import RabbitCluster, port_open
from .redis_cluster import RedisCluster

REPUBLISHED = "postbacks_events_republished_total"


class Processes:
    """The project processes of one test, wired to both clusters; killed at the end."""

    def __init__(
        self, namespace: str, tmp: Path, rabbit: RabbitCluster, redis_nodes: RedisCluster
    ) -> None:
        self.namespace = namespace
        self.names = Names(namespace)
        self.rabbit = rabbit
        self.redis = redis_nodes
        self.stack = Stack(namespace, tmp)
        self.services: list[Service] = []

    def amqp_url(self, rotation: int) -> str:
        """Every node of the RabbitMQ cluster, the list rotated by ``rotation`` (each process
        gets the nodes in another order)."""
        urls = self.rabbit.urls
        shift = rotation % len(urls)
        return ",".join(urls[shift:] + urls[:shift])

    def _start(self, role: str, env: dict[str, str | int | None]) -> Service:
        port = free_port()
        full: dict[str, str | int | None] = {
            "AMQP_URL": self.amqp_url(len(self.services)),
            "INGEST_HOST": "127.0.0.1",
            **env,
        }
        if role == "receive":
            full["INGEST_PORT"] = port
        else:
            full.setdefault("REDIS_URL", self.redis.urls[0])
            full["WORKER_METRICS_PORT"] = port
        service = Service(role, self.stack.start(role, **full), port, dict(full))
        self.services.append(service)
        return service

    async def receiver(self, **env: str | int | None) -> Service:
        service = self._start("receive", env)
        await wait_ready(service, timeout=60)
        return service

    async def worker(self, redis_url: str, **env: str | int | None) -> Service:
        service = self._start("work", {"REDIS_URL": redis_url, **env})
        await wait_ready(service, timeout=60)
        return service

    def live_amqp_url(self) -> str:
        """A node that serves AMQP now (for the test's own connections)."""
        for url, node in zip(self.rabbit.urls, self.rabbit.nodes, strict=True):
            if port_open(node.port):
                return url
        raise AssertionError("no node of the RabbitMQ cluster serves AMQP")

    def close(self) -> None:
        self.stack.close()

    def _listings(self, *arguments: str) -> Iterator[str]:
        """``list_queues`` with ``arguments``: the output of each node that answers, in
        node order (asked lazily: stop reading once one will do)."""
        for node in self.rabbit.nodes:
            if not port_open(node.port):
                continue
            done = self.rabbit.ctl(node.index, "list_queues", *arguments, timeout=30)
            if done.returncode == 0:
                yield done.stdout

    def queues(self) -> str:
        """``list_queues`` of this namespace on the first node that answers: messages,
        ready, unacked, leader, online members."""
        columns = ("messages", "messages_ready", "messages_unacknowledged", "leader", "online")
        for out in self._listings("name", *columns):
            return "\n".join(line for line in out.splitlines() if line.startswith(self.namespace))
        return "(no node could list queues)"

    def depths(self) -> dict[str, tuple[int, int]]:
        """``NS.*`` queue → (messages ready, unacknowledged), asked of the first node that
        answers (empty when none does)."""
        columns = ("name", "messages_ready", "messages_unacknowledged")
        for out in self._listings(*columns, "--formatter", "json"):
            with contextlib.suppress(ValueError):
                return {
                    str(row["name"]): (
                        int(row.get("messages_ready") or 0),
                        int(row.get("messages_unacknowledged") or 0),
                    )
                    for row in json.loads(out or "[]")
                    if str(row.get("name", "")).startswith(f"{self.namespace}.")
                }
        return {}

    async def in_queue(self, queue: str, needles: Collection[str]) -> tuple[int, set[str]]:
        """Read (and remove) every message of ``queue``: how many there were, and which
        of the tracking ids ``needles`` their bodies name. For evidence after a failure
        only: the namespace is deleted afterwards."""
        wanted = {n: f'"{n}"'.encode() for n in needles}
        found: set[str] = set()
        count = 0
        connection = await aio_pika.connect(self.live_amqp_url(), timeout=10)
        async with connection:
            channel = await connection.channel()
            q = await channel.declare_queue(queue, passive=True)
            while (message := await q.get(no_ack=True, fail=False, timeout=10)) is not None:
                count += 1
                found |= {n for n, quoted in wanted.items() if quoted in message.body}
        return count, found

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"--- {s.role} pid {s.proc.pid} ---\n{s.proc.output()[-tail:]}" for s in self.services
        )


# --- which node a process is connected to ---------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def connected_nodes(pid: int, rabbit: RabbitCluster) -> set[int]:
    """Indices of the nodes process ``pid`` holds an established AMQP connection to: its
    sockets (``/proc/PID/fd``) matched against the kernel's TCP table by inode, by the
    remote port (each node has an AMQP port of its own)."""
    by_port = {node.port: node.index for node in rabbit.nodes}
    inodes = _socket_inodes(pid)
    found = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) < 10 or fields[3] != "01" or fields[9] not in inodes:
                    continue
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port in by_port:
                    found.add(by_port[remote_port])
    return found


async def wait_connected(service: Service, rabbit: RabbitCluster, timeout: float = 10) -> set[int]:
    """The nodes ``service`` is connected to, once it is connected to one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = connected_nodes(service.proc.pid, rabbit)
        if nodes:
            return nodes
        await asyncio.sleep(0.1)
    raise AssertionError(f"{service.role} pid {service.proc.pid} holds no AMQP connection")


# --- readiness over time --------------------------------------------------------------------


@dataclass
class Watch:
    """Polls every service's ``/readyz`` in the background; remembers each answer."""

    services: list[Service]
    interval: float = 0.1
    seen: dict[int, list[tuple[float, int, str]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            answers = await asyncio.gather(*(readiness(s) for s in self.services))
            now = time.monotonic()
            for service, (status, body) in zip(self.services, answers, strict=True):
                checks = body.get("checks", {}) if isinstance(body, dict) else {}
                failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
                self.seen.setdefault(service.proc.pid, []).append((now, status, failing))
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def not_ready(self, service: Service, since: float) -> list[tuple[float, int, str]]:
        return [a for a in self.seen.get(service.proc.pid, []) if a[0] >= since and a[1] != 200]

    def ready_again(self, service: Service, since: float) -> float:
        """Seconds from ``since`` until ``/readyz`` answered 200 after its last other answer
        (0 when it never answered anything else)."""
        answers = [a for a in self.seen.get(service.proc.pid, []) if a[0] >= since]
        failures = [a[0] for a in answers if a[1] != 200]
        if not failures:
            return 0.0
        after = [a[0] for a in answers if a[1] == 200 and a[0] > failures[-1]]
        return (after[0] - since) if after else float("inf")


def answering_again(shots: list[Shot], since: float) -> float:
    """Seconds from ``since`` until the receiver answered 200 again for good: the answer of
    the first postback answered 200 among those sent after the last one not answered 200
    (or, with no failure at all, after ``since``). A stall counts too: its postbacks are
    answered late."""
    after = sorted((s for s in shots if s.answered >= since), key=lambda s: s.sent)
    failed = [s.sent for s in after if s.status != 200]
    start = failed[-1] if failed else since
    ok = [s.answered for s in after if s.status == 200 and s.sent > start]
    return (min(ok) - since) if ok else float("inf")


# --- metrics --------------------------------------------------------------------------------


async def metric_sum(service: Service, name: str) -> float:
    """The sum of metric ``name`` over its label sets on ``service``'s ``/metrics`` (0 when
    the process does not expose it)."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{service.base}/metrics") as response,
    ):
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- clean state between tests ----------------------------------------------------------------


def restore(rabbit: RabbitCluster, redis_nodes: RedisCluster) -> None:
    """Every RabbitMQ node running and uncut, every Redis node up: a failed test may have
    left one down."""
    for node in rabbit.nodes:
        if rabbit.is_cut(node.index):
            rabbit.heal(node.index)
        pid = node.pid()
        if pid is None or not pid_alive(pid):
            rabbit.start(node.index)
    for node in rabbit.nodes:
        rabbit.wait_running(node.index, timeout=90)
    for port in redis_nodes.ports:
        if not redis_nodes.alive(port):
            redis_nodes.start(port)
    redis_nodes.wait_ok(timeout=60)


async def delete_namespace(processes: Processes, subscribers: list[str]) -> None:
    """The namespace's queues and exchanges on the RabbitMQ cluster, its keys on every
    master of the Redis Cluster."""
    with contextlib.suppress(Exception):
        await delete_topology(processes.names, subscribers, processes.live_amqp_url())
    for port in processes.redis.masters():
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        try:
            for key in client.scan_iter(match=f"{processes.namespace}:*", count=1000):
                client.delete(key)
        except redis.RedisError:
            pass
        finally:
            client.close()


# --- report ---------------------------------------------------------------------------------


@dataclass
class ClusterRow(Row):
    rejected: int = 0  # answered 503
    republished: float = 0
    answering: str = ""  # time to 200 again


class ClusterReport(Report):
    """The single-node report's table with the columns a cluster fault needs."""

    def render(self) -> str:
        lines = [
            "# Cluster fault report",
            "",
            f"Under test: {self.broker}.",
            f"Cluster suite run time (including starting both clusters): "
            f"{self.last - self.started:.0f} s.",
            "",
            "| fault | sent | 200 | 503 | events | lost | duplicates | republished "
            "| time to 200 again | ready again | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
        ]
        for row in self.rows:
            t = row.tally
            rejected = row.rejected if isinstance(row, ClusterRow) else 0
            republished = row.republished if isinstance(row, ClusterRow) else 0
            answering = row.answering if isinstance(row, ClusterRow) else ""
            lines.append(
                f"| {row.fault} | {t.sent} | {t.ok} | {rejected} | {t.downstream} | {t.lost} "
                f"| {t.duplicates} | {republished:.0f} | {answering} | {row.recovery} "
                f"| {row.notes} |"
            )
        if self.extra:
            lines += ["", *self.extra]
        return "\n".join(lines) + "\n"


def statuses(loads: list[Load]) -> dict[int | None, int]:
    counts: dict[int | None, int] = {}
    for load in loads:
        for status, n in load.statuses().items():
            counts[status] = counts.get(status, 0) + n
    return counts
