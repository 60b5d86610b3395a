"""The event history (contract section 9): ``postbacks backfill``, ``postbacks tail --since``,
what ``postbacks stats`` says of ``NS.history``, and what a worker's metrics say of it.

``NS.history`` is a RabbitMQ stream bound to ``NS.events`` with ``#``: every event is
appended as it is published. A reader attaches with the consumer argument
``x-stream-offset`` set to a timestamp; a stream consumer must set a prefetch (basic.qos)
and ack, which here is only credit for the next messages, so memory stays bounded by the
prefetch whatever the range.

Where a read starts and stops. The broker attaches a timestamp reader at the start of the
chunk that holds it (chunk granularity, whole seconds), and events are appended in the
order workers commit them, which is only nearly the order of ``received_at``. So a read
attaches ``SKEW`` seconds before ``--since``, keeps the events whose ``received_at`` lies in
``[since, until]``, and stops at the first event received more than ``SKEW`` seconds after
``until``, or once the stream has nothing more for ``IDLE`` seconds (its end).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from urllib.parse import quote

import aio_pika
import aiohttp
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from ingest import broker, topology
from ingest.history import History, TopicFilter
from ingest.names import Names
from ingest.settings import Settings, mask_url
from worker import tools
from worker.metrics import WorkerMetrics

SKEW = 60.0  # seconds events may be appended out of received_at order
IDLE = 1.5  # seconds with nothing delivered: the end of the stream
PREFETCH = 2000  # stream messages in flight to a reader (bounds its memory)
WINDOW = 500  # backfill publishes awaiting their confirms at a time
BACKFILL_HEADER = "x-backfill"
_RECEIVED_AT = re.compile(rb'"received_at":"([^"]{10,40})"')


class Refused(Exception):
    """One line for the operator, exit status 1 (unknown subscriber, no history, bad time)."""


def parse_time(text: str, option: str) -> datetime:
    """ISO 8601 (``2026-05-01``, ``2026-05-01T10:00``, ``...Z``, ``...+02:00``); no offset
    means UTC."""
    value = text.strip()
    try:
        if not value or not value[0].isdigit():
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(
            f"{option}: not a time (ISO 8601, e.g. 2026-05-01T10:00:00Z): {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def received_at(message: AbstractIncomingMessage) -> datetime | None:
    """When the event was received: its ``received_at`` (to the microsecond), else the
    message's ``timestamp`` (whole seconds)."""
    found = _RECEIVED_AT.search(message.body, 0, 4096) or _RECEIVED_AT.search(message.body)
    if found is not None:
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(found.group(1).decode())
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    stamp = message.timestamp
    if stamp is None:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@dataclass(slots=True)
class Outcome:
    read: int = 0  # events of the range read from the history
    delivered: int = 0  # of those, published into the subscriber queue
    matched_patterns: tuple[str, ...] = ()


class Reader:
    """One consumer of ``NS.history`` from a time: messages come through a queue that the
    prefetch bounds; :meth:`next` returns ``None`` once nothing came for ``idle`` s."""

    def __init__(self, channel: AbstractChannel, names: Names, idle: float = IDLE) -> None:
        self.channel = channel
        self.names = names
        self.idle = idle
        self.inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.tag: str | None = None

    async def start(self, offset: datetime | str, prefetch: int = PREFETCH) -> None:
        await self.channel.set_qos(prefetch_count=prefetch)
        queue = await self.channel.declare_queue(self.names.history, passive=True)

        async def deliver(message: AbstractIncomingMessage) -> None:
            self.inbox.put_nowait(message)

        self.tag = await queue.consume(deliver, no_ack=False, arguments={"x-stream-offset": offset})

    async def next(self) -> AbstractIncomingMessage | None:
        try:
            return await asyncio.wait_for(self.inbox.get(), self.idle)
        except TimeoutError:
            return None


