"""A consumer of one queue on a channel of its own, acking each group of deliveries only
once what it became is safely with the broker.

It owns what every consumer of the worker needs and gets wrong when written twice: the
channel with its QoS and its mode, an inbox of deliveries, groups of them handed to a
:class:`Handler`, the acks, the commit (or the confirms) of one group overlapping the
preparation of the next, stop (take no more, finish what was delivered within a grace
period) and the end of the connection. One cycle serves running and draining.

Two modes, one rule (:func:`confirms_for`):

- **One node: a transaction.** The group's publishes and its acks go in one AMQP
  transaction. A worker killed before the commit leaves nothing behind (the broker
  discards an uncommitted transaction), after it nothing to redeliver: no event is
  published twice.
- **A cluster (several nodes in AMQP_URL): publisher confirms, then acks.** In a
  transaction, RabbitMQ 3.10 drops a publish that a queue refuses and still answers
  commit-ok: a quorum queue refuses publishes from a new channel while its leader's node
  has just died and no new leader is known there yet, so the intake acks were committed
  and the events were gone (tests/cluster/test_rabbit_cluster_infra.py: 20 of 350
  committed publishes lost within a second of the kill; 0 of 340 acked with confirms, which
  nack the rest; see docs/faults.md). With confirms (on a channel of their own: acks are
  on the consuming one) the acks are sent only after every publish of the group is
  confirmed; a refused one is published again, on a new channel (a channel a quorum
  queue refused once goes on refusing), after a pause growing to
  :data:`REFUSED_PAUSE_MAX`, the group still unacked.
  The price: a worker killed between its publishes and its acks leaves events that its
  redelivery publishes again (counted as republished).

Acks are cumulative per channel (``multiple=True``), so each consumer has a channel of its
own and handles its deliveries in delivery order: on stop the undelivered rest goes back to
the front of the inbox, never behind a later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractTransaction,
)

from worker.wire import Refused, confirmed

P = TypeVar("P")
D = TypeVar("D")

# A commit not answered within this is taken as a lost node (one cut off from its cluster
# may keep the connection open and never answer): the session ends and the link goes on to
# the next node.
COMMIT_TIMEOUT = 10.0
# While the broker refuses a group's publishes (basic.nack), it stays unacked and is
# published again after these pauses (a redelivery would count towards the intake's
# delivery limit and end in quarantine).
REFUSED_PAUSE, REFUSED_PAUSE_MAX = 0.5, 30.0


def confirms_for(amqp_urls: Sequence[str]) -> bool:
    """Whether consumers use publisher confirms (a cluster) or a transaction (one node)."""
    return len(amqp_urls) > 1


class GiveUp(Exception):
    """Stop was requested while a dependency was down: leave the group unacked."""


async def commit(transaction: AbstractTransaction) -> None:
    """Commit, or ``ConnectionError`` when no commit-ok comes within COMMIT_TIMEOUT."""
    try:
        await asyncio.wait_for(transaction.commit(), COMMIT_TIMEOUT)
    except TimeoutError:
        raise ConnectionError(f"no commit-ok within {COMMIT_TIMEOUT:g} s") from None


async def publish_one(
    publishing: Coroutine[Any, Any, object],
    confirmations: list[asyncio.Future[object]],
    confirms: bool,
) -> None:
    """One aio-pika publish of a group: in confirm mode it goes on in the background and
    its confirm joins ``confirmations`` (waited for with the group's), in a transaction it
    is awaited here (the commit is what counts)."""
    if confirms:
        confirmations.append(asyncio.ensure_future(publishing))
    else:
        await publishing


@dataclass(slots=True)
class Sent(Generic[D]):
    """What a handler published for a group."""

    done: D
    # One per publish when the channel is in confirm mode (empty in a transaction).
    confirmations: list[asyncio.Future[object]] = field(default_factory=list)
    # Deliveries to give back (nack, requeue) instead of acking them.
    requeue: list[AbstractIncomingMessage] = field(default_factory=list)


class Handler(Protocol[P, D]):
    """What a consumer does with each group of deliveries."""

    async def prepare(self, group: list[AbstractIncomingMessage]) -> P:
        """Work out what the group becomes (may wait for a store; :class:`GiveUp` when
        asked to stop meanwhile). Nothing is sent to the broker yet."""

    async def publish(
        self, channel: AbstractChannel, group: list[AbstractIncomingMessage], prepared: P
    ) -> Sent[D]:
        """Publish what the group became on ``channel`` (the consumer acks it)."""

    async def committed(self, done: D) -> None:
        """After the commit-ok, or the confirms and the acks: count it, settle marks."""

    def refused(self, problem: str | None) -> None:
        """The broker refuses the publishes (``problem``), or takes them again (``None``)."""


class Consumer(Generic[P, D]):
    def __init__(
        self,
        connection: AbstractConnection,
        channel: AbstractChannel,
        transaction: AbstractTransaction | None,
        stopping: asyncio.Event,
        *,
        max_group: int,
        weight: Callable[[AbstractIncomingMessage], int] = lambda _message: 1,
        max_weight: int | None = None,
        grace: float,
    ) -> None:
        self.connection = connection
        self.channel = channel  # consumes, acks; in a transaction it also publishes
        self.transaction = transaction  # None: confirm mode
        self.publishing = channel  # where the handler publishes (see open)
        self.stopping = stopping
        self.max_group = max_group
        self.weight = weight
        self.max_weight = max_weight
        self.grace = grace
        # None wakes the cycle: the connection ended, or stop was asked.
        self.inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self.lost = asyncio.Event()
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        channel.close_callbacks.add(self.lose)

    @classmethod
    async def open(
        cls,
        connection: AbstractConnection,
        stopping: asyncio.Event,
        *,
        confirms: bool,
        prefetch: int,
        max_group: int,
        weight: Callable[[AbstractIncomingMessage], int] = lambda _message: 1,
        max_weight: int | None = None,
        grace: float,
    ) -> Consumer[P, D]:
        """A new channel on ``connection`` with its QoS and its mode, confirm or
        transaction (set again on every channel: a new channel starts with neither)."""
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        transaction = None
        if not confirms:
            transaction = channel.transaction()
            await transaction.select()
        consumer: Consumer[P, D] = cls(
            connection,
            channel,
            transaction,
            stopping,
            max_group=max_group,
            weight=weight,
            max_weight=max_weight,
            grace=grace,
        )
        connection.close_callbacks.add(consumer.lose)
        if confirms:
            consumer.publishing = await connection.channel(publisher_confirms=True)
        return consumer

    async def _renew_publishing(self) -> None:
        """A new confirm channel for publishing (the refused one is closed)."""
        old, self.publishing = self.publishing, await self.connection.channel()
        with contextlib.suppress(Exception):
            await old.close()

    def lose(self, *_args: object) -> None:
        """The connection or channel ended (also called when a companion task failed)."""
        self.lost.set()
        self.inbox.put_nowait(None)

    async def consume(self, queue: AbstractQueue) -> None:
        async def deliver(message: AbstractIncomingMessage) -> None:
            self.inbox.put_nowait(message)

        self._queue = queue
        self._tag = await queue.consume(deliver)

    async def run(self, handler: Handler[P, D]) -> None:
        """Hand groups to ``handler`` until stop (then drain within ``grace``) or the end
        of the connection (``ConnectionError``). Returns, leaving the rest unacked, when
        the handler gives up while stopping."""
        waker = asyncio.create_task(self._wake_on_stop())
        try:
            await self._cycle(handler, draining=False)
            if self.lost.is_set():
                raise ConnectionError("broker connection lost")
            if self._queue is not None and self._tag is not None:
                with contextlib.suppress(Exception):
                    await self._queue.cancel(self._tag)
            await self._cycle(handler, draining=True)
        except GiveUp:
            return
        finally:
            waker.cancel()

    async def _wake_on_stop(self) -> None:
        await self.stopping.wait()
        self.inbox.put_nowait(None)

    async def _cycle(self, handler: Handler[P, D], *, draining: bool) -> None:
        """Running: until stop or the end of the connection. Draining: what is already in
        the inbox, until the grace period is over.

        The commit (or confirms) of one group overlaps preparing the next: it is awaited
        only before the next group publishes (or when nothing else is waiting)."""
        deadline = time.monotonic() + self.grace
        pending: _Pending[D] | None = None
        try:
            while not self.lost.is_set():
                if pending is not None and self.inbox.empty():
                    finishing, pending = pending, None
                    await self._finish(handler, finishing)
                if draining:
                    if self.inbox.empty() or time.monotonic() >= deadline:
                        break
                    first = self.inbox.get_nowait()
                else:
                    first = await self.inbox.get()
                    if self.stopping.is_set():
                        if first is not None:
                            self._put_back(first)
                        break
                if first is None:
                    continue
                group = self._take(first)
                try:
                    if draining:
                        prepared = await asyncio.wait_for(
                            handler.prepare(group), max(0.1, deadline - time.monotonic())
                        )
                    else:
                        prepared = await handler.prepare(group)
                except (GiveUp, TimeoutError) as exc:
                    if pending is not None:  # the one in flight still counts
                        finishing, pending = pending, None
                        await self._finish(handler, finishing)
                    if isinstance(exc, GiveUp):
                        raise
                    break  # drain's grace is over
                if pending is not None:
                    finishing, pending = pending, None
                    await self._finish(handler, finishing)
                pending = await self._send(handler, group, prepared)
            if pending is not None:
                finishing, pending = pending, None
                await self._finish(handler, finishing)
        finally:
            if pending is not None:  # the session ends: not acked or not committed
                pending.task.cancel()
                with contextlib.suppress(BaseException):
                    await pending.task

    async def _send(
        self, handler: Handler[P, D], group: list[AbstractIncomingMessage], prepared: P
    ) -> _Pending[D]:
        """Publish a group; in a transaction ack it at once and commit in the background,
        in confirm mode wait for its confirms in the background, then ack it."""
        sent = await handler.publish(self.publishing, group, prepared)
        if self.transaction is not None:
            await _acknowledge(group, sent.requeue)
            task = asyncio.create_task(commit(self.transaction))
        else:
            task = asyncio.create_task(_confirm_then_ack(group, sent))
        return _Pending(task, group, sent)

    async def _finish(self, handler: Handler[P, D], pending: _Pending[D]) -> None:
        """Wait for a group's commit or its confirms and acks; then the handler's
        ``committed``. While the broker refuses its publishes, the group stays unacked and
        is published again after a growing pause (:class:`GiveUp` when asked to stop)."""
        pause = REFUSED_PAUSE
        while True:
            try:
                await pending.task
                break
            except Refused as exc:
                handler.refused(f"broker refuses events: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)
            if self.stopping.is_set():
                raise GiveUp
            pause = min(pause * 2, REFUSED_PAUSE_MAX)
            await self._renew_publishing()
            prepared = await handler.prepare(pending.group)
            pending = await self._send(handler, pending.group, prepared)
        if pause != REFUSED_PAUSE:
            handler.refused(None)
        await handler.committed(pending.sent.done)

    def _put_back(self, first: AbstractIncomingMessage) -> None:
        """``first`` and the rest, back at the front of the inbox in delivery order."""
        rest: list[AbstractIncomingMessage | None] = [first]
        while not self.inbox.empty():
            rest.append(self.inbox.get_nowait())
        for item in rest:
            self.inbox.put_nowait(item)

    def _take(self, first: AbstractIncomingMessage) -> list[AbstractIncomingMessage]:
        """The first message and whatever else is already waiting, up to a group."""
        group = [first]
        weight = self.weight(first)
        while (
            len(group) < self.max_group
            and (self.max_weight is None or weight < self.max_weight)
            and not self.inbox.empty()
        ):
            item = self.inbox.get_nowait()
            if item is None:
                self.inbox.put_nowait(None)  # keep the wake-up for the cycle
                break
            group.append(item)
            weight += self.weight(item)
        return group


@dataclass(slots=True)
class _Pending(Generic[D]):
    task: asyncio.Task[None]
    group: list[AbstractIncomingMessage]
    sent: Sent[D]


async def _acknowledge(
    group: list[AbstractIncomingMessage], requeue: list[AbstractIncomingMessage]
) -> None:
    """Ack the group (one cumulative ack), giving ``requeue`` back instead."""
    if not requeue:
        await group[-1].ack(multiple=True)
        return
    for message in requeue:
        await message.nack(requeue=True)
    for message in group:
        if message not in requeue:
            await message.ack()


async def _confirm_then_ack(group: list[AbstractIncomingMessage], sent: Sent[D]) -> None:
    await confirmed(sent.confirmations)
    await _acknowledge(group, sent.requeue)
