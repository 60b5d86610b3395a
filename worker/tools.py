"""Operator commands that talk to RabbitMQ: topology, subscribe, replay, tail, stats."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from ingest import broker, topology
from ingest.names import SUBSCRIBER_NAME
from ingest.settings import Settings
from worker import quarantine
from worker.quarantine import LISTING_HEADER, NotReplayable, describe

log = logging.getLogger("postbacks.tools")


async def declare_topology(settings: Settings) -> None:
    async with broker.session(settings.amqp_urls) as connection:
        channel = await connection.channel()
        await topology.declare(channel, settings.names, settings.history)
        await topology.declare_timers(channel, settings.names, settings.dlr_timeout)


async def subscribe(settings: Settings, name: str, patterns: list[str]) -> str:
    if not SUBSCRIBER_NAME.match(name):
        raise ValueError(f"subscriber name must be letters, digits, '_', '-', '.': {name!r}")
    async with broker.session(settings.amqp_urls) as connection:
        channel = await connection.channel()
        await topology.declare(channel, settings.names, settings.history)
        queue = await topology.subscribe(channel, settings.names, name, patterns)
        return queue.name


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


@dataclass(frozen=True, slots=True)
class Selection:
    """Which quarantined messages a replay takes: reason containing ``match``, at most
    ``limit`` of them (``None``: no bound)."""

    match: str | None = None
    limit: int | None = None

    def wants(self, message: AbstractIncomingMessage) -> bool:
        return self.match is None or self.match in quarantine.reason(message)

    def full(self, taken: int) -> bool:
        return self.limit is not None and taken >= self.limit


async def replay(
    settings: Settings,
    dry_run: bool = False,
    progress: TextIO | None = sys.stderr,
    on_message: Callable[[AbstractIncomingMessage], None] | None = None,
    listing: TextIO | None = None,
    match: str | None = None,
    limit: int | None = None,
    report: TextIO | None = sys.stderr,
) -> int:
    """Move each message present in ``NS.quarantine`` now back to ``NS.intake``, once:
    those whose reason contains ``match`` (all when ``None``), at most ``limit``.

    Moves go in AMQP transactions (publishes to intake + acks from quarantine, committed
    together every ``REPLAY_BATCH`` messages), so a crash never leaves a message in both
    places. A message that cannot go back (not a postback batch at all) is written to
    ``report`` with its reason and left in place, as is every message not selected; neither
    stops the others. With ``dry_run`` nothing moves: each selected message is written to
    ``listing`` with its reason when given. Returns how many moved (or would).
    """
    names = settings.names
    selection = Selection(match, limit)
    async with broker.session(settings.amqp_urls) as connection:
        channel = await connection.channel(publisher_confirms=False)
        await topology.declare(channel, names, settings.history)
        held = await channel.declare_queue(names.quarantine, passive=True)
        total = held.declaration_result.message_count or 0
        if dry_run:
            return await _peek(connection, names.quarantine, total, on_message, listing, selection)
        if selection.full(0):
            return 0
        bar = Progress(progress, total) if progress is not None and total else None
        transaction = channel.transaction()
        await transaction.select()
        moved = pending = seen = left = 0
        while seen < total and not selection.full(moved + pending):
            message = await held.get(no_ack=False, fail=False)
            if message is None:
                break
            seen += 1
            if not selection.wants(message):
                left += 1  # stays unacked: given back when the channel closes
                continue
            try:
                again, _count = quarantine.replayable(message)
            except NotReplayable as exc:
                left += 1
                if report is not None:
                    report.write(f"left in quarantine: {describe(message, seen)} ({exc})\n")
                continue
            if on_message is not None:
                on_message(message)
            await channel.default_exchange.publish(again, routing_key=names.intake, mandatory=False)
            await message.ack()
            pending += 1
            if pending >= REPLAY_BATCH:
                await transaction.commit()
                moved, pending = moved + pending, 0
                if bar is not None:
                    bar.update(seen)
        if pending:
            await transaction.commit()
            moved += pending
        if bar is not None:
            bar.finish(total)
        if left:
            await channel.close()  # gives back, at once, every message left in place
            await _wait_back(connection, names.quarantine, left)
        return moved


async def _wait_back(connection: AbstractConnection, queue_name: str, count: int) -> None:
    """Wait, a bounded time, until the queue shows ``count`` messages again, so that a
    ``stats`` or a ``replay`` right after counts the messages given back."""
    counting = await connection.channel()
    deadline = time.monotonic() + RETURN_WAIT
    while time.monotonic() < deadline:
        back = await counting.declare_queue(queue_name, passive=True)
        if (back.declaration_result.message_count or 0) >= count:
            break
        await asyncio.sleep(0.05)


async def _peek(
    connection: AbstractConnection,
    queue_name: str,
    total: int,
    on_message: Callable[[AbstractIncomingMessage], None] | None,
    listing: TextIO | None = None,
    selection: Selection | None = None,
) -> int:
    """Look at the first ``total`` quarantined messages without moving any (dry run); list
    the selected ones and return how many of them a replay would move.

    Each is held unacknowledged on a channel of its own while the others are read; closing
    that channel gives them all back at once (not one return per message: a quorum queue
    client holds back returns past 32 in flight, and would drop those on close anyway)."""
    selection = selection or Selection()
    looking = await connection.channel()
    queue = await looking.declare_queue(queue_name, passive=True)
    seen = listed = movable = 0
    if listing is not None and total:
        listing.write(LISTING_HEADER + "\n")
    try:
        while seen < total and not selection.full(movable):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            seen += 1
            if not selection.wants(message):
                continue
            listed += 1
            if on_message is not None:
                on_message(message)
            try:
                quarantine.replayable(message)
            except NotReplayable as exc:
                note = f"  (would be left in place: {exc})"
            else:
                movable += 1
                note = ""
            if listing is not None:
                listing.write(describe(message, listed) + note + "\n")
    finally:
        await looking.close()
    await _wait_back(connection, queue_name, seen)
    if listing is not None:
        listing.flush()
    return movable


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
    async with broker.session(settings.amqp_urls) as connection:
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