async def history_exists(connection: AbstractConnection, names: Names) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_queue(names.history, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    with contextlib.suppress(Exception):
        await channel.close()
    return True


async def ensure_history(connection: AbstractConnection, settings: Settings) -> None:
    """Declare ``NS.history`` when configured (a changed retention raises ``BadSetting``);
    without ``HISTORY_MAX_AGE`` it must exist already, else :class:`Refused`."""
    names = settings.names
    history = settings.history
    if history is not None:
        channel = await connection.channel()
        await topology.declare(channel, names, history)
        with contextlib.suppress(Exception):
            await channel.close()
        return
    if not await history_exists(connection, names):
        raise Refused(
            f"no history: {names.history} does not exist (start the workers with "
            "HISTORY_MAX_AGE set, e.g. 7D; only events published after that are kept)"
        )


async def declare_at_start(settings: Settings) -> None:
    """Every process declares ``NS.history`` at start when ``HISTORY_MAX_AGE`` is set: a
    changed retention stops it (``BadSetting``, exit 2). A broker that cannot be reached
    now is left to the process's own link, which declares it once connected."""
    history = settings.history
    if history is None:
        return
    try:
        async with broker.session(settings.amqp_urls) as connection:
            channel = await connection.channel()
            await topology.declare(channel, settings.names, history)
    except (OSError, ConnectionError, aiormq.exceptions.AMQPConnectionError):
        return


async def subscriber_patterns(settings: Settings, queue: str, management: str | None) -> list[str]:
    """The binding keys ``queue`` has on ``NS.events`` now, from the management API."""
    from worker import stats

    first = settings.amqp_urls[0]
    url = stats.management_url(first, management)
    need = "give the PATTERNs to backfill (the subscriber's bindings are read from the "
    if url is None:
        raise Refused(need + "management API, turned off with --management-url off)")
    base, headers = stats.management_base(url)
    vhost = quote(stats.vhost_of(first), safe="")
    path = f"{base}/api/queues/{vhost}/{quote(queue, safe='')}/bindings"
    try:
        async with (
            aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=stats.MANAGEMENT_TIMEOUT)
            ) as session,
            session.get(path) as answer,
        ):
            if answer.status != 200:
                raise Refused(need + f"management API, which answered HTTP {answer.status})")
            bindings: list[dict[str, Any]] = await answer.json()
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        where = mask_url(url)
        raise Refused(need + f"management API, not reachable at {where}: {reason})") from None
    events = settings.names.events
    patterns = [str(b["routing_key"]) for b in bindings if b.get("source") == events]
    if not patterns:
        raise Refused(f"{queue} has no binding on {events}: give the PATTERNs to backfill")
    return patterns


