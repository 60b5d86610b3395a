"""Helpers of the integration tests: the receiver and a worker in this process, against the
real RabbitMQ and Redis; a TCP proxy that plays a broker which is away or stalls; small
readers of what a user sees (intake records, Prometheus metrics, ``rabbitmqctl``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from ingest import envelope
from ingest.app import create_app
from ingest.envelope import Record
from ingest.names import Names
from ingest.settings import Settings
from tests.support import (
    AMQP_URL,
    POSTBACKS,
    REDIS_URL,
    ROOT,
    env_for,
    free_port,
    take_all,
    wait_http,
)
from worker.metrics import WorkerMetrics
from worker.stores import open_stores
from worker.worker import Worker

RABBIT_PORT = 5672


def settings_for(namespace: str, **values: Any) -> Settings:
    """Settings as a user would configure them for ``namespace`` (127.0.0.1 only)."""
    base: dict[str, Any] = {
        "amqp_url": AMQP_URL,
        "namespace": namespace,
        "host": "127.0.0.1",
        "port": 0,
        "confirm_timeout": 5.0,
        "metrics_port": free_port(),
    }
    base.update(values)
    return Settings(**base)


def closed_port_url() -> str:
    """An AMQP URL where nothing listens."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


@contextlib.asynccontextmanager
async def receiver(settings: Settings, ready: bool = True) -> AsyncIterator[str]:
    """``create_app(settings)`` served on a real port of 127.0.0.1; yields its base URL.

    With ``ready`` the URL is yielded once ``/readyz`` answers 200 (broker link up).
    """
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        if ready:
            await wait_http(f"{base}/readyz", 200, timeout=15)
        yield base
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    """One worker consuming ``NS.intake`` until the block ends, with the dedup store users
    run in production: Redis (the local one unless ``settings`` names another; its keys are
    under the namespace and deleted with it)."""
    if settings.redis_url is None:
        settings = dataclasses.replace(settings, redis_url=REDIS_URL)
    assert settings.redis_url is not None
    stores = open_stores(settings)
    running = Worker(settings, stores.dedup, WorkerMetrics(), stores.lifecycles)
    task = asyncio.create_task(running.run())
    try:
        async with asyncio.timeout(15):
            while not running.ready:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield running
    finally:
        running.stop()
        try:
            await asyncio.wait_for(task, 15)
        except TimeoutError:
            task.cancel()
        await stores.close()


@dataclass
class Pipeline:
    """A receiver and a worker of one namespace, both in this process."""

    url: str
    settings: Settings
    worker: Worker

    @property
    def postbacks(self) -> str:
        return f"{self.url}/postbacks"


@contextlib.asynccontextmanager
async def pipeline(namespace: str, **values: Any) -> AsyncIterator[Pipeline]:
    settings = settings_for(namespace, **values)
    async with receiver(settings) as url, worker(settings) as running:
        yield Pipeline(url, settings, running)


async def intake_records(namespace: str) -> list[Record]:
    """Every postback now in ``NS.intake`` (the messages are taken off the queue)."""
    messages = await take_all(Names(namespace).intake)
    return [record for message in messages for record in envelope.unpack(message.body)]


async def wait_count(namespace: str, queue: str, count: int, timeout: float = 15) -> int:
    """Poll the message count of ``queue`` until it is ``count``; returns the last count."""
    seen = -1
    async with await aio_pika.connect(AMQP_URL) as connection:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelClosed:  # not declared yet
                await asyncio.sleep(0.1)
                continue
            seen = declared.declaration_result.message_count or 0
            await channel.close()
            if seen == count:
                return seen
            await asyncio.sleep(0.05)
    return seen


async def publish_raw(
    queue: str,
    body: bytes,
    content_type: str | None = None,
    headers: dict[str, Any] | None = None,
    message_id: str | None = None,
    amqp_url: str = AMQP_URL,
) -> None:
    """Put a message straight into ``queue`` (through the default exchange), confirmed."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                content_type=content_type,
                message_id=message_id,
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=queue,
        )


async def quarantined(
    namespace: str, count: int, timeout: float = 15
) -> list[AbstractIncomingMessage]:
    """The messages of ``NS.quarantine`` once it holds ``count`` (taken off the queue)."""
    queue = Names(namespace).quarantine
    await wait_count(namespace, queue, count, timeout)
    return await take_all(queue)


async def drain_events(namespace: str, queue: str) -> list[dict[str, Any]]:
    """The JSON bodies of every message now in ``queue``, in order (taken off the queue)."""
    return [orjson.loads(message.body) for message in await take_all(queue)]


def expected_event_id(event: dict[str, Any]) -> str:
    """The contract's identity, computed here independently of the project's code: the event
    without event_id/format/received_at/lifecycle, schema counted as 1."""
    left_out = ("event_id", "format", "received_at", "lifecycle")
    identity = {k: v for k, v in event.items() if k not in left_out}
    identity["schema"] = 1
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample ``name`` in Prometheus text; 0 when absent."""
    match = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str


async def postbacks(
    namespace: str, *args: str, timeout: float = 30, **env: str | int | None
) -> Finished:
    """Run a short ``postbacks`` command to its end, as a user would from a shell."""
    process = await asyncio.create_subprocess_exec(
        *POSTBACKS,
        *args,
        env=env_for(namespace, **env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"postbacks {' '.join(args)} did not finish in {timeout}s") from None
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


class TcpProxy:
    """A TCP relay to RabbitMQ: absent until :meth:`start`, and able to stall (:meth:`freeze`)
    so the broker's answers, confirms included, stop arriving."""

    def __init__(self, target_port: int = RABBIT_PORT) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        self._flowing.set()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self._writers += [client_w, broker_w]
        for reader, writer in ((client_r, broker_w), (broker_r, client_w)):
            task = asyncio.create_task(self._pump(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def lines_of(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def all_codes(received: Sequence[Any]) -> list[str]:
    """The ``code`` of each event in a list of :class:`tests.support.Received`."""
    return sorted(str(item.event["code"]) for item in received)
