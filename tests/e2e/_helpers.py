"""Helpers of the end-to-end tests: ``postbacks run`` and ``postbacks tail`` started the way a
user starts them, on free ports, talking to the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ingest.names import Names
from tests.integration._helpers import rabbitmqctl
from tests.support import POSTBACKS, ROOT, Proc, Stack, env_for, free_port, wait_http


@dataclass
class Running:
    """A ``postbacks run`` process group and where it listens."""

    proc: Proc
    port: int
    metrics_port: int

    @property
    def postbacks(self) -> str:
        return f"http://127.0.0.1:{self.port}/postbacks"


async def start_run(processes: Stack, **env: str | int | None) -> Running:
    port, metrics_port = free_port(), free_port()
    proc = processes.start("run", INGEST_PORT=port, WORKER_METRICS_PORT=metrics_port, **env)
    await wait_http(f"http://127.0.0.1:{port}/readyz", 200, timeout=30)
    await wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 200, timeout=30)
    return Running(proc, port, metrics_port)


def parse_received_at(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


async def wait_bound(namespace: str, pattern: str, timeout: float = 20) -> None:
    """Until a temporary (server-named) queue is bound to ``NS.events`` with ``pattern``."""
    events = Names(namespace).events
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = await asyncio.to_thread(
            rabbitmqctl,
            "list_bindings",
            "-q",
            "--no-table-headers",
            "source_name",
            "destination_name",
            "routing_key",
        )
        for line in listing.splitlines():
            parts = line.split("\t")
            if parts[1:2] and parts[1].startswith("amq.gen-") and parts[::2] == [events, pattern]:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no temporary queue bound to {events} with {pattern!r}")


@dataclass
class Tail:
    process: asyncio.subprocess.Process
    log: Path

    async def line(self, timeout: float = 15) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(f"tail ended: {self.log.read_text(errors='replace')}")
        return raw.decode()

    async def no_line(self, within: float) -> bytes:
        """What tail prints within ``within`` seconds (``b""``: nothing)."""
        assert self.process.stdout is not None
        try:
            return await asyncio.wait_for(self.process.stdout.readline(), within)
        except TimeoutError:
            return b""

    async def stop(self, timeout: float = 10) -> int:
        """SIGTERM; the exit status (the test fails if it takes over ``timeout``)."""
        self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), timeout)


@contextlib.asynccontextmanager
async def tail(namespace: str, tmp: Path, *pattern: str) -> AsyncIterator[Tail]:
    """``postbacks tail [PATTERN]`` with its stdout read by the test; ready once bound."""
    log = tmp / f"tail-{'-'.join(pattern) or 'all'}.log".replace("#", "H").replace("*", "S")
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *POSTBACKS,
            "tail",
            *pattern,
            env=env_for(namespace),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        await wait_bound(namespace, pattern[0] if pattern else "#")
        yield Tail(process, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
