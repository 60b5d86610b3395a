"""A transacted consumer: one channel in AMQP transaction mode consuming one queue.

It owns what every consumer of the worker needs and gets wrong when written twice: the
channel with its QoS and transaction, an inbox of deliveries, groups of them handed to a
:class:`Handler`, the commit of one group overlapping the preparation of the next, stop
(take no more, finish what was delivered within a grace period) and the end of the
connection. One cycle serves running and draining.

Acks are cumulative per channel (``multiple=True``), so each consumer has a channel of its
own and handles its deliveries in delivery order: on stop the undelivered rest goes back to
the front of the inbox, never behind a later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractTransaction,
)

P = TypeVar("P")
D = TypeVar("D")
P_contra = TypeVar("P_contra", contravariant=True)
D_co = TypeVar("D_co", covariant=True)

# A commit not answered within this is taken as a lost node (one cut off from its cluster
# may keep the connection open and never answer): the session ends and the link goes on to
# the next node.
COMMIT_TIMEOUT = 10.0


class GiveUp(Exception):
    """Stop was requested while a dependency was down: leave the group unacked."""


async def commit(transaction: AbstractTransaction) -> None:
    """Commit, or ``ConnectionError`` when no commit-ok comes within COMMIT_TIMEOUT."""
    try:
        await asyncio.wait_for(transaction.commit(), COMMIT_TIMEOUT)
    except TimeoutError:
        raise ConnectionError(f"no commit-ok within {COMMIT_TIMEOUT:g} s") from None


class Handler(Protocol[P, D]):
    """What a consumer does with each group of deliveries, in three steps."""

    async def prepare(self, group: list[AbstractIncomingMessage]) -> P:
        """Work out what the group becomes (may wait for a store; :class:`GiveUp` when
        asked to stop meanwhile). Nothing is sent to the broker yet."""

    async def publish(self, group: list[AbstractIncomingMessage], prepared: P) -> D:
        """Publish what the group became and ack it, inside the open transaction."""

    async def committed(self, done: D) -> None:
        """After the commit-ok: count it, settle marks."""

    def in_doubt(self, done: D) -> None:
        """The commit got no commit-ok (the connection or channel ended first)."""


class TransactedConsumer(Generic[P, D]):
    def __init__(
        self,
        channel: AbstractChannel,
        transaction: AbstractTransaction,
        stopping: asyncio.Event,
        *,
        max_group: int,
        weight: Callable[[AbstractIncomingMessage], int] = lambda _message: 1,
        max_weight: int | None = None,
        grace: float,
    ) -> None:
        self.channel = channel
        self.transaction = transaction
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
        prefetch: int,
        max_group: int,
        weight: Callable[[AbstractIncomingMessage], int] = lambda _message: 1,
        max_weight: int | None = None,
        grace: float,
    ) -> TransactedConsumer[P, D]:
        """A new channel on ``connection`` with its QoS and transaction mode (set again on
        every channel: a new connection's channel starts without either)."""
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        transaction = channel.transaction()
        await transaction.select()
        consumer: TransactedConsumer[P, D] = cls(
            channel,
            transaction,
            stopping,
            max_group=max_group,
            weight=weight,
            max_weight=max_weight,
            grace=grace,
        )
        connection.close_callbacks.add(consumer.lose)
        return consumer

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

        The commit of one group overlaps preparing the next: it is awaited only before the
        next group publishes (or when nothing else is waiting)."""
        deadline = time.monotonic() + self.grace
        committing: tuple[asyncio.Task[None], D] | None = None
        try:
            while not self.lost.is_set():
                if committing is not None and self.inbox.empty():
                    pending, committing = committing, None
                    await self._finish(handler, pending)
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
                    if committing is not None:  # the one in flight still counts
                        pending, committing = committing, None
                        await self._finish(handler, pending)
                    if isinstance(exc, GiveUp):
                        raise
                    break  # drain's grace is over
                if committing is not None:
                    pending, committing = committing, None
                    await self._finish(handler, pending)
                done = await handler.publish(group, prepared)
                committing = (asyncio.create_task(commit(self.transaction)), done)
            if committing is not None:
                pending, committing = committing, None
                await self._finish(handler, pending)
        finally:
            if committing is not None:
                task, done = committing
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                handler.in_doubt(done)

    async def _finish(
        self, handler: Handler[P, D], committing: tuple[asyncio.Task[None], D]
    ) -> None:
        """Wait for a group's commit; then the handler's ``committed``, or its ``in_doubt``
        when the commit failed (and the failure goes on)."""
        task, done = committing
        try:
            await task
        except BaseException:
            handler.in_doubt(done)
            raise
        await handler.committed(done)

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
