"""RabbitMQ and Redis helpers of the harness: counting, purging, deleting a namespace.

No management API: counts come from passive ``queue.declare`` (message_count of the
declare-ok: messages ready in the queue, which is every event, since nothing consumes the
bench's subscriber queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

import aio_pika
import aio_pika.abc
import aiormq


class Broker:
    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._chan: aio_pika.abc.AbstractChannel | None = None

    async def connection(self) -> aio_pika.abc.AbstractConnection:
        if self._conn is None or self._conn.is_closed:
            self._conn = await aio_pika.connect(self.amqp_url)
        return self._conn

    async def channel(self) -> aio_pika.abc.AbstractChannel:
        """A shared channel, reopened if a failed command closed it."""
        if self._chan is None or self._chan.is_closed:
            self._chan = await (await self.connection()).channel()
        return self._chan

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed:
            await self._conn.close()
        self._conn = self._chan = None

    async def count(self, queue: str) -> int | None:
        """Messages ready in ``queue``; None if it does not exist."""
        try:
            q = await (await self.channel()).declare_queue(queue, passive=True)
        except (aiormq.exceptions.ChannelNotFoundEntity, aio_pika.exceptions.ChannelClosed):
            self._chan = None
            return None
        result = q.declaration_result
        return int(result.message_count or 0)

    async def purge(self, queue: str) -> int:
        """Purge ``queue``; returns how many messages went."""
        q = await (await self.channel()).declare_queue(queue, passive=True)
        ok = await q.purge()
        return int(ok.message_count or 0)

    async def declare_subscriber(self, events: str, queue: str, pattern: str = "#") -> None:
        """A quorum queue bound to the events exchange (the exchange must exist)."""
        chan = await self.channel()
        q = await chan.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        await q.bind(events, routing_key=pattern)

    async def declare_baseline(self, namespace: str) -> str:
        """The baseline's topology: intake queue, events exchange, subscriber queue."""
        chan = await self.channel()
        await chan.declare_queue(
            f"{namespace}.intake", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await chan.declare_exchange(
            f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        sub = f"{namespace}.sub.bench"
        await self.declare_subscriber(f"{namespace}.events", sub)
        return sub

    async def delete_namespace(self, namespace: str, extra_queues: Iterable[str] = ()) -> None:
        """Delete every queue and exchange of the contract's topology for ``namespace``,
        plus any ``NS.sub.*`` queue ``rabbitmqctl`` can see (best effort)."""
        queues = {
            f"{namespace}.intake",
            f"{namespace}.unrouted",
            f"{namespace}.quarantine",
            f"{namespace}.sub.bench",
            *extra_queues,
            *list_queues_with_prefix(f"{namespace}.sub."),
        }
        conn = await self.connection()
        for queue in sorted(queues):
            with contextlib.suppress(Exception):
                async with conn.channel() as chan:
                    await chan.queue_delete(queue)
        for exchange in (f"{namespace}.events", f"{namespace}.unrouted"):
            with contextlib.suppress(Exception):
                async with conn.channel() as chan:
                    await chan.exchange_delete(exchange)


def list_queues_with_prefix(prefix: str) -> list[str]:
    """Queue names starting with ``prefix`` via ``rabbitmqctl`` (empty if unavailable)."""
    ctl = shutil.which("rabbitmqctl")
    if not ctl:
        return []
    try:
        out = subprocess.run(
            [ctl, "-q", "list_queues", "name", "--no-table-headers"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().startswith(prefix)]


async def delete_redis_keys(redis_url: str | None, namespace: str) -> int:
    """Delete Redis keys whose name contains the namespace (the dedup marks of a bench
    namespace, if the project names them so); the rest expire with the bench's DEDUP_TTL."""
    if not redis_url:
        return 0
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"*{namespace}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(await client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(await client.delete(*batch))
    except Exception:
        return deleted
    finally:
        await client.aclose()
    return deleted


@dataclass(frozen=True, slots=True)
class Waited:
    count: int
    reason: str  # "reached", "stalled" (nothing moved for stall_s) or "timeout"


async def wait_count(
    broker: Broker,
    queue: str,
    target: int,
    *,
    stall_s: float,
    poll_s: float = 0.1,
    timeout_s: float | None = None,
) -> Waited:
    """Poll ``queue`` until it holds ``target`` messages, nothing moved for ``stall_s``, or
    ``timeout_s`` passed."""
    loop = asyncio.get_running_loop()
    last_change = start = loop.time()
    last = -1
    while True:
        count = await broker.count(queue) or 0
        now = loop.time()
        if count != last:
            last, last_change = count, now
        if count >= target:
            return Waited(count, "reached")
        if now - last_change > stall_s:
            return Waited(count, "stalled")
        if timeout_s is not None and now - start > timeout_s:
            return Waited(count, "timeout")
        await asyncio.sleep(poll_s)
