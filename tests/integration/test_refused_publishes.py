"""On a cluster the worker acks an intake message only once the broker has confirmed
everything it became: in a transaction, RabbitMQ 3.10 drops a publish that a queue refuses
and still answers commit-ok (a quorum queue refuses publishes from a new channel while its
leader's node has just died), so the acks were committed and the events lost.

Here the refusal comes from a subscriber queue that is full with ``overflow:
reject-publish`` (set by policy), on the one local broker named twice in ``AMQP_URL`` (two
"nodes": the worker runs as on a cluster). The intake message must stay unacked while the
events are refused, ``/readyz`` must say so, and the events must arrive once the queue takes
them again."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid

import aio_pika
from prometheus_client import generate_latest

from ingest import envelope, topology
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.names import Names
from tests.support import AMQP_URL, Subscriber, postback_xml, queue_count

from ._helpers import metric, rabbitmqctl, settings_for, worker

NODES = f"{AMQP_URL},{AMQP_URL.replace('127.0.0.1', 'localhost')}"


async def _publish_intake(names: Names, records: list[Record]) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                envelope.pack(records),
                content_type=envelope.CONTENT_TYPE,
                message_id=uuid.uuid4().hex,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            names.intake,
        )


async def test_refused_events_keep_their_intake_message_until_they_are_taken(
    namespace: str,
) -> None:
    names = Names(namespace)
    policy = f"{namespace}-refuse"
    trackings = ["r1", "r2", "r3"]
    records = [
        Record(uuid.uuid4().hex, received_at_now(), "xml", None, postback_xml("N102", t))
        for t in trackings
    ]
    async with Subscriber(namespace, "held", ["#"]) as subscriber:
        await topology.declare(subscriber.channel, names)
        pattern = "^" + subscriber.queue_name.replace(".", r"\.") + "$"
        rabbitmqctl(
            "set_policy",
            "--apply-to",
            "queues",
            policy,
            pattern,
            '{"max-length": 1, "overflow": "reject-publish"}',
        )
        try:
            # A quorum queue takes one message over its limit: fill it to refusing.
            for _ in range(2):
                await subscriber.channel.default_exchange.publish(
                    aio_pika.Message(b"filler"), subscriber.queue_name
                )
            async with worker(settings_for(namespace, amqp_url=NODES)) as running:
                await _publish_intake(names, records)
                async with asyncio.timeout(15):  # /readyz names the refusal
                    while "refuses" not in (running.problems["broker"] or ""):
                        await asyncio.sleep(0.05)
                await asyncio.sleep(1.5)  # published again (and refused) meanwhile
                assert running.published == 0
                assert await queue_count(subscriber.queue_name) == 2  # the fillers only
                assert await queue_count(names.intake) == 0  # delivered, not acked
                rabbitmqctl("clear_policy", policy)
                await subscriber.queue.purge()
                received = await subscriber.take(3, timeout=40, settle=1.0)
                assert sorted(r.event["tracking_id"] for r in received) == trackings
                async with asyncio.timeout(5):
                    while not running.ready:
                        await asyncio.sleep(0.05)
                text = generate_latest(running.metrics.registry).decode()
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # cleared already
                rabbitmqctl("clear_policy", policy)
    # Every attempt after the first sent the 3 events again, each counted as sent.
    republished = metric(text, "postbacks_events_republished_total")
    assert republished >= 3 and republished % 3 == 0, republished
    assert await queue_count(names.intake) == 0
