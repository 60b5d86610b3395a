"""Tools of the fault suite: processes wired to the private broker and Redis, a load
generator that remembers every answer, a reader of what reaches downstream, the report."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractIncomingMessage

from ingest import topology
from ingest.names import Names
from ingest.settings import BY_VARIABLE
from tests.schema_check import check_event
from tests.support import Proc, Stack, delete_topology, free_port, postback_json, postback_xml
from worker import timers

from .services import PrivateRabbit, PrivateRedis

CODES = ("N101", "N102", "E101", "N003", "E012", "N401", "X999")


# --- processes ------------------------------------------------------------------------------


@dataclass
class Service:
    """A ``postbacks receive`` or ``postbacks work`` process and the port it serves HTTP on."""

    role: str
    proc: Proc
    port: int
    env: dict[str, str | int | None]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def postbacks(self) -> str:
        return f"{self.base}/postbacks"

    def alive(self) -> bool:
        return self.proc.alive()

    def peak_rss_kib(self) -> int:
        return peak_rss_kib(self.proc.pid)


class Cluster:
    """The processes of one test, wired to the private RabbitMQ and Redis."""

    def __init__(
        self, namespace: str, tmp: Path, rabbit: PrivateRabbit, redis: PrivateRedis
    ) -> None:
        self.namespace = namespace
        self.names = Names(namespace)
        self.rabbit = rabbit
        self.redis = redis
        self.stack = Stack(namespace, tmp)
        self.services: list[Service] = []

    def _start(self, role: str, port: int, env: dict[str, str | int | None]) -> Service:
        full: dict[str, str | int | None] = {
            "AMQP_URL": self.rabbit.url,
            "INGEST_HOST": "127.0.0.1",
            **env,
        }
        if role == "receive":
            full["INGEST_PORT"] = port
        else:
            full.setdefault("REDIS_URL", self.redis.url)
            full["WORKER_METRICS_PORT"] = port
        service = Service(role, self.stack.start(role, **full), port, dict(env))
        self.services.append(service)
        return service

    async def receiver(self, ready: bool = True, **env: str | int | None) -> Service:
        service = self._start("receive", free_port(), env)
        if ready:
            await wait_ready(service)
        return service

    async def worker(self, ready: bool = True, **env: str | int | None) -> Service:
        service = self._start("work", free_port(), env)
        if ready:
            await wait_ready(service)
        return service

    def restart(self, service: Service) -> Service:
        """The same command with the same environment and port (the old one has exited)."""
        return self._start(service.role, service.port, service.env)

    def close(self) -> None:
        self.stack.close()

    def logs(self) -> str:
        return "\n".join(service.proc.output() for service in self.services)


def peak_rss_kib(pid: int) -> int:
    """``VmHWM`` (peak resident set) of a live process, in KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


async def readiness(service: Service) -> tuple[int, dict[str, Any]]:
    """``GET /readyz``: status and JSON body (0 and {} when nothing answers)."""
    timeout = aiohttp.ClientTimeout(total=3)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{service.base}/readyz") as response,
        ):
            text = await response.text()
            body: dict[str, Any] = orjson.loads(text) if text.startswith("{") else {}
            return response.status, body
    except (aiohttp.ClientError, TimeoutError, OSError):
        return 0, {}


