"""The worker: consume ``NS.intake``, publish deduplicated events, quarantine the rest.

A transacted consumer (:mod:`worker.consumer`: one channel in AMQP transaction mode)
carries everything a batch does: the events it publishes, the receipt timers it arms, the
quarantined postbacks, and the acks of the intake messages; one commit makes it all
happen; :class:`_Intake` is its handler. Receipt timers have a consumer of their own
(:mod:`worker.timers`); readiness is one :class:`~worker.health.Health`. Combined with the dedup marks (see ``worker.dedup``), an event is published
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

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
from worker.consumer import GiveUp, TransactedConsumer, commit
from worker.dedup import DedupStore, Verdict
from worker.health import Health
from worker.intake import Batch, Item, postback_count, prepare
from worker.lifecycles import Change, LifecycleStore, MemoryLifecycles
from worker.metrics import WorkerMetrics
from worker.timers import CONTENT_TYPE as TIMER_CONTENT_TYPE
from worker.timers import Timer, TimerConsumer, TimersDone, armed
from worker.transform import Outgoing, describe

log = logging.getLogger("postbacks.worker")

PREFETCH = 256  # intake messages in flight per worker (each holds one or more postbacks)
MAX_BATCH_MESSAGES = PREFETCH // 2  # so the next batch is delivered while one commits
MAX_BATCH_POSTBACKS = 2048  # postbacks per transaction
STOP_GRACE = 8.0  # seconds to finish what was already delivered when asked to stop
KNOWN_ORIGINS = frozenset({"MMS_MT", "MMS_MO"})  # other origins are counted as "other"
_NULL_LIFECYCLE = b'"lifecycle":null}'  # how an event serialized by transform ends


T = TypeVar("T")


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
        watched = {"broker": "not connected yet"}
        if settings.redis_url:
            watched["redis"] = "redis not checked yet"
        self.health = Health(metrics.dependency_up, watched)
        self.stopping = asyncio.Event()
        self.published = 0  # events published since start, for logs and tests
        # Batches whose commit is in doubt, published again on the next connection (only
        # with several nodes: see the module's docstring).
        self.in_doubt: list[_Done] = []
        self.timers_in_doubt: list[TimersDone] = []
        self.keeps_in_doubt = len(settings.amqp_urls) > 1

    @property
    def ready(self) -> bool:
        return self.health.ready

    @property
    def problems(self) -> Mapping[str, str | None]:
        return self.health.problems

    # --- connection loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`; reconnects by itself whatever happens to the broker,
        going on to the next node of ``AMQP_URL`` when it loses one."""

        def on_problem(problem: str | None) -> None:
            if problem is not None:
                self.health.report("broker", problem)

        await broker.Link(self.settings.amqp_urls, on_problem).run(self._session, self.stopping)
        self.health.report("broker", "stopped")
        if self.in_doubt or self.timers_in_doubt:
            log.warning(
                "stopped with commits in doubt: their intake messages may be acked without "
                "their events",
                extra={"events": sum(len(done.published) for done in self.in_doubt)},
            )

    def stop(self) -> None:
        self.stopping.set()

    async def _session(self, connection: AbstractConnection) -> None:
        consumer: TransactedConsumer[tuple[Batch, list[Verdict]], _Done]
        consumer = await TransactedConsumer.open(
            connection,
            self.stopping,
            prefetch=PREFETCH,
            max_group=MAX_BATCH_MESSAGES,
            weight=postback_count,
            max_weight=MAX_BATCH_POSTBACKS,
            grace=STOP_GRACE,
        )
        channel = consumer.channel
        await topology.declare(channel, self.names, self.settings.history)
        events = await topology.declare_events(channel, self.names)
        queue = await topology.declare_intake(channel, self.names)
        await self._publish_in_doubt(channel, events, consumer.transaction)
        await consumer.consume(queue)
        self.health.report("broker", None)
        await topology.declare_timers(channel, self.names, self.settings.dlr_timeout)
        timer_task = asyncio.create_task(TimerConsumer(self).run(connection))

        def timers_ended(task: asyncio.Task[None]) -> None:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                log.warning("receipt timers stopped", extra={"error": describe(failure)})
                consumer.lose()  # the session ends and comes back with a fresh connection

        timer_task.add_done_callback(timers_ended)
        depth_task = asyncio.create_task(self._watch_depth(connection))
        try:
            await consumer.run(_Intake(self, channel, events))
        finally:
            depth_task.cancel()
            timer_task.cancel()

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
            await commit(transaction)
            self.in_doubt.pop(0)
            again = dataclasses.replace(done, republished=len(done.published))
            log.warning(
                "batch in doubt published again",
                extra={"events": len(done.published), "timers": len(done.batch.timers)},
            )
            self._committed(again)
            await self._settle(again)

    async def _settle(self, done: _Done) -> None:
        """Settle the marks of a committed batch. Best effort: an unsettled mark still
        drops every other copy; only a redelivery of this very message would pass it."""
        try:
            await self.store.settle(done.claims)
        except (RedisError, OSError) as exc:
            log.warning("dedup marks not settled", extra={"error": describe(exc)})

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
                if self.health.watches("redis"):
                    self.health.report("redis", f"redis unreachable: {describe(exc)}")
                if self.stopping.is_set():
                    raise GiveUp from exc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(delay * 2, 2.0)
                continue
            if latency is not None:
                latency.observe(time.perf_counter() - started)
            if self.health.down("redis"):
                self.health.report("redis", None)
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
            if self.health.watches("redis"):
                try:
                    await self.store.ping()
                except (RedisError, OSError) as exc:
                    self.health.report("redis", f"redis unreachable: {describe(exc)}")
                else:
                    self.health.report("redis", None)  # logs only a change
            await asyncio.sleep(2.0)


@dataclass(frozen=True, slots=True)
class _Intake:
    """The intake consumer's handler for one session: its channel and events exchange."""

    worker: Worker
    channel: AbstractChannel
    events: AbstractExchange

    async def prepare(self, group: list[AbstractIncomingMessage]) -> tuple[Batch, list[Verdict]]:
        return await self.worker._prepare(group)

    async def publish(
        self, group: list[AbstractIncomingMessage], prepared: tuple[Batch, list[Verdict]]
    ) -> _Done:
        batch, fresh = prepared
        return await self.worker._publish(self.channel, self.events, group, batch, fresh)

    async def committed(self, done: _Done) -> None:
        self.worker._committed(done)
        await self.worker._settle(done)

    def in_doubt(self, done: _Done) -> None:
        self.worker._doubt(done)