def copy_for(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The event as it was published, plus ``x-backfill: true`` (the stream's own
    ``x-stream-offset`` header left out)."""
    headers = {k: v for k, v in (message.headers or {}).items() if k != "x-stream-offset"}
    headers[BACKFILL_HEADER] = True
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


class RangeProgress(tools.Progress):
    """:class:`tools.Progress` over the time range (the number of events in it is not
    known ahead): the bar is how far into the range the read is."""

    def __init__(self, out: TextIO, since: datetime, until: datetime) -> None:
        self.since = since
        span = max(int((until - since).total_seconds() * 1000), 1)
        super().__init__(out, span, verb="backfill")
        self.read = 0
        self.delivered = 0

    def at(self, moment: datetime) -> int:
        done = int((moment - self.since).total_seconds() * 1000)
        return min(max(done, 0), self.total)

    def line(self, done: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        share = min(done / self.total, 1.0) if self.total else 1.0
        filled = int(self.width * share)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"{self.verb} [{bar}] {share:4.0%} of the range  read {self.read:,}  "
            f"delivered {self.delivered:,}  {self.read / elapsed:,.0f} events/s"
        )


async def backfill(
    settings: Settings,
    name: str,
    since: datetime,
    until: datetime | None = None,
    patterns: Sequence[str] = (),
    management: str | None = None,
    progress: TextIO | None = sys.stderr,
    stop: asyncio.Event | None = None,
) -> Outcome:
    """Publish into ``NS.sub.NAME`` each event of the history received in ``[since, until]``
    (``until`` default: now) whose routing key matches ``patterns`` (default: the queue's
    bindings now), confirmed, with its own body and properties and ``x-backfill: true``."""
    until = until or datetime.now(UTC)
    if until < since:
        raise Refused(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    names = settings.names
    queue_name = names.subscriber(name)
    async with broker.session(settings.amqp_urls) as connection:
        await ensure_history(connection, settings)
        probe = await connection.channel()
        try:
            await probe.declare_queue(queue_name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise Refused(
                f"no subscriber {name!r}: {queue_name} does not exist "
                f"(make it with `postbacks subscribe {name} PATTERN...`)"
            ) from None
        with contextlib.suppress(Exception):
            await probe.close()
        chosen = list(patterns) or await subscriber_patterns(settings, queue_name, management)
        wanted = TopicFilter(chosen)
        outcome = Outcome(matched_patterns=tuple(wanted.patterns))
        publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
        reader = Reader(await connection.channel(), names)
        await reader.start(since - timedelta(seconds=SKEW))
        bar = RangeProgress(progress, since, until) if progress is not None else None
        stop_after = until + timedelta(seconds=SKEW)
        default = publishing.default_exchange
        pending: list[asyncio.Task[Any]] = []
        last: AbstractIncomingMessage | None = None
        done_at = 0

        async def settle() -> None:
            nonlocal pending, last
            if pending:
                await asyncio.gather(*pending)
                pending = []
            if last is not None:
                await last.ack(multiple=True)
                last = None

        stopping = stop or asyncio.Event()
        while not stopping.is_set() and (message := await reader.next()) is not None:
            last = message
            moment = received_at(message)
            if moment is not None and moment > stop_after:
                break
            if moment is not None and since <= moment <= until:
                outcome.read += 1
                if wanted(message.routing_key or ""):
                    outcome.delivered += 1
                    pending.append(
                        asyncio.ensure_future(
                            default.publish(copy_for(message), routing_key=queue_name)
                        )
                    )
                if bar is not None:
                    done_at = bar.at(moment)
            if len(pending) >= WINDOW or (last.delivery_tag or 0) % WINDOW == 0:
                await settle()
                if bar is not None:
                    bar.read, bar.delivered = outcome.read, outcome.delivered
                    bar.update(done_at)
        await settle()
        if bar is not None:
            bar.read, bar.delivered = outcome.read, outcome.delivered
            bar.finish(bar.total)
        return outcome


# --- tail --since ----------------------------------------------------------------------------


async def tail_since(
    settings: Settings,
    pattern: str,
    since: datetime,
    fmt: str,
    stop: asyncio.Event,
    out: TextIO = sys.stdout,
    ready: asyncio.Event | None = None,
) -> int:
    """Print the events of the history received since ``since``, then go on live.

    No gap, no duplicate at the switch: the live queue is declared and bound *before* the
    history is read, so every event published from then on is in it; events published
    before are in the history, which is read up to its end. The events printed from the
    history that were published after the binding are in the live queue as well: the
    message ids of the history's events received from ``SKEW`` seconds before the binding
    on are remembered (a bounded set), and the live queue skips those, then forgets them
    once the live queue has gone past them."""
    printed = 0
    wanted = TopicFilter([pattern])
    names = settings.names
    async with broker.session(settings.amqp_urls) as connection:
        await ensure_history(connection, settings)
        channel = await connection.channel()
        events = await topology.declare_events(channel, names)
        live = await channel.declare_queue(exclusive=True, auto_delete=True)
        await live.bind(events, routing_key=pattern)
        bound_at = datetime.now(UTC)
        recent: set[str] = set()
        order: deque[str] = deque()
        keep_from = bound_at - timedelta(seconds=SKEW)
        reader = Reader(await connection.channel(), names)
        await reader.start(since - timedelta(seconds=SKEW))
        stop_after = bound_at + timedelta(seconds=SKEW)
        count = 0
        while not stop.is_set() and (message := await reader.next()) is not None:
            count += 1
            moment = received_at(message)
            if count % 200 == 0:
                await message.ack(multiple=True)
            if moment is not None and moment > stop_after:
                break
            if moment is not None and moment < since:
                continue
            if not wanted(message.routing_key or ""):
                continue
            out.write(tools._line(message.body, fmt) + "\n")
            printed += 1
            if message.message_id and (moment is None or moment >= keep_from):
                recent.add(message.message_id)
                order.append(message.message_id)
                if len(order) > 1_000_000:
                    recent.discard(order.popleft())
        out.flush()
        await reader.channel.close()  # the history reader ends with its channel
        if ready is not None:
            ready.set()
        printed += await _live(live, recent, fmt, stop, out)
    return printed


async def _live(
    queue: aio_pika.abc.AbstractQueue, recent: set[str], fmt: str, stop: asyncio.Event, out: TextIO
) -> int:
    printed = 0
    inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def deliver(message: AbstractIncomingMessage) -> None:
        inbox.put_nowait(message)

    await queue.consume(deliver, no_ack=True)
    stopper = asyncio.create_task(stop.wait())
    try:
        while True:
            getter = asyncio.create_task(inbox.get())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            message = getter.result()
            if recent and message.message_id in recent:
                recent.discard(message.message_id)  # printed from the history already
                continue
            if recent:
                recent.clear()  # past the overlap: live order is the stream's order
            out.write(tools._line(message.body, fmt) + "\n")
            out.flush()
            printed += 1
    finally:
        stopper.cancel()
    return printed


# --- stats ---------------------------------------------------------------------------------


async def oldest(connection: AbstractConnection, names: Names) -> datetime | None:
    """``received_at`` of the history's first event (``None`` when it holds none)."""
    reader = Reader(await connection.channel(), names, idle=1.0)
    try:
        await reader.start("first", prefetch=1)
        message = await reader.next()
        return None if message is None else received_at(message)
    finally:
        with contextlib.suppress(Exception):
            await reader.channel.close()


def summary(history: dict[str, Any] | None, first: datetime | None, name: str) -> list[str]:
    """What ``postbacks stats`` prints of the history (``history``: the management API's
    record of ``NS.history``)."""
    if history is None:
        return [f"history: {name} absent (set HISTORY_MAX_AGE to keep events)"]
    arguments = history.get("arguments") or {}
    count = int(history.get("messages") or 0)
    age = arguments.get("x-max-age", "-")
    limit = arguments.get("x-max-length-bytes")
    shown = f"{int(limit):,} bytes" if isinstance(limit, int) else "no byte limit"
    line = f"history: {name} holds {count:,} event(s), kept {age}, at most {shown}"
    if first is None:
        return [line, "         oldest event: none yet"]
    ago = datetime.now(UTC) - first
    hours = ago.total_seconds() / 3600
    return [line, f"         oldest event received {first.isoformat()} ({hours:,.1f} h ago)"]


async def stats_lines(
    settings: Settings, queues: dict[str, dict[str, Any]], reachable: bool
) -> list[str]:
    """The history's lines of ``postbacks stats``: size and oldest event need the
    management API (RabbitMQ tells a stream's size only there)."""
    names = settings.names
    if not reachable:
        return ["history: size and oldest event need the management API"]
    record = queues.get(names.history)
    if record is None:
        return summary(None, None, names.history)
    first = None
    with contextlib.suppress(Exception):
        async with broker.session(settings.amqp_urls) as connection:
            first = await oldest(connection, names)
    return summary(record, first, names.history)


# --- metrics --------------------------------------------------------------------------------


def show_limits(metrics: WorkerMetrics, history: History | None) -> None:
    """Set the gauges of the history's limits, ``HISTORY_MAX_BYTES`` and ``HISTORY_MAX_AGE``
    in seconds; without history they stay 0 (so the alert on the byte limit, in
    deploy/prometheus/alerts.yaml, never fires)."""
    if history is not None:
        metrics.history_max_bytes.set(history.max_bytes)
        metrics.history_max_age_seconds.set(history.max_age_seconds)


def count_appended(
    metrics: WorkerMetrics, history: History | None, bodies: Iterable[bytes]
) -> None:
    """Add the sizes of ``bodies``, events just committed to ``NS.events``, to
    ``postbacks_history_appended_bytes_total`` when the history is on: the stream appended
    each of them. Without history ``bodies`` is not even read."""
    if history is not None:
        metrics.history_appended_bytes.inc(sum(map(len, bodies)))
