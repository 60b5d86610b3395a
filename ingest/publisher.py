"""The receiver's link to RabbitMQ: group commit into ``NS.intake``.

Postbacks arriving together share one persistent message and one publisher confirm. A
batch closes when it is full or as soon as the batch before it is confirmed: under light
load every postback is published on its own, under heavy load the next batch grows while
the previous one waits for its confirm, and it is sent before the confirmed batch's
requests are answered. A postback's future resolves only once its batch is confirmed (or
fsynced into the spool, when one is configured); otherwise it fails with
:class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from ingest import broker, envelope, topology
from ingest.envelope import Record
from ingest.settings import Settings
from ingest.spool import Spool

log = logging.getLogger("postbacks.publisher")

MAX_BATCH_POSTBACKS = 512
MAX_BATCH_BYTES = 1 << 20
# Batches awaiting their confirm at once. One is fastest: the quorum queue's confirms of
# concurrent publishes come back about one confirm-time apart, so a second batch in flight
# waits as long as it would have queued, and costs the broker an extra publish (measured
# with 64 connections: 19.4-20.1k req/s with 1, 13.5-15.0k with 4; p50 at half that rate
# 1.9-2.2 ms with 1, 5.3-5.9 ms with 4; and again once the next batch went out before the
# answers: 22.0k with 1, 18.3k with 2, whose confirms took 2-5 ms instead of 1-2).
MAX_IN_FLIGHT = 1


# A batch the broker refused, or that its node lost, is published again after RETRY_PAUSE
# seconds while its oldest postback has more than RETRY_MARGIN seconds left of its confirm
# timeout; then it is answered 503 (or spooled).
RETRY_PAUSE, RETRY_MARGIN = 0.25, 0.5


class Unavailable(Exception):
    """The broker cannot take the postback now: answer 503."""


class Stalled(Unavailable):
    """The broker did not confirm in time."""


@dataclass(slots=True)
class _Pending:
    record: Record
    future: asyncio.Future[str]
    deadline: float


class IntakePublisher:
    """Owns the AMQP connection of a receiver; reconnects by itself."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.on_batch = on_batch
        self.problem: str | None = "not connected yet"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._up = False  # the channel is open: a flag, as the hot path asks it per postback
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._busy = 0  # lanes waiting for a confirm
        self._tasks: list[asyncio.Task[None]] = []
        self._lost = asyncio.Event()  # set when the current link is lost or given up
        self._link: broker.Link | None = None
        self._stopped = asyncio.Event()
        self._prefix = uuid.uuid4().hex[:12]
        self._seq = 0

    @property
    def ready(self) -> bool:
        return self._up and self._channel is not None and not self._channel.is_closed

    def next_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}-{self._seq}"

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._maintain(), name="broker-link"),
            *(asyncio.create_task(self._lane(), name="group-commit") for _ in range(MAX_IN_FLIGHT)),
        ]
        if self.spool is not None:
            self._tasks.append(asyncio.create_task(self._forward_spool(), name="spool-forwarder"))

    async def stop(self) -> None:
        """Publish what is pending, wait for in-flight confirms, then close."""
        self._stopped.set()
        self._wakeup.set()
        # The server answered every request before this runs; what remains is at most a
        # batch whose confirm is late.
        deadline = time.monotonic() + min(self.settings.confirm_timeout, 2.0)
        while (self._pending or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        if self.spool is not None:
            self.spool.close()

    # --- accepting postbacks -------------------------------------------------------------

    async def submit(self, record: Record) -> str:
        """Wait until ``record`` is durable; returns ``"confirmed"`` or ``"spooled"``.

        Raises :class:`Unavailable` when it is neither within the confirm timeout.
        """
        if not self._up and self.spool is None:
            raise Unavailable(self.problem or "broker unavailable")
        loop = asyncio.get_running_loop()
        timeout = self.settings.confirm_timeout
        pending = _Pending(record, loop.create_future(), time.monotonic() + timeout)
        self._pending.append(pending)
        self._wakeup.set()
        # Bounded without a timer per request: a batch's publish is bounded by the deadline
        # of its oldest postback, and a lane fails postbacks that waited that long for it.
        return await pending.future

    async def _lane(self) -> None:
        """One of ``MAX_IN_FLIGHT`` publishers: take everything pending (up to a batch),
        publish it, resolve its postbacks, and go straight on with what arrived meanwhile.
        A lane that finishes picks the next batch itself: no task or wake-up per batch."""
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._take_batch()
            now = time.monotonic()
            if batch[0].deadline <= now:  # waited a whole confirm timeout for a lane
                expired = [p for p in batch if p.deadline <= now]
                batch = batch[len(expired) :]
                await self._fallback(expired, Unavailable("broker did not confirm in time"))
            if batch:
                self._busy += 1
                try:
                    await self._publish(batch)
                except Exception as exc:  # a bug must cost this batch a 503, not the lane
                    log.exception("batch not published", extra={"postbacks": len(batch)})
                    _fail(batch, _describe(exc))
                finally:
                    self._busy -= 1

    def _take_batch(self) -> list[_Pending]:
        size, count = 0, 0
        for item in self._pending:
            size += len(item.record.body) + envelope.RECORD_OVERHEAD
            if count and (count >= MAX_BATCH_POSTBACKS or size > MAX_BATCH_BYTES):
                break
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    async def _publish(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        records = [p.record for p in batch]
        deadline = batch[0].deadline  # the oldest postback comes first: it bounds the batch
        several = len(self.settings.amqp_urls) > 1
        while True:
            remaining = deadline - time.monotonic()
            try:
                # With several nodes one attempt waits at most half the confirm timeout: a
                # node cut off from its cluster may keep the connection open and just never
                # confirm; then the link is dropped and the batch goes again through the next.
                wait = min(remaining, self.settings.confirm_timeout / 2) if several else remaining
                await self.send(records, wait)
                break
            except Stalled as exc:
                if several:
                    self._abandon(f"no confirm within {wait:.1f} s")
                if deadline - time.monotonic() < RETRY_MARGIN + RETRY_PAUSE:
                    await self._fallback(batch, exc)
                    return
                await asyncio.sleep(RETRY_PAUSE)
            except Exception as exc:  # any failure means "not confirmed" (yet)
                # On a cluster a refusal or a lost node is often over within seconds (a
                # quorum queue electing a new leader nacks meanwhile; the link goes on to
                # the next node): try again while the oldest postback can still wait.
                # Publishing twice is safe: a second copy's events are dropped as duplicates.
                if isinstance(exc, aio_pika.exceptions.DeliveryError):
                    # A channel that a quorum queue has refused goes on refusing (RabbitMQ
                    # 3.10: on a node that has not yet learnt the queue's new leader, and
                    # even once the queue takes publishes again). The node is fine, only
                    # that channel is not: go on through a fresh one, not avoiding it.
                    self._reconnect()
                if deadline - time.monotonic() < RETRY_MARGIN + RETRY_PAUSE:
                    await self._fallback(batch, exc)
                    return
                log.info("batch not confirmed, publishing again", extra={"error": _describe(exc)})
                await asyncio.sleep(RETRY_PAUSE)
        if self.on_batch is not None:
            self.on_batch(len(batch), time.monotonic() - started)
        # Answered one step later: the lane first hands the next batch to the connection's
        # writer, so that batch goes out before this one's requests are answered.
        asyncio.get_running_loop().call_soon(_confirm, batch)

    def _reconnect(self) -> None:
        """End this connection's session: the link goes on at once to the next node, with a
        fresh connection and channel."""
        self._up = False
        self._lost.set()

    def _abandon(self, reason: str) -> None:
        """Give up the current node: try it last for a while, and go on to the next."""
        self.problem = f"broker node given up: {reason}"
        log.warning("broker node given up", extra={"reason": reason})
        if self._link is not None:
            self._link.nodes.avoid(self._link.nodes.current)
        self._reconnect()

    async def _fallback(self, batch: list[_Pending], exc: BaseException) -> None:
        reason = _describe(exc) if not isinstance(exc, Unavailable) else str(exc)
        if self.spool is not None:
            try:
                await self.spool.append([p.record for p in batch])
            except Exception as spool_exc:  # not spooled: the postbacks get 503
                log.error("spool write failed", extra={"error": _describe(spool_exc)})
            else:
                for item in batch:
                    if not item.future.done():
                        item.future.set_result("spooled")
                return
        _fail(batch, reason)

    async def send(self, records: list[Record], timeout: float) -> None:
        """Publish ``records`` as one persistent intake message and wait for the confirm."""
        channel = self._channel
        if channel is None or channel.is_closed or not self._up:
            raise Unavailable(self.problem or "broker unavailable")
        if timeout <= 0:
            raise Stalled("broker did not confirm in time")
        message = aio_pika.Message(
            envelope.pack(records),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type=envelope.CONTENT_TYPE,
            message_id=uuid.uuid4().hex,
            headers={"x-postbacks": len(records)},
        )
        try:
            async with asyncio.timeout(timeout):
                confirm = await channel.default_exchange.publish(
                    message, routing_key=self.settings.names.intake, mandatory=True
                )
        except TimeoutError:
            raise Stalled("broker did not confirm in time") from None
        if not isinstance(confirm, Basic.Ack):
            raise Unavailable(f"broker did not take the postback: {confirm!r}")

    # --- the connection --------------------------------------------------------------------

    async def _maintain(self) -> None:
        def on_problem(problem: str | None) -> None:
            if problem is not None:
                self.problem = problem

        link = self._link = broker.Link(self.settings.amqp_urls, on_problem)
        await link.run(self._serve, self._stopped)

    async def _serve(self, connection: AbstractConnection) -> None:
        """Publish through ``connection`` until it is lost (or the receiver stops)."""
        lost = self._lost = asyncio.Event()
        self._connection = connection
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await topology.declare(channel, self.settings.names, self.settings.history)
            on_close = self._on_close(lost)
            connection.close_callbacks.add(on_close)
            channel.close_callbacks.add(on_close)
            self._channel = channel
            self._up = True
            self.problem = None
            await lost.wait()
            raise ConnectionError("broker connection lost")
        finally:
            self._up = False
            self._channel = None

    def _on_close(self, lost: asyncio.Event) -> Callable[..., None]:
        def on_close(*_args: object) -> None:
            if not lost.is_set():  # a link already given up must not mark its successor down
                self._up = False
            lost.set()

        return on_close

    async def _forward_spool(self) -> None:
        assert self.spool is not None
        while True:
            await asyncio.sleep(0.5)
            if not self.ready or self.spool.pending == 0:
                continue
            try:
                moved = await self.spool.forward(
                    lambda recs: self.send(recs, self.settings.confirm_timeout),
                    MAX_BATCH_POSTBACKS,
                    MAX_BATCH_BYTES,
                )
            except Exception as exc:  # the broker went away again: retry later
                log.warning("spool forwarding interrupted", extra={"error": _describe(exc)})
            else:
                if moved:
                    log.info("spool forwarded", extra={"postbacks": moved})


def _confirm(batch: list[_Pending]) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_result("confirmed")


def _fail(batch: list[_Pending], reason: str) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(Unavailable(reason))
            item.future.exception()  # retrieved: the waiter may already have gone


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
