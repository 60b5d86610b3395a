"""Operator commands that talk to RabbitMQ: topology, subscribe, replay, tail, stats."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import Any, TextIO

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from ingest import envelope, topology
from ingest.envelope import Record
from ingest.names import SUBSCRIBER_NAME
from ingest.settings import Settings
from worker.worker import records_of


async def declare_topology(settings: Settings) -> None:
    async with await aio_pika.connect(settings.amqp_url, timeout=10) as connection:
        channel = await connection.channel()
        await topology.declare(channel, settings.names)


async def subscribe(settings: Settings, name: str, patterns: list[str]) -> str:
    if not SUBSCRIBER_NAME.match(name):
        raise ValueError(f"subscriber name must be letters, digits, '_', '-', '.': {name!r}")
    async with await aio_pika.connect(settings.amqp_url, timeout=10) as connection:
        channel = await connection.channel()
        await topology.declare(channel, settings.names)
        queue = await topology.subscribe(channel, settings.names, name, patterns)
        return queue.name


def _replayable(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The intake message a quarantined one goes back as.

    A whole intake message quarantined as poison (or dead-lettered by the broker) goes
    back as it was, with its message id, so dedup marks it may hold are its own again. A
    single postback quarantined as invalid goes back as a one-record envelope.
    """
    headers = dict(message.headers or {})
    if message.content_type == envelope.CONTENT_TYPE:
        body = message.body
        count = len(envelope.unpack(body))
        message_id = message.message_id
    else:
        records = records_of(message)
        record = records[0]
        fmt = str(headers.get("x-format") or record.fmt)
        charset_header = headers.get("x-charset")
        charset = str(charset_header) if charset_header else record.charset
        postback_id = str(headers.get("x-postback-id") or record.postback_id)
        received_at = str(headers.get("x-received-at") or record.received_at)
        body = envelope.pack([Record(postback_id, received_at, fmt, charset, record.body)])
        count = 1
        message_id = None
    return aio_pika.Message(
        body,
        content_type=envelope.CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id or uuid.uuid4().hex,
        headers={"x-postbacks": count, "x-replayed": True},
    )


def _progress(out: TextIO, done: int, total: int, width: int = 30) -> None:
    filled = width * done // total if total else width
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    out.flush()


async def replay(
    settings: Settings,
    dry_run: bool = False,
    progress: TextIO | None = sys.stderr,
    on_message: Callable[[AbstractIncomingMessage], None] | None = None,
) -> int:
    """Move each message present in ``NS.quarantine`` now back to ``NS.intake``, once.

    Each move is one AMQP transaction (publish to intake + ack from quarantine), so a crash
    never leaves a message in both places. Returns how many moved (or would move).
    """
    names = settings.names
    async with await aio_pika.connect(settings.amqp_url, timeout=10) as connection:
        channel = await connection.channel(publisher_confirms=False)
        await topology.declare(channel, names)
        quarantine = await channel.declare_queue(names.quarantine, passive=True)
        total = quarantine.declaration_result.message_count or 0
        if dry_run:
            return await _peek(channel, names.quarantine, total, on_message)
        transaction = channel.transaction()
        await transaction.select()
        moved = 0
        while moved < total:
            message = await quarantine.get(no_ack=False, fail=False)
            if message is None:
                break
            if on_message is not None:
                on_message(message)
            await channel.default_exchange.publish(
                _replayable(message), routing_key=names.intake, mandatory=False
            )
            await message.ack()
            await transaction.commit()
            moved += 1
            if progress is not None and (moved % 50 == 0 or moved == total):
                _progress(progress, moved, total)
        if progress is not None and total:
            progress.write("\n")
        return moved


async def _peek(
    channel: AbstractChannel,
    queue_name: str,
    total: int,
    on_message: Callable[[AbstractIncomingMessage], None] | None,
) -> int:
    """Look at the first ``total`` quarantined messages without moving any (dry run)."""
    queue = await channel.declare_queue(queue_name, passive=True)
    seen: list[AbstractIncomingMessage] = []
    while len(seen) < total:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        seen.append(message)
        if on_message is not None:
            on_message(message)
    for message in seen:
        await message.nack(requeue=True)
    return len(seen)


def quarantine_reason(message: AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    reason = headers.get("x-error") or headers.get("x-first-death-reason") or "unknown"
    return reason.decode() if isinstance(reason, bytes) else str(reason)


def human(event: dict[str, Any]) -> str:
    """One readable line per event, for ``postbacks tail --format human``."""
    parts = [
        str(event.get("received_at", "")),
        f"{event.get('code')}",
        f"{event.get('family')}/{event.get('status')}",
        f"to={event.get('to') or '-'}",
        f"tracking={event.get('tracking_id') or '-'}",
    ]
    if event.get("status_details"):
        parts.append(f"details={event['status_details']!r}")
    return "  ".join(parts)


async def tail(
    settings: Settings,
    pattern: str,
    fmt: str,
    stop: asyncio.Event,
    out: TextIO = sys.stdout,
    ready: asyncio.Event | None = None,
) -> int:
    """Print events as they are fanned out, through a temporary queue; returns how many."""
    printed = 0
    async with await aio_pika.connect(settings.amqp_url, timeout=10) as connection:
        channel = await connection.channel()
        events = await topology.declare_events(channel, settings.names)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, routing_key=pattern)
        if ready is not None:
            ready.set()
        async with queue.iterator() as messages:
            getter: asyncio.Task[AbstractIncomingMessage] | None = None
            stopper = asyncio.create_task(stop.wait())
            try:
                while True:
                    getter = asyncio.create_task(messages.__anext__())
                    done, _ = await asyncio.wait(
                        {getter, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        break
                    message = getter.result()
                    await message.ack()
                    if fmt == "human":
                        line = human(orjson.loads(message.body))
                    else:
                        line = message.body.decode()
                    out.write(line + "\n")
                    out.flush()
                    printed += 1
            finally:
                stopper.cancel()
                if getter is not None and not getter.done():
                    getter.cancel()
    return printed
