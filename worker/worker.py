"""The worker: consume ``NS.intake``, publish deduplicated events, quarantine the rest.

A consumer (:mod:`worker.consumer`: one channel of its own) carries everything a batch
does: the events it publishes, the receipt timers it arms, the quarantined postbacks, and
the acks of the intake messages, acked only once all of it is safely with the broker (in
one transaction on one node; after its publisher confirms on a cluster: see that module);
:class:`_Intake` is its handler. Combined with the dedup marks (see ``worker.dedup``), an
event is published once even when the worker is killed or the broker restarts mid-batch;
on a cluster, an event may be published again when the worker's node dies or the worker is
killed between its publishes and its acks, and each such event is counted in
``postbacks_events_republished_total``. Receipt timers have a consumer of their own
(:mod:`worker.timers`); readiness is one :class:`~worker.health.Health`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
)
from prometheus_client import Histogram
from redis.exceptions import RedisError

from ingest import broker, lifecycle, topology
from ingest.settings import Settings
from worker import quarantine, wire
from worker.consumer import Consumer, GiveUp, Sent, confirms_for, publish_one
from worker.dedup import DedupStore, Verdict
from worker.health import Health
from worker.history import count_appended, show_limits
from worker.intake import Batch, Item, postback_count, prepare
from worker.lifecycles import Change, LifecycleStore, MemoryLifecycles
from worker.metrics import WorkerMetrics
from worker.timers import CONTENT_TYPE as TIMER_CONTENT_TYPE
from worker.timers import Timer, TimerConsumer, armed
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
        show_limits(metrics, settings.history)
        watched = {"broker": "not connected yet"}
        if settings.redis_url:
            watched["redis"] = "redis not checked yet"
        self.health = Health(metrics.dependency_up, watched)
        self.stopping = asyncio.Event()
        self.published = 0  # events published since start, for logs and tests
        self.confirms = confirms_for(settings.amqp_urls)  # else transactions

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

    def stop(self) -> None:
        self.stopping.set()

    async def _session(self, connection: AbstractConnection) -> None:
        consumer: Consumer[tuple[Batch, list[Verdict]], _Done]
        consumer = await Consumer.open(
            connection,
            self.stopping,
            confirms=self.confirms,
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
            await consumer.run(_Intake(self, events))
        finally:
            depth_task.cancel()
            timer_task.cancel()

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
    ) -> Sent[_Done]:
        """Publish what a group became; the consumer acks it (and commits)."""
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
        confirmations = await self._send(channel, events, published, batch)
        # Counted as sent, not as committed: on a cluster a refused attempt may have had
        # some of its publishes taken before it is published again.
        if again:
            self.metrics.republished.inc(again)
        done = _Done(started, published, batch, claimed)
        return Sent(done, confirmations, list(batch.retry))

    async def _send(
        self,
        channel: AbstractChannel,
        events: AbstractExchange,
        published: list[Outgoing],
        batch: Batch,
    ) -> list[asyncio.Future[object]]:
        """Publish a batch's events, timers, quarantined postbacks and adopted messages;
        their confirmations in confirm mode."""
        # Every event and timer of the batch is encoded into one buffer and written at
        # once (worker.wire): the same frames aio-pika would send, without its per-message
        # objects, lock and socket write; their commit or confirms are waited for together.
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
        confirmations = await wire.write(channel, frames)
        # The rare rest goes through aio-pika.
        others = [
            (quarantine.postback(rejected.record, rejected.reason), self.names.quarantine)
            for rejected in batch.rejected
        ]
        others += [
            (quarantine.intake_message(poison.message, poison.reason), self.names.quarantine)
            for poison in batch.poison
        ]
        others += [(adopted.again, self.names.intake) for adopted in batch.adopted]
        default = channel.default_exchange
        for message, queue_name in others:
            await publish_one(
                default.publish(message, routing_key=queue_name, mandatory=False),
                confirmations,
                self.confirms,
            )
        return confirmations

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
        if batch.rejected:
            self.metrics.quarantined.labels(kind="invalid").inc(len(batch.rejected))
        if batch.poison:
            self.metrics.quarantined.labels(kind="poison").inc(len(batch.poison))
        count_appended(self.metrics, self.settings.history, (out.body for out in published))
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
    """The intake consumer's handler for one session."""

    worker: Worker
    events: AbstractExchange

    async def prepare(self, group: list[AbstractIncomingMessage]) -> tuple[Batch, list[Verdict]]:
        return await self.worker._prepare(group)

    async def publish(
        self,
        channel: AbstractChannel,
        group: list[AbstractIncomingMessage],
        prepared: tuple[Batch, list[Verdict]],
    ) -> Sent[_Done]:
        batch, fresh = prepared
        return await self.worker._publish(channel, self.events, group, batch, fresh)

    async def committed(self, done: _Done) -> None:
        self.worker._committed(done)
        await self.worker._settle(done)

    def refused(self, problem: str | None) -> None:
        self.worker.health.report("broker", problem)
