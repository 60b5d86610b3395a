"""Receipt timeouts: timers armed on the broker, fired by a consumer of their own.

When a lifecycle of a family with receipts (``delivery``, ``discovery``) starts with a
non-final event, the worker publishes a timer into ``NS.waiting-Ns`` in the same transaction
as the event (so the timer exists exactly when the event does). That queue has one TTL,
``DLR_TIMEOUT``: the oldest timer is always the next one due, and the broker dead-letters
each, at least once, into ``NS.timers`` when its time is up. Nothing scans the store.

:class:`TimerConsumer` takes ``NS.timers`` on a channel and a transaction of its own (acks
are cumulative per channel: a timer never shares acks with the intake). For each due timer
it reads the lifecycle: unknown (expired, or a worker's memory that was restarted), final,
or a later lifecycle of the same tracking id → nothing. Otherwise it builds the
``timed_out`` event, claims its id in the dedup store (two timers of one lifecycle give one
id), applies it to the lifecycle only if that is still open, and publishes it with the ack
of the timer in one commit. Exactly one ``timed_out`` event per lifecycle however many
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
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from ingest import topology
from ingest.event import amqp_headers, parse_received_at, received_at_now, routing_key
from ingest.lifecycle import TIMER_FAMILIES, timed_out_event
from worker.lifecycles import Change

if TYPE_CHECKING:
    from worker.worker import Worker

log = logging.getLogger("postbacks.timers")

PREFETCH = 64
COMMIT_TIMEOUT = 10.0  # seconds; past it the channel's node is taken as lost
CONTENT_TYPE = "application/vnd.postbacks.timer+json"


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
        if self.worker.settings.dlr_timeout <= 0:
            return  # timeouts are off: timers already due stay in NS.timers (stats shows them)
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=PREFETCH)
        transaction = channel.transaction()
        await transaction.select()
        events = await topology.declare_events(channel, self.names)
        queue = await topology.declare_queue(channel, self.names.timers)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def deliver(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        await queue.consume(deliver)
        while True:
            group = [await inbox.get()]
            while not inbox.empty() and len(group) < PREFETCH:
                group.append(inbox.get_nowait())
            published = await self._publish(events, group)
            await asyncio.wait_for(transaction.commit(), COMMIT_TIMEOUT)
            for family in published.values():
                self.worker.metrics.timeouts.labels(family=family).inc()
            self.worker.published += len(published)
            if published:
                await self.worker.store.settle(list(published))

    async def _publish(
        self, events: aio_pika.abc.AbstractExchange, group: list[AbstractIncomingMessage]
    ) -> dict[tuple[str, str], str]:
        """Publish the timed_out events of ``group`` and ack it, inside the transaction;
        the (event id, mark) of each published one, and its family."""
        worker = self.worker
        due: list[tuple[AbstractIncomingMessage, dict[str, Any]]] = []
        for message in group:
            timer = _timer(message)
            if timer is None:
                log.warning("timer message is not one of ours: dropped")
                continue
            key, first_event_id, after = timer
            found = await worker.wait_for_store(functools.partial(worker.lifecycles.get, key))
            if found is None or found.final or found.first_event_id != first_event_id:
                continue
            latest = {**found.latest, "origin": key[0], "family": key[1], "tracking_id": key[2]}
            due.append((message, timed_out_event(latest, first_event_id, after, received_at_now())))
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
        for (message, event), step in zip(chosen, steps, strict=True):
            if step is None:  # final by now: a receipt came after all
                continue
            event = {**event, "lifecycle": step.as_dict()}
            await events.publish(
                aio_pika.Message(
                    orjson.dumps(event),
                    content_type="application/json",
                    message_id=event["event_id"],
                    timestamp=parse_received_at(event["received_at"]),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers=dict(amqp_headers(event)),
                ),
                routing_key=routing_key(event),
                mandatory=False,
            )
            published[(event["event_id"], f"{message.message_id}/timer")] = event["family"]
        await group[-1].ack(multiple=True)
        return published
