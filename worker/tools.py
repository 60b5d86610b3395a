"""Operator commands that talk to RabbitMQ: topology, subscribe, replay, tail, stats."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from ingest import envelope, topology
from ingest.envelope import Record
from ingest.names import SUBSCRIBER_NAME
from ingest.settings import Settings
from worker.worker import records_of

log = logging.getLogger("postbacks.tools")


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


# Quarantined messages moved per AMQP transaction. Keep it under 32: a quorum queue's
# client in the broker holds back settlements past 32 in flight and drops the held-back
# ones when the connection closes right after the commit, which would leave a moved
# message in quarantine as well (seen with 100 on RabbitMQ 3.10: 17 of 250 stayed).
REPLAY_BATCH = 16
RETURN_WAIT = 10.0  # seconds a dry run waits for the broker to take its messages back


class Progress:
    """A progress bar on a terminal (redrawn in place, at most ten times a second), or a
    plain line every tenth of the way when the output is a file or a pipe."""

    def __init__(self, out: TextIO, total: int, verb: str = "replay", width: int = 30) -> None:
        self.out = out
        self.total = total
        self.verb = verb
        self.width = width
        self.started = time.monotonic()
        self.drawn = 0.0
        self.step = 0  # tenths of the way already reported (files and pipes)
        isatty = getattr(out, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False

    def line(self, done: int) -> str:
        total = self.total
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        share = min(done / total, 1.0) if total else 1.0
        filled = int(self.width * share)
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"{self.verb} [{bar}] {done}/{total} {share:4.0%}  {rate:,.0f} msg/s"
        if done < total and rate > 0:
            text += f"  ETA {_duration((total - done) / rate)}"
        elif done >= total:
            text += f"  in {_duration(elapsed)}"
        return text

    def update(self, done: int) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self.drawn < 0.1:
                return
            self.drawn = now
            self.out.write("\r" + self.line(done) + "\x1b[K")
        else:
            step = 10 * done // self.total if self.total else 10
            if step <= self.step or done >= self.total:
                return  # the last line is written by finish()
            self.step = step
            self.out.write(self.line(done) + "\n")
        self.out.flush()

    def finish(self, done: int) -> None:
        if self.tty:
            self.out.write("\r" + self.line(done) + "\x1b[K\n")
        else:
            self.out.write(self.line(done) + "\n")
        self.out.flush()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


async def replay(
    settings: Settings,
    dry_run: bool = False,
    progress: TextIO | None = sys.stderr,
    on_message: Callable[[AbstractIncomingMessage], None] | None = None,
    listing: TextIO | None = None,
) -> int:
    """Move each message present in ``NS.quarantine`` now back to ``NS.intake``, once.

    Moves go in AMQP transactions (publishes to intake + acks from quarantine, committed
    together every ``REPLAY_BATCH`` messages), so a crash never leaves a message in both
    places. With ``dry_run`` nothing moves: each message is looked at, written to
    ``listing`` with its reason when given, and put back. Returns how many moved (or would).
    """
    names = settings.names
    async with await aio_pika.connect(settings.amqp_url, timeout=10) as connection:
        channel = await connection.channel(publisher_confirms=False)
        await topology.declare(channel, names)
        quarantine = await channel.declare_queue(names.quarantine, passive=True)
        total = quarantine.declaration_result.message_count or 0
        if dry_run:
            return await _peek(connection, names.quarantine, total, on_message, listing)
        bar = Progress(progress, total) if progress is not None and total else None
        transaction = channel.transaction()
        await transaction.select()
        moved = pending = 0
        while moved + pending < total:
            message = await quarantine.get(no_ack=False, fail=False)
            if message is None:
                break
            if on_message is not None:
                on_message(message)
            await channel.default_exchange.publish(
                _replayable(message), routing_key=names.intake, mandatory=False
            )
            await message.ack()
            pending += 1
            if pending >= REPLAY_BATCH:
                await transaction.commit()
                moved, pending = moved + pending, 0
                if bar is not None:
                    bar.update(moved)
        if pending:
            await transaction.commit()
            moved += pending
        if bar is not None:
            bar.finish(moved)
        return moved


async def _peek(
    connection: AbstractConnection,
    queue_name: str,
    total: int,
    on_message: Callable[[AbstractIncomingMessage], None] | None,
    listing: TextIO | None = None,
) -> int:
    """Look at the first ``total`` quarantined messages without moving any (dry run).

    Each is held unacknowledged on a channel of its own while the others are read; closing
    that channel gives them all back at once (not one return per message: a quorum queue
    client holds back returns past 32 in flight, and would drop those on close anyway).
    Then it waits, a bounded time, until the queue shows them again, so a ``stats`` or a
    ``replay`` right after counts them."""
    looking = await connection.channel()
    queue = await looking.declare_queue(queue_name, passive=True)
    seen = 0
    if listing is not None and total:
        listing.write(LISTING_HEADER + "\n")
    try:
        while seen < total:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            seen += 1
            if on_message is not None:
                on_message(message)
            if listing is not None:
                listing.write(describe(message, seen) + "\n")
    finally:
        await looking.close()
    counting = await connection.channel()
    deadline = time.monotonic() + RETURN_WAIT
    while time.monotonic() < deadline:
        back = await counting.declare_queue(queue_name, passive=True)
        if (back.declaration_result.message_count or 0) >= seen:
            break
        await asyncio.sleep(0.05)
    if listing is not None:
        listing.flush()
    return seen


LISTING_HEADER = f"{'#':>5}  {'postbacks':>9}  {'received_at':<27}  {'id':<32}  reason"


def quarantine_reason(message: AbstractIncomingMessage) -> str:
    """Why a message is in quarantine: the worker's header ``x-error``, else the broker's
    dead-letter reason (``x-first-death-reason``, e.g. ``delivery_limit``) and queue."""
    headers = message.headers or {}
    error = headers.get("x-error")
    if error:
        return _text(error)
    reason = headers.get("x-first-death-reason")
    if reason:
        where = headers.get("x-first-death-queue")
        source = f" from {_text(where)}" if where else ""
        return f"dead-lettered by the broker{source}: {_text(reason)}"
    return "unknown (no x-error or x-first-death-reason header)"


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def describe(message: AbstractIncomingMessage, position: int) -> str:
    """One line of ``postbacks replay --dry-run``: position, postbacks carried, when the
    (first) postback was received, its id, and the reason."""
    headers = message.headers or {}
    received = headers.get("x-received-at")
    postback_id = headers.get("x-postback-id") or message.message_id
    count: object = headers.get("x-postbacks", 1)
    if message.content_type == envelope.CONTENT_TYPE:
        try:
            records = envelope.unpack(message.body)
        except envelope.BadEnvelope:
            records = []
        if records:
            count = len(records)
            received = received or records[0].received_at
            postback_id = postback_id or records[0].postback_id
    return (
        f"{position:>5}  {_text(count):>9}  {_text(received or '-'):<27}  "
        f"{_text(postback_id or '-'):<32}  {quarantine_reason(message)}"
    )


def human(event: dict[str, Any]) -> str:
    """One readable line per event, for ``postbacks tail --format human``:
    when received, origin and code, family/status (and whether final), the numbers, the
    tracking id, and Sinch's own wording."""

    def value(key: str) -> str:
        item = event.get(key)
        return "-" if item is None or item == "" else str(item)

    parts = [
        value("received_at"),
        f"{value('origin')} {value('code')}",
        f"{value('family')}/{value('status')}" + (" final" if event.get("final") else ""),
    ]
    if event.get("from"):
        parts.append(f"from={value('from')}")
    parts.append(f"to={value('to')}")
    parts.append(f"tracking={value('tracking_id')}")
    if event.get("client_reference"):
        parts.append(f"ref={value('client_reference')}")
    if event.get("status_text"):
        parts.append(f"status={value('status_text')!r}")
    if event.get("status_details"):
        parts.append(f"details={value('status_details')!r}")
    files = event.get("content_files")
    if isinstance(files, list) and files:
        parts.append(f"files={len(files)}")
    return "  ".join(parts)


def _line(body: bytes, fmt: str) -> str:
    """What ``tail`` prints for one message: the event as sent (``json``) or one readable
    line (``human``); a body that is no JSON object is shown as text, never dropped."""
    if fmt == "human":
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            return human(event)
        return "(not an event) " + body.decode(errors="replace")
    return body.decode(errors="replace")


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
        log.info(
            "tail: printing events (Ctrl-C stops)",
            extra={"exchange": settings.names.events, "pattern": pattern, "queue": queue.name},
        )
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
                    out.write(_line(message.body, fmt) + "\n")
                    out.flush()
                    printed += 1
            finally:
                stopper.cancel()
                if getter is not None and not getter.done():
                    getter.cancel()
    return printed
