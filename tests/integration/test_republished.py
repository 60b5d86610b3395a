"""An intake message handed out again after a delivery that may have committed (the node died
during the commit) is published again rather than risk a loss, and each such event is
counted in ``postbacks_events_republished_total``; a first delivery never is."""

from __future__ import annotations

import uuid

import aio_pika
from prometheus_client import generate_latest

from ingest import envelope, topology
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.names import Names
from tests.support import AMQP_URL, Subscriber, postback_xml

from ._helpers import metric, settings_for, worker


def _batch(*trackings: str) -> aio_pika.Message:
    records = [
        Record(uuid.uuid4().hex, received_at_now(), "xml", None, postback_xml("N102", t))
        for t in trackings
    ]
    return aio_pika.Message(
        envelope.pack(records),
        content_type=envelope.CONTENT_TYPE,
        message_id=uuid.uuid4().hex,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def test_a_redelivered_intake_message_is_published_and_counted(namespace: str) -> None:
    names = Names(namespace)
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel, names)
        await channel.default_exchange.publish(_batch("a", "b", "c"), routing_key=names.intake)
    # A consumer takes it and its connection dies before anything is acked or known.
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        intake = await channel.declare_queue(names.intake, passive=True)
        taken = await intake.get(no_ack=False)
        assert not taken.redelivered
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(_batch("d", "e"), routing_key=names.intake)
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        worker(settings_for(namespace)) as running,
    ):
        received = await subscriber.take(5, timeout=15, settle=0.5)
        text = generate_latest(running.metrics.registry).decode()
    assert sorted(r.event["tracking_id"] for r in received) == ["a", "b", "c", "d", "e"]
    assert metric(text, "postbacks_events_republished_total") == 3  # a, b, c only
