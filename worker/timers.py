"""Receipt timeouts: timers armed on the broker, fired by a consumer of their own.

When a lifecycle of a family with receipts (``delivery``, ``discovery``) starts with a
non-final event, the worker publishes a timer into ``NS.waiting-Ns`` with the event, and acks
the intake message once both are safely with the broker (so the timer exists whenever the
event does). That queue has one TTL,
``DLR_TIMEOUT``: the oldest timer is always the next one due, and the broker dead-letters
each, at least once, into ``NS.timers`` when its time is up. Nothing scans the store.

:class:`TimerConsumer` takes ``NS.timers`` with a consumer of its own (:mod:`worker.consumer`,
in the worker's mode; acks are cumulative per channel: a timer never shares acks with the
intake). For each due timer it reads the lifecycle: unknown (expired, or a worker's
memory that was restarted), a later lifecycle of the same tracking id, or final by anything
but this very timeout → nothing.
Otherwise it builds the ``timed_out`` event, claims its id in the dedup store (two timers
of one lifecycle give one id), applies it to the lifecycle only if that is still open (or
already holds it: the lifecycle was stepped before a commit that did not happen, and the
claim says whether this is that timer again), publishes it, and acks the timer (in one
commit, or after the confirm). Exactly one ``timed_out`` event per lifecycle however many
workers run, timers are dead-lettered twice, or processes and the broker restart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from ingest import topology
from ingest.event import amqp_headers, parse_received_at, received_at_now, routing_key
from ingest.lifecycle import TIMER_FAMILIES, timed_out_event
from worker.consumer import Consumer, Sent, publish_one
from worker.history import count_appended
from worker.lifecycles import Change

if TYPE_CHECKING:
    from worker.worker import Worker

log = logging.getLogger("postbacks.timers")

PREFETCH = 64
CONTENT_TYPE = "application/vnd.postbacks.timer+json"


class TimersDone(NamedTuple):
    """The timed_out events of a group of timers."""

    messages: list[tuple[aio_pika.Message, str]]  # with its routing key
    published: dict[tuple[str, str], str]  # (event id, mark) → family
    republished: int  # of them, claimed before by this very timer (its ack in doubt)


class Timer(NamedTuple):
    """A timer to publish into ``NS.waiting-Ns``: its message id and body."""

    message_id: str
    body: bytes


def arm(event: dict[str, Any], timeout: int) -> aio_pika.Message:
    """The timer of the lifecycle ``event`` starts, as a message."""
    timer = armed(event, timeout)
    return aio_pika.Message(
        timer.body,
        content_type=CONTENT_TYPE,
        message_id=timer.message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def armed(event: dict[str, Any], timeout: int) -> Timer:
    """The timer of the lifecycle ``event`` starts (published persistent, with
    :data:`CONTENT_TYPE`)."""
    body = orjson.dumps(
        {
            "origin": event["origin"],
            "family": event["family"],
            "tracking_id": event["tracking_id"],
            "first_event_id": event["event_id"],
            "after_seconds": timeout,
        }
    )
    return Timer(uuid.uuid4().hex, body)


def _timer(message: AbstractIncomingMessage) -> tuple[tuple[str, str, str], str, int] | None:
    try:
        data = orjson.loads(message.body)
        key = (str(data["origin"]), str(data["family"]), str(data["tracking_id"]))
        return key, str(data["first_event_id"]), int(data["after_seconds"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class TimerConsumer:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.names = worker.names
        for family in sorted(TIMER_FAMILIES):  # scraped at 0 before the first timeout
            worker.metrics.timeouts.labels(family=family)

    async def run(self, connection: AbstractConnection) -> None:
        """Consume ``NS.timers`` until stop (then drain) or the end of the connection."""
        if self.worker.settings.dlr_timeout <= 0:
            return  # timeouts are off: timers already due stay in NS.timers (stats shows them)
        consumer: Consumer[TimersDone, TimersDone] = await Consumer.open(
            connection,
            self.worker.stopping,
            confirms=self.worker.confirms,
            prefetch=PREFETCH,
            max_group=PREFETCH,
            grace=2.0,
        )
        await topology.declare_events(consumer.channel, self.names)
        queue = await topology.declare_queue(consumer.channel, self.names.timers)
        await consumer.consume(queue)
        try:
            await consumer.run(self)
        except ConnectionError:
            if connection.is_closed:
                return  # the intake consumer ends the session and says why
            raise

    async def publish(
        self, channel: AbstractChannel, group: list[AbstractIncomingMessage], prepared: TimersDone
    ) -> Sent[TimersDone]:
        confirmations: list[asyncio.Future[object]] = []
        events = await channel.get_exchange(self.names.events, ensure=False)
        for message, routed in prepared.messages:
            await publish_one(
                events.publish(message, routing_key=routed, mandatory=False),
                confirmations,
                self.worker.confirms,
            )
        if prepared.republished:  # counted as sent (see worker.worker)
            self.worker.metrics.republished.inc(prepared.republished)
        return Sent(prepared, confirmations)

    async def committed(self, done: TimersDone) -> None:
        worker = self.worker
        for family in done.published.values():
            worker.metrics.timeouts.labels(family=family).inc()
        worker.published += len(done.published)
        count_appended(worker.metrics, worker.settings.history, (m.body for m, _ in done.messages))
        if done.published:
            await worker.store.settle(list(done.published))

    def refused(self, problem: str | None) -> None:
        if problem is not None:
            log.warning("timed_out events refused", extra={"error": problem})

    async def prepare(self, group: list[AbstractIncomingMessage]) -> TimersDone:
        """The timed_out events of ``group``: the (event id, mark) of each with its family,
        the messages to publish, and how many this very timer may have published before."""
        worker = self.worker
        due: list[tuple[AbstractIncomingMessage, dict[str, Any]]] = []
        for message in group:
            timer = _timer(message)
            if timer is None:
                log.warning("timer message is not one of ours: dropped")
                continue
            key, first_event_id, after = timer
            found = await worker.wait_for_store(functools.partial(worker.lifecycles.get, key))
            if found is None or found.first_event_id != first_event_id:
                continue
            latest = {**found.latest, "origin": key[0], "family": key[1], "tracking_id": key[2]}
            event = timed_out_event(latest, first_event_id, after, received_at_now())
            # Final by this very timeout: the lifecycle was stepped before a commit that did
            # not happen (this timer is back); the claim below tells which.
            if found.final and all(e.get("id") != event["event_id"] for e in found.events):
                continue
            due.append((message, event))
        claims = [(e["event_id"], f"{m.message_id}/timer") for m, e in due]
        verdicts = await worker.wait_for_store(lambda: worker.store.claim(claims)) if claims else []
        chosen = [(m, e) for (m, e), v in zip(due, verdicts, strict=True) if v]
        changes = [Change.of(e, (e["origin"], e["family"], e["tracking_id"])) for _, e in chosen]
        steps = (
            await worker.wait_for_store(lambda: worker.lifecycles.step(changes, only_open=True))
            if changes
            else []
        )
        published: dict[tuple[str, str], str] = {}
        messages: list[tuple[aio_pika.Message, str]] = []
        republished = 0
        for (message, event), step, verdict in zip(
            chosen, steps, [v for v in verdicts if v], strict=True
        ):
            if step is None:  # final by now: a receipt came after all
                continue
            republished += 1 if verdict.again else 0
            event = {**event, "lifecycle": step.as_dict()}
            out = aio_pika.Message(
                orjson.dumps(event),
                content_type="application/json",
                message_id=event["event_id"],
                timestamp=parse_received_at(event["received_at"]),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=dict(amqp_headers(event)),
            )
            messages.append((out, routing_key(event)))
            published[(event["event_id"], f"{message.message_id}/timer")] = event["family"]
        return TimersDone(messages, published, republished)
