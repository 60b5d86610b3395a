"""Helpers shared by integration, end-to-end and fault tests: real processes, real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from ingest import topology
from ingest.names import Names
from tests.schema_check import check_event

ROOT = Path(__file__).resolve().parents[1]
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTBACKS = [sys.executable, "-m", "worker.entry"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def delete_topology(
    names: Names, queues: Sequence[str] = (), amqp_url: str = AMQP_URL
) -> None:
    """Delete the standard queues of ``names``, ``queues`` besides, and its exchanges."""
    everything = [names.intake, names.quarantine, names.unrouted, *queues]
    async with await aio_pika.connect(amqp_url, timeout=10) as connection:
        for queue in dict.fromkeys(everything):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in (names.events, names.unrouted):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)


async def delete_namespace(namespace: str, subscribers: Sequence[str] = ()) -> None:
    """Delete every queue and exchange of ``namespace`` and its Redis keys."""
    await delete_topology(Names(namespace), [*subscribers, *_listed_queues(namespace)])
    client: aioredis.Redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    except OSError:
        pass
    finally:
        await client.aclose()


def _listed_queues(namespace: str) -> list[str]:
    try:
        out = subprocess.run(
            ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().startswith(f"{namespace}.")]


def env_for(namespace: str, **overrides: str | int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "WORKER_"))}
    env.pop("REDIS_URL", None)
    env.update(
        AMQP_URL=AMQP_URL,
        POSTBACKS_NAMESPACE=namespace,
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="INFO",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


@dataclass
class Proc:
    """A ``postbacks`` process started the way a user starts it."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] = field(init=False)

    def start(self) -> Proc:
        self.log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [*POSTBACKS, *self.args],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, wait for the exit; returns the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        with contextlib.suppress(Exception):
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Stack:
    """Processes of one test; all killed at the end whatever happened."""

    def __init__(self, namespace: str, tmp: Path) -> None:
        self.namespace = namespace
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, *args: str, **env: str | int | None) -> Proc:
        name = f"{args[0]}-{len(self.procs)}.log"
        proc = Proc(list(args), env_for(self.namespace, **env), self.tmp / name).start()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()


async def wait_http(url: str, status: int = 200, timeout: float = 20) -> dict[str, Any]:
    """Poll ``url`` until it answers ``status``; returns the JSON body."""
    deadline = time.monotonic() + timeout
    last: object = None
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    last = (response.status, await response.text())
                    if response.status == status:
                        body: dict[str, Any] = orjson.loads(last[1]) if last[1] else {}
                        return body
            except aiohttp.ClientError as exc:
                last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s: {last!r}")


@dataclass
class Received:
    message: AbstractIncomingMessage
    event: dict[str, Any]


class Subscriber:
    """A durable subscriber queue bound to the events exchange, read by the test."""

    def __init__(self, namespace: str, name: str, patterns: Sequence[str]) -> None:
        self.names = Names(namespace)
        self.queue_name = self.names.subscriber(name)
        self.patterns = list(patterns)

    async def __aenter__(self) -> Subscriber:
        self.connection = await aio_pika.connect(AMQP_URL)
        self.channel = await self.connection.channel()
        self.queue = await topology.subscribe(
            self.channel, self.names, self.queue_name.rsplit(".", 1)[-1], self.patterns
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.connection.close()

    async def take(self, count: int, timeout: float = 30, settle: float = 0.0) -> list[Received]:
        """Read ``count`` events (acking them); then wait ``settle`` seconds to catch any
        unexpected extra one, which is returned as well."""
        out: list[Received] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            message = await self.queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            out.append(Received(message, check_event(orjson.loads(message.body))))
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            message = await self.queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            out.append(Received(message, check_event(orjson.loads(message.body))))
        return out


async def queue_count(queue: str, amqp_url: str = AMQP_URL) -> int:
    """Messages ready in ``queue`` now."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def take_all(queue: str, amqp_url: str = AMQP_URL) -> list[AbstractIncomingMessage]:
    """Every message now in ``queue`` (acked, so removed)."""
    out: list[AbstractIncomingMessage] = []
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            out.append(message)
    return out


@contextlib.asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=256, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    content_type: str | None = "application/xml",
    **headers: str,
) -> tuple[int, str, dict[str, str]]:
    sent = dict(headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    async with session.post(url, data=body, headers=sent) as response:
        return response.status, await response.text(), dict(response.headers)


def postback_xml(code: str = "N102", tracking: str = "t-1", **extra: str) -> bytes:
    fields = "".join(
        f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>" for k, v in extra.items()
    )
    return (
        f"<postback><origin>MMS_MT</origin><code>{code}</code>"
        f"<tracking-id>{tracking}</tracking-id>{fields}</postback>"
    ).encode()


def postback_json(code: str = "N102", tracking: str = "t-1", **extra: str) -> bytes:
    fields = {"origin": "MMS_MT", "code": code, "tracking-id": tracking}
    fields.update({k.replace("_", "-"): v for k, v in extra.items()})
    return orjson.dumps(fields)


def split_lifecycle(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``event`` without its ``lifecycle`` key, and that lifecycle, for comparing events that
    went through a worker: the rest of the event is compared whole, the lifecycle on its own
    (the worker fills it in from the lifecycle store). Fails when the key is missing."""
    assert "lifecycle" in event, f"a schema-2 event has a lifecycle key: {sorted(event)}"
    rest = {k: v for k, v in event.items() if k != "lifecycle"}
    return rest, event["lifecycle"]