async def wait_ready(service: Service, timeout: float = 30) -> float:
    """Seconds until ``/readyz`` answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not service.alive():
            raise AssertionError(f"{service.role} exited:\n{service.proc.output()[-3000:]}")
        status, _ = await readiness(service)
        if status == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{service.role} not ready within {timeout}s")


async def all_ready(services: Iterable[Service], timeout: float = 30) -> float:
    """Seconds until every service answers ``/readyz`` 200."""
    started = time.monotonic()
    await asyncio.gather(*(wait_ready(service, timeout) for service in services))
    return time.monotonic() - started


# --- load ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Shot:
    """One postback sent and what came back."""

    tracking: str
    sent: float
    answered: float
    status: int | None
    error: str | None = None


def valid_postback(tracking: str, index: int) -> tuple[bytes, str]:
    """A distinct, valid postback (XML and JSON in turn), with its content type."""
    code = CODES[index % len(CODES)]
    if index % 2:
        body = postback_json(code, tracking, status="Delivered", to=f"0{index:010d}")
        return body, "application/json"
    return postback_xml(code, tracking, status="Delivered", to=f"0{index:010d}"), "text/xml"


class Load:
    """Sends distinct valid postbacks with bounded concurrency and records every answer.

    Stops after ``count`` postbacks, or when :meth:`stop` is called. A 503 makes that sender
    pause ``backoff`` seconds, as a client honouring Retry-After would (shortened); the
    postback is not sent again, so every tracking id is sent exactly once.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        concurrency: int = 64,
        rate: float | None = None,
        headers: dict[str, str] | None = None,
        backoff: float = 0.05,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.concurrency = concurrency
        self.rate = rate
        self.headers = headers or {}
        self.backoff = backoff
        self.shots: list[Shot] = []
        self._issued = 0
        self._stop = asyncio.Event()
        self._answered = asyncio.Condition()

    def stop(self) -> None:
        self._stop.set()

    @property
    def issued(self) -> int:
        return self._issued

    async def wait_answered(self, count: int, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout), self._answered:
            await self._answered.wait_for(lambda: len(self.shots) >= count)

    async def run(self, count: int | None = None) -> list[Shot]:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        started = time.monotonic()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def sender() -> None:
                while not self._stop.is_set() and (count is None or self._issued < count):
                    index = self._issued
                    self._issued += 1
                    if self.rate is not None:
                        delay = started + index / self.rate - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    shot = await self._send(session, index)
                    async with self._answered:
                        self.shots.append(shot)
                        self._answered.notify_all()
                    if shot.status != 200:
                        await asyncio.sleep(self.backoff)

            await asyncio.gather(*(sender() for _ in range(self.concurrency)))
        return self.shots

    async def _send(self, session: aiohttp.ClientSession, index: int) -> Shot:
        tracking = f"{self.prefix}-{index}"
        body, content_type = valid_postback(tracking, index)
        headers = {**self.headers, "Content-Type": content_type}
        sent = time.monotonic()
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                return Shot(tracking, sent, time.monotonic(), response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Shot(tracking, sent, time.monotonic(), None, type(exc).__name__)

    def statuses(self) -> collections.Counter[int | None]:
        return collections.Counter(shot.status for shot in self.shots)

    def accepted(self) -> set[str]:
        return {shot.tracking for shot in self.shots if shot.status == 200}


# --- downstream ---------------------------------------------------------------------------


@dataclass
class Seen:
    tracking: str | None
    event_id: str  # the message id
    received_at: str
    code: str
    lifecycle: dict[str, Any] | None = None
    routing_key: str = ""


@dataclass
class Downstream:
    """A durable subscriber queue bound ``#`` on ``NS.events``: every event published."""

    amqp_url: str
    names: Names
    events: list[Seen] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)

    async def declare(self) -> None:
        async with await aio_pika.connect(self.amqp_url) as connection:
            channel = await connection.channel()
            await topology.declare(channel, self.names)
            await topology.subscribe(channel, self.names, "faults", ["#"])

    async def collect(
        self,
        expected: Collection[str],
        timeout: float = 60,
        settle: float = 1.5,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Read events until every tracking id in ``expected`` was seen and ``until()``
        holds (or ``timeout``), then ``settle`` seconds more to catch any late duplicate."""
        missing = set(expected) - self.trackings()

        def done() -> bool:
            return not missing and (until is None or until())

        complete = asyncio.Event()
        if done():
            complete.set()

        nonconforming: list[str] = []

        async def on_message(message: AbstractIncomingMessage) -> None:
            if message.redelivered and str(message.message_id) in self.seen_ids:
                # Recorded once already, its ack lost when this reader stopped: the queue
                # handing it out again is not a second publish (that one comes as new).
                await message.ack()
                return
            self.seen_ids.add(str(message.message_id))
            event = orjson.loads(message.body)
            try:
                check_event(event)
            except AssertionError as exc:  # raised here it would only be logged
                nonconforming.append(str(exc))
            tracking = event.get("tracking_id")
            self.events.append(
                Seen(
                    tracking,
                    str(message.message_id),
                    event["received_at"],
                    event["code"],
                    event.get("lifecycle"),
                    str(message.routing_key),
                )
            )
            missing.discard(tracking)
            await message.ack()  # only once recorded: anything still in flight goes back
            if done():
                complete.set()

        async with await aio_pika.connect(self.amqp_url) as connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1000)
            queue = await channel.declare_queue(self.names.subscriber("faults"), passive=True)
            # Manual acks: with no_ack the broker would push every ready event at once, and
            # those still in flight when the consumer is cancelled would be gone unread.
            tag = await queue.consume(on_message, no_ack=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(complete.wait(), timeout)
            await asyncio.sleep(settle)
            await queue.cancel(tag)
        assert not nonconforming, f"{len(nonconforming)} event(s): {nonconforming[0]}"

    def trackings(self) -> set[str]:
        return {seen.tracking for seen in self.events if seen.tracking is not None}

    def with_code(self, code: str) -> set[str]:
        """The tracking ids of the events of ``code`` read."""
        return {s.tracking for s in self.events if s.code == code and s.tracking is not None}

    async def wait_for(
        self, code: str, trackings: Collection[str], timeout: float = 60
    ) -> list[str]:
        """Read events until each of ``trackings`` has one of ``code``, at most ``timeout``
        seconds; those still without one."""
        wanted = set(trackings)
        await self.collect((), timeout, settle=0, until=lambda: wanted <= self.with_code(code))
        return sorted(wanted - self.with_code(code))

    def count_by_tracking(self) -> collections.Counter[str | None]:
        return collections.Counter(seen.tracking for seen in self.events)


@dataclass(frozen=True)
class Tally:
    sent: int
    ok: int
    downstream: int
    lost: int
    duplicates: int
    lost_ids: tuple[str, ...]
    duplicate_ids: tuple[str, ...]
    unasked: int  # events of postbacks that were not answered 200 (allowed: at most once)


def tally(shots: Iterable[Shot], downstream: Downstream) -> Tally:
    shots = list(shots)
    accepted = {shot.tracking for shot in shots if shot.status == 200}
    ours = {shot.tracking for shot in shots}
    counts = downstream.count_by_tracking()
    lost = sorted(accepted - set(counts))
    duplicates = sorted(str(t) for t, n in counts.items() if n > 1)
    unasked = sum(1 for t in counts if t in ours and t not in accepted)
    return Tally(
        sent=len(shots),
        ok=len(accepted),
        downstream=sum(n for t, n in counts.items() if t in ours),
        lost=len(lost),
        duplicates=sum(n - 1 for n in counts.values() if n > 1),
        lost_ids=tuple(lost[:10]),
        duplicate_ids=tuple(duplicates[:10]),
        unasked=unasked,
    )


# --- lifecycles and receipt timeouts (contract section 6) ----------------------------------

TIMED_OUT_KEY = "mms_mt.delivery.timed_out.timeout"


def twice(events: Iterable[Seen]) -> list[str]:
    """Message ids read more than once: events published twice."""
    counts = collections.Counter(seen.event_id for seen in events)
    return sorted(message_id for message_id, n in counts.items() if n > 1)


@dataclass(frozen=True)
class Lifecycles:
    """What section 6 says of the events of some delivery lifecycles, each started by one
    N101 (sent) and, for those in ``answered``, closed by one N102 (delivered)."""

    timeouts: int  # timed_out events read
    expected_timeouts: int  # lifecycles still open when their timer came due
    receipt_first: int  # answered lifecycles whose N102 came before the timeout
    late_sent: int  # answered lifecycles whose N101 was applied after their N102
    problems: tuple[str, ...]


def check_lifecycles(
    events: Iterable[Seen], trackings: Collection[str], answered: Collection[str]
) -> Lifecycles:
    """Each tracking id of ``trackings`` has its N101, its N102 when in ``answered``, and
    exactly one ``timed_out`` event when its lifecycle was not final when the timer came
    due: never answered, or its N102 applied after the timeout (the N102's
    ``lifecycle.previous`` says ``timed_out``), never when the N102 came first. Seqs
    distinct, from 1; the event with the highest says the final state; a late N101 is
    stale; every ``timed_out`` event as the contract builds it."""
    mine: dict[str, list[Seen]] = {tracking: [] for tracking in trackings}
    for read in events:
        if read.tracking in mine:
            mine[read.tracking].append(read)
    problems: list[str] = []
    timeouts = expected = receipt_first = late_sent = 0
    for tracking, seen in sorted(mine.items()):
        codes = collections.Counter(s.code for s in seen)
        wanted_codes = {"N101": 1, "N102": 1 if tracking in answered else 0}
        if any(codes[code] != n for code, n in wanted_codes.items()):
            problems.append(f"{tracking}: events {dict(codes)}")
            continue
        steps = {s.event_id: s.lifecycle or {} for s in seen}
        seqs = sorted(int(step.get("seq", 0)) for step in steps.values())
        if seqs[0] != 1 or len(set(seqs)) != len(seqs):
            problems.append(f"{tracking}: lifecycle seqs {seqs}")
            continue
        by_code = {s.code: s for s in seen}
        sent = by_code["N101"].lifecycle or {}
        receipt = by_code["N102"].lifecycle if "N102" in by_code else None
        if receipt is None:
            opened = True
        elif receipt["seq"] < sent["seq"]:
            opened = False  # first event final: no timer armed
            late_sent += 1
            if not (sent["stale"] and sent["current"] == "delivered"):
                problems.append(f"{tracking}: the N101 after its N102 is not stale: {sent}")
        else:
            opened = receipt["previous"] == "timed_out"
            receipt_first += 0 if opened else 1
        expected += 1 if opened else 0
        found = [s for s in seen if s.code == "TIMEOUT"]
        timeouts += len(found)
        if len(found) != (1 if opened else 0):
            problems.append(
                f"{tracking}: {len(found)} timed_out events for a lifecycle "
                + ("open when its timer came due" if opened else "final before its timer")
            )
        for timeout in found:
            step = timeout.lifecycle or {}
            if timeout.routing_key != TIMED_OUT_KEY or (
                step.get("previous"),
                step.get("current"),
                step.get("final"),
                step.get("stale"),
            ) != ("sent", "timed_out", True, False):
                problems.append(f"{tracking}: timed_out event {timeout.routing_key} {step}")
        last = max(seen, key=lambda s: int((s.lifecycle or {})["seq"])).lifecycle or {}
        final_state = "delivered" if receipt is not None else "timed_out"
        if (last.get("current"), last.get("final")) != (final_state, True):
            problems.append(f"{tracking}: the highest seq says {last}, not {final_state}")
    return Lifecycles(timeouts, expected, receipt_first, late_sent, tuple(problems))


def lifecycle_tally(downstream: Downstream, sent: int, result: Lifecycles) -> Tally:
    """A report row's counts for a lifecycle test: postbacks sent (all answered 200),
    events read, lifecycles not as section 6 says (as "lost"), events read twice."""
    doubled = twice(downstream.events)
    return Tally(
        sent=sent,
        ok=sent,
        downstream=len(downstream.events),
        lost=len(result.problems),
        duplicates=len(doubled),
        lost_ids=(),
        duplicate_ids=tuple(doubled[:10]),
        unasked=0,
    )


async def copy_timers(
    amqp_url: str, names: Names, seconds: int, events: Iterable[Seen], trackings: Collection[str]
) -> int:
    """A second receipt timer, into ``NS.waiting-Ns``, for the lifecycle of each tracking id
    of ``trackings`` that an N101 started (as read in ``events``): the broker dead-letters
    a timer at least once, so a worker may get one twice. Returns how many."""
    firsts = [
        seen
        for seen in events
        if seen.tracking in trackings
        and seen.code == "N101"
        and (seen.lifecycle or {}).get("seq") == 1
    ]
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        for seen in firsts:
            event = {
                "origin": "MMS_MT",
                "family": "delivery",
                "tracking_id": seen.tracking,
                "event_id": seen.event_id,
            }
            await channel.default_exchange.publish(
                timers.arm(event, seconds), routing_key=names.waiting(seconds)
            )
    return len(firsts)


DEFAULT_DLR_TIMEOUT = int(BY_VARIABLE["DLR_TIMEOUT"].default or 0)  # of a worker without one


def timer_queues(names: Names, services: Iterable[Service]) -> list[str]:
    """``NS.timers`` and the ``NS.waiting-Ns`` queue of each ``DLR_TIMEOUT`` the workers
    among ``services`` ran with: every worker declares them."""
    seconds = {
        int(service.env.get("DLR_TIMEOUT") or DEFAULT_DLR_TIMEOUT)
        for service in services
        if service.role == "work"
    }
    return [names.timers, *(names.waiting(n) for n in sorted(seconds) if n > 0)]


async def delete_namespace(amqp_url: str, names: Names, queues: Collection[str] = ()) -> None:
    """The standard queues and exchanges of ``names``, ``NS.sub.faults`` and ``queues``."""
    with contextlib.suppress(Exception):  # the private broker may be down already
        await delete_topology(names, [names.subscriber("faults"), *queues], amqp_url)


# --- report -------------------------------------------------------------------------------


@dataclass
class Row:
    fault: str
    tally: Tally
    recovery: str
    notes: str = ""


@dataclass
class Report:
    """The table of the suite, rewritten to ``path`` after every test that adds to it."""

    path: Path
    broker: str
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)  # when the last test reported
    rows: list[Row] = field(default_factory=list)
    rss: dict[str, int] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.last = time.monotonic()
        self.rows.append(row)
        self.write()

    def note_rss(self, role: str, kib: int) -> None:
        self.rss[role] = max(self.rss.get(role, 0), kib)
        self.write()

    def note(self, line: str) -> None:
        self.last = time.monotonic()
        self.extra.append(line)
        self.write()

    def render(self) -> str:
        lines = [
            "# Fault-injection report",
            "",
            f"Broker and Redis under test: {self.broker}.",
            f"Fault suite run time (including starting the private broker): "
            f"{self.last - self.started:.0f} s.",
            "",
            "| fault | postbacks sent | answered 200 | events downstream | lost | duplicates "
            "| recovery time | notes |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for row in self.rows:
            t = row.tally
            lines.append(
                f"| {row.fault} | {t.sent} | {t.ok} | {t.downstream} | {t.lost} "
                f"| {t.duplicates} | {row.recovery} | {row.notes} |"
            )
        if self.rss:
            lines += ["", "Peak RSS (VmHWM):", ""]
            lines += [f"- {role}: {kib / 1024:.1f} MiB" for role, kib in sorted(self.rss.items())]
        if self.extra:
            lines += ["", *self.extra]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.render())
