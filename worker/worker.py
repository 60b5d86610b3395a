"""The worker: consume ``NS.intake``, publish deduplicated events, quarantine the rest.

One channel in AMQP transaction mode carries everything a batch does: the events it
publishes, the quarantined postbacks, and the acks of the intake messages; one commit makes
it all happen. Combined with the dedup marks (see ``worker.dedup``), an event is published
once even when the worker is killed or the broker restarts mid-batch.

On a cluster (``AMQP_URL`` naming several nodes) a transaction is not atomic across queues:
RabbitMQ applies a commit's acks at once and sends commit-ok only when every publish is
confirmed, so when the channel's node dies mid-commit the acks (on a queue replicated to
the survivors) can outlive the publishes, and nothing comes back to be redelivered. So a
batch whose commit got no commit-ok is *in doubt*: the worker keeps it, publishes it again
first thing on its next connection (counted in ``postbacks_events_republished_total``) and
settles its marks, so that a redelivery of the same intake messages is then dropped as a
duplicate. With one node the transaction is trusted as it is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractTransaction,
)
from prometheus_client import Histogram
from redis.exceptions import RedisError

from ingest import broker, lifecycle, topology
from ingest.settings import Settings
from worker import quarantine, wire
from worker.dedup import DedupStore, Verdict
from worker.intake import Batch, Item, postback_count, prepare
from worker.lifecycles import Change, LifecycleStore, MemoryLifecycles
from worker.metrics import WorkerMetrics
from worker.timers import CONTENT_TYPE as TIMER_CONTENT_TYPE
from worker.timers import Timer, TimerConsumer, TimersInDoubt, armed
from worker.transform import Outgoing, describe

log = logging.getLogger("postbacks.worker")

PREFETCH = 256  # intake messages in flight per worker (each holds one or more postbacks)
MAX_BATCH_MESSAGES = PREFETCH // 2  # so the next batch is delivered while one commits
MAX_BATCH_POSTBACKS = 2048  # postbacks per transaction
STOP_GRACE = 8.0  # seconds to finish what was already delivered when asked to stop
KNOWN_ORIGINS = frozenset({"MMS_MT", "MMS_MO"})  # other origins are counted as "other"
_NULL_LIFECYCLE = b'"lifecycle":null}'  # how an event serialized by transform ends


T = TypeVar("T")


# A commit not answered within this is taken as a lost node (one cut off from its cluster
# may keep the connection open and never answer): the session ends and the link goes on to
# the next node; the batch comes back and is published again, counted as republished.
COMMIT_TIMEOUT = 10.0


async def _commit(transaction: AbstractTransaction) -> None:
    try:
        await asyncio.wait_for(transaction.commit(), COMMIT_TIMEOUT)
    except TimeoutError:
        raise ConnectionError(f"no commit-ok within {COMMIT_TIMEOUT:g} s") from None


class _GiveUp(Exception):
    """Stop was requested while a dependency was down: leave the batch unacked."""


@dataclass(frozen=True, slots=True)
class _Done:
    started: float
    published: list[Outgoing]
    batch: Batch
    claims: list[tuple[str, str]]  # (event id, mark) of each published event
    republished: int  # of them, claimed earlier by this very delivery (the commit in doubt)


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: DedupStore,
        metrics: WorkerMetrics,
        lifecycles: LifecycleStore | None = None,
    ) -> None:
        self.settings = settings
        self.names = settings.names
        self.store = store
        self.lifecycles = lifecycles or MemoryLifecycles(settings.dedup_ttl)
        self.metrics = metrics
        self.problems: dict[str, str | None] = {"broker": "not connected yet"}
        if settings.redis_url:
            self.problems["redis"] = "redis not checked yet"
        self.stopping = asyncio.Event()
        self.published = 0  # events published since start, for logs and tests
        # Batches whose commit is in doubt, published again on the next connection (only
        # with several nodes: see the module's docstring).
        self.in_doubt: list[_Done] = []
        self.timers_in_doubt: list[TimersInDoubt] = []
        self.keeps_in_doubt = len(settings.amqp_urls) > 1

    @property
    def ready(self) -> bool:
        return all(problem is None for problem in self.problems.values())

    def _problem(self, dependency: str, problem: str | None) -> None:
        if self.problems.get(dependency) != problem:
            if problem is None:
                log.info("dependency back", extra={"dependency": dependency})
            else:
                log.warning("dependency down", extra={"dependency": dependency, "error": problem})
        self.problems[dependency] = problem
        self.metrics.dependency_up.labels(dependency=dependency).set(0 if problem else 1)

    # --- connection loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`; reconnects by itself whatever happens to the broker,
        going on to the next node of ``AMQP_URL`` when it loses one."""

        def on_problem(problem: str | None) -> None:
            if problem is not None:
                self._problem("broker", problem)

        await broker.Link(self.settings.amqp_urls, on_problem).run(self._session, self.stopping)
        self._problem("broker", "stopped")
        if self.in_doubt or self.timers_in_doubt:
            log.warning(
                "stopped with commits in doubt: their intake messages may be acked without "
                "their events",
                extra={"events": sum(len(done.published) for done in self.in_doubt)},
            )

    def stop(self) -> None:
        self.stopping.set()

    async def _session(self, connection: AbstractConnection) -> None:
        inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        lost = asyncio.Event()

        def on_close(*_args: object) -> None:
            lost.set()
            inbox.put_nowait(None)

        connection.close_callbacks.add(on_close)
        channel = await connection.channel(publisher_confirms=False)
        channel.close_callbacks.add(on_close)
        await topology.declare(channel, self.names, self.settings.history)
        events = await topology.declare_events(channel, self.names)
        queue = await topology.declare_intake(channel, self.names)
        await channel.set_qos(prefetch_count=PREFETCH)
        transaction = channel.transaction()
        await transaction.select()
        await self._publish_in_doubt(channel, events, transaction)

        async def deliver(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        consumer_tag = await queue.consume(deliver)
        self._problem("broker", None)
        await topology.declare_timers(channel, self.names, self.settings.dlr_timeout)
        timer_task = asyncio.create_task(TimerConsumer(self).run(connection))

        def timers_ended(task: asyncio.Task[None]) -> None:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                log.warning("receipt timers stopped", extra={"error": describe(failure)})
                on_close()  # the session ends and comes back with a fresh connection

        timer_task.add_done_callback(timers_ended)
        depth_task = asyncio.create_task(self._watch_depth(connection))
        stop_waiter = asyncio.create_task(self._wake_on_stop(inbox))
        # The commit of one batch overlaps parsing and deduplicating the next: it is awaited
        # only before the next batch publishes. Prefetch holds two batches, so the next one
        # is already delivered while the broker commits.
        committing: tuple[asyncio.Task[object], _Done] | None = None
        try:
            while not lost.is_set():
                if committing is not None and inbox.empty():
                    await self._finish(*committing)
                    committing = None
                first = await inbox.get()
                if self.stopping.is_set():
                    if first is not None:
                        # Back at the front, not the end: acks are cumulative (multiple=True),
                        # so messages must be handled in delivery order or one is acked unseen.
                        rest: list[AbstractIncomingMessage | None] = [first]
                        while not inbox.empty():
                            rest.append(inbox.get_nowait())
                        for item in rest:
                            inbox.put_nowait(item)
                    break
                if first is None:
                    continue
                group = self._take(first, inbox)
                try:
                    batch, fresh = await self._prepare(group)
                except _GiveUp:
                    return  # stopping while the dedup store is down: leave it all unacked
                if committing is not None:
                    await self._finish(*committing)
                    committing = None
                done = await self._publish(channel, events, group, batch, fresh)
                committing = (asyncio.create_task(_commit(transaction)), done)
            if committing is not None:
                await self._finish(*committing)
                committing = None
            if lost.is_set():
                raise ConnectionError("broker connection lost")
            await self._drain(channel, events, transaction, queue, consumer_tag, inbox)
        finally:
            depth_task.cancel()
            stop_waiter.cancel()
            timer_task.cancel()
            if committing is not None:
                committing[0].cancel()
                with contextlib.suppress(BaseException):
                    await committing[0]
                self._doubt(committing[1])

    def _doubt(self, done: _Done) -> None:
        """A batch whose commit got no commit-ok: kept to publish again (on a cluster)."""
        batch = done.batch
        sent = done.published or batch.timers or batch.rejected or batch.poison or batch.adopted
        if self.keeps_in_doubt and sent:
            self.in_doubt.append(done)

    async def _publish_in_doubt(
        self, channel: AbstractChannel, events: AbstractExchange, transaction: AbstractTransaction
    ) -> None:
        """Publish the batches in doubt again, before consuming anything: then their marks
        are settled, and a redelivery of their intake messages is dropped as a duplicate.
        Each event is counted as republished. Raises (the session ends, they stay in doubt)
        when this commit fails too."""
        while self.in_doubt:
            done = self.in_doubt[0]
            await self._send(channel, events, done.published, done.batch)
            await _commit(transaction)
            self.in_doubt.pop(0)
            again = dataclasses.replace(done, republished=len(done.published))
            log.warning(
                "batch in doubt published again",
                extra={"events": len(done.published), "timers": len(done.batch.timers)},
            )
            self._committed(again)
            await self._settle(again)

    async def _finish(self, commit: Awaitable[object], done: _Done) -> None:
        """Wait for a batch's commit, then count it and settle its dedup marks."""
        await commit
        self._committed(done)
        await self._settle(done)

    async def _settle(self, done: _Done) -> None:
        """Settle the marks of a committed batch. Best effort: an unsettled mark still
        drops every other copy; only a redelivery of this very message would pass it."""
        try:
            await self.store.settle(done.claims)
        except (RedisError, OSError) as exc:
            log.warning("dedup marks not settled", extra={"error": describe(exc)})

    async def _wake_on_stop(self, inbox: asyncio.Queue[AbstractIncomingMessage | None]) -> None:
        await self.stopping.wait()
        inbox.put_nowait(None)

    async def _drain(
        self,
        channel: AbstractChannel,
        events: AbstractExchange,
        transaction: AbstractTransaction,
        queue: aio_pika.abc.AbstractQueue,
        consumer_tag: str,
        inbox: asyncio.Queue[AbstractIncomingMessage | None],
    ) -> None:
        """On stop: take no more, finish what was already delivered, within a bound."""
        with contextlib.suppress(Exception):
            await queue.cancel(consumer_tag)
        deadline = time.monotonic() + STOP_GRACE
        while not inbox.empty() and time.monotonic() < deadline:
            first = inbox.get_nowait()
            if first is None:
                continue
            try:
                group = self._take(first, inbox)
                batch, fresh = await asyncio.wait_for(
                    self._prepare(group), max(0.1, deadline - time.monotonic())
                )
                done = await self._publish(channel, events, group, batch, fresh)
            except (_GiveUp, TimeoutError):
                break
            try:
                await self._finish(_commit(transaction), done)
            except BaseException:
                self._doubt(done)
                raise

    def _take(
        self, first: AbstractIncomingMessage, inbox: asyncio.Queue[AbstractIncomingMessage | None]
    ) -> list[AbstractIncomingMessage]:
        """The first message and whatever else is already waiting, up to a batch."""
        group = [first]
        postbacks = postback_count(first)
        while (
            postbacks < MAX_BATCH_POSTBACKS
            and len(group) < MAX_BATCH_MESSAGES
            and not inbox.empty()
        ):
            item = inbox.get_nowait()
            if item is None:
                inbox.put_nowait(None)  # keep the wake-up for the loop
                break
            group.append(item)
            postbacks += postback_count(item)
        return group

    # --- one batch ---------------------------------------------------------------------------

    async def _prepare(self, group: list[AbstractIncomingMessage]) -> tuple[Batch, list[Verdict]]:
        """Parse and normalize a group, and claim its event ids in the dedup store."""
        batch = prepare(group)
        claims = batch.claims
        fresh = await self._claim(claims) if claims else []
        chosen = [item for item, verdict in zip(batch.events, fresh, strict=True) if verdict]
        await self.lifecycle_step(chosen, batch.timers)
        return batch, fresh

    async def lifecycle_step(self, items: list[Item], timers: list[Timer]) -> None:
        """Apply each event to its lifecycle (one store round trip for the batch), write
        the step into the event, and arm a receipt timer for each lifecycle that starts
        waiting for a receipt."""
        changes, targets = [], []
        for item in items:
            key = lifecycle.key(item.out.event)
            if key is not None:
                changes.append(Change.of(item.out.event, key))
                targets.append(item)
        if not changes:
            return
        steps = await self.wait_for_store(
            lambda: self.lifecycles.step(changes), self.metrics.lifecycle_seconds
        )
        timeout = self.settings.dlr_timeout
        for item, step in zip(targets, steps, strict=True):
            assert step is not None
            out = item.out
            event = out.event
            # The event is this batch's own dict; ``lifecycle`` is its last key, so its
            # serialized form ends ``"lifecycle":null}`` and the step's JSON goes in there:
            # the bytes orjson.dumps gives for the whole event with the step set.
            event["lifecycle"] = step_dict = step.as_dict()
            body = out.body
            if body.endswith(_NULL_LIFECYCLE):
                body = body[: -len(_NULL_LIFECYCLE)] + b'"lifecycle":' + orjson.dumps(step_dict)
                body += b"}"
            else:
                body = orjson.dumps(event)
            item.out = Outgoing(event, body, out.routing_key, out.headers, out.timestamp)
            if lifecycle.arms_timer(event, step, timeout):
                timers.append(armed(event, timeout))

    async def _publish(
        self,
        channel: AbstractChannel,
        events: AbstractExchange,
        group: list[AbstractIncomingMessage],
        batch: Batch,
        fresh: list[Verdict],
    ) -> _Done:
        """Publish and ack a group inside the open transaction; the caller commits."""
        started = time.perf_counter()
        published: list[Outgoing] = []
        claimed: list[tuple[str, str]] = []
        again = 0
        for item, is_fresh in zip(batch.events, fresh, strict=True):
            if not is_fresh:
                continue
            # The id already held this delivery's own mark: an earlier delivery of this very
            # message claimed it and may have committed (the node died during the commit).
            # Publishing again is safer than losing it; it is counted.
            if is_fresh.again:
                again += 1
            published.append(item.out)
            claimed.append((item.out.event["event_id"], item.mark))
        await self._send(channel, events, published, batch)
        for message in batch.retry:
            await message.nack(requeue=True)
        if batch.retry:
            for message in group:
                if message not in batch.retry:
                    await message.ack()
        else:
            await group[-1].ack(multiple=True)
        return _Done(started, published, batch, claimed, again)

    async def _send(
        self,
        channel: AbstractChannel,
        events: AbstractExchange,
        published: list[Outgoing],
        batch: Batch,
    ) -> None:
        """Publish a batch's events, timers, quarantined postbacks and adopted messages."""
        # Every event and timer of the batch is encoded into one buffer and written at
        # once (worker.wire): the same frames aio-pika would send, without its per-message
        # objects, lock and socket write. The channel is transactional: nothing to confirm.
        frames = await wire.frames_for(channel)
        publish = frames.publish
        exchange = events.name
        for out in published:
            publish(
                exchange,
                out.routing_key,
                out.body,
                content_type="application/json",
                message_id=out.event["event_id"],
                timestamp=out.timestamp,
                headers=out.headers,
            )
        waiting = self.names.waiting(self.settings.dlr_timeout)
        for timer_id, timer_body in batch.timers:
            publish("", waiting, timer_body, content_type=TIMER_CONTENT_TYPE, message_id=timer_id)
        await wire.write(channel, frames)
        default = channel.default_exchange
        for rejected in batch.rejected:
            await default.publish(
                quarantine.postback(rejected.record, rejected.reason),
                routing_key=self.names.quarantine,
                mandatory=False,
            )
        for poison in batch.poison:
            await default.publish(
                quarantine.intake_message(poison.message, poison.reason),
                routing_key=self.names.quarantine,
                mandatory=False,
            )
        for adopted in batch.adopted:
            await default.publish(adopted.again, routing_key=self.names.intake, mandatory=False)

    def _committed(self, done: _Done) -> None:
        started, published, batch = done.started, done.published, done.batch
        now = time.time()
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_postbacks.observe(batch.postbacks)
        # One counter update per (origin, family, status), not per event.
        tally: collections.Counter[tuple[str, str, str]] = collections.Counter()
        observe = self.metrics.processing_seconds.observe
        stale = 0
        for out in published:
            event = out.event
            origin = event["origin"] if event["origin"] in KNOWN_ORIGINS else "other"
            tally[origin, event["family"], event["status"]] += 1
            observe(max(0.0, now - out.timestamp.timestamp()))
            step = event.get("lifecycle")
            if step is not None and step["stale"]:
                stale += 1
        for labels, count in tally.items():
            self.metrics.events.labels(*labels).inc(count)
        if stale:
            self.metrics.stale.inc(stale)
        self.metrics.duplicates.inc(len(batch.events) - len(published))
        self.metrics.republished.inc(done.republished)
        if batch.rejected:
            self.metrics.quarantined.labels(kind="invalid").inc(len(batch.rejected))
        if batch.poison:
            self.metrics.quarantined.labels(kind="poison").inc(len(batch.poison))
        self.published += len(published)

    async def _claim(self, claims: list[tuple[str, str]]) -> list[Verdict]:
        """Ask the dedup store (waiting for it while it is down)."""
        return await self.wait_for_store(
            lambda: self.store.claim(claims), self.metrics.dedup_seconds
        )

    async def wait_for_store(
        self, call: Callable[[], Awaitable[T]], latency: Histogram | None = None
    ) -> T:
        """``call()`` against Redis, waiting for it as long as it is down (nothing is acked
        meanwhile, so nothing is lost); give up only when asked to stop."""
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                answer = await call()
            except (RedisError, OSError) as exc:
                if "redis" in self.problems:
                    self._problem("redis", f"redis unreachable: {describe(exc)}")
                if self.stopping.is_set():
                    raise _GiveUp from exc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(delay * 2, 2.0)
                continue
            if latency is not None:
                latency.observe(time.perf_counter() - started)
            if "redis" in self.problems and self.problems["redis"] is not None:
                self._problem("redis", None)
            return answer

    async def _watch_depth(self, connection: AbstractConnection) -> None:
        """Keep ``postbacks_intake_queue_messages`` current; also notices Redis recovering
        while the intake is idle."""
        channel = await connection.channel()
        while True:
            try:
                queue = await channel.declare_queue(self.names.intake, passive=True)
                count = queue.declaration_result.message_count
                self.metrics.intake_depth.set(count or 0)
                held = await channel.declare_queue(self.names.quarantine, passive=True)
                self.metrics.quarantine_depth.set(held.declaration_result.message_count or 0)
                if self.settings.dlr_timeout > 0:
                    waiting = self.names.waiting(self.settings.dlr_timeout)
                    timers = await channel.declare_queue(waiting, passive=True)
                    self.metrics.timers_pending.set(timers.declaration_result.message_count or 0)
            except Exception:  # the channel dies with the connection: the session ends too
                return
            if "redis" in self.problems:
                try:
                    await self.store.ping()
                except (RedisError, OSError) as exc:
                    self._problem("redis", f"redis unreachable: {describe(exc)}")
                else:
                    self._problem("redis", None)  # logs only a change; keeps the gauge set
            await asyncio.sleep(2.0)
