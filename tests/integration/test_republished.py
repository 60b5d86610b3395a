"""An intake message whose events an earlier delivery of it already claimed (it may have
committed them before its node died) is published again rather than risk a loss, and each
such event is counted in ``postbacks_events_republished_total``; nothing else is."""

from __future__ import annotations

import uuid

import aio_pika
from prometheus_client import generate_latest

from ingest import envelope, topology
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.names import Names
from tests.support import AMQP_URL, REDIS_URL, Subscriber, postback_xml
from worker.dedup import open_store
from worker.transform import Outgoing, transform

from ._helpers import metric, settings_for, worker


def _records(*trackings: str) -> list[Record]:
    return [
        Record(uuid.uuid4().hex, received_at_now(), "xml", None, postback_xml("N102", t))
        for t in trackings
    ]


def _message(records: list[Record], message_id: str) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.pack(records),
        content_type=envelope.CONTENT_TYPE,
        message_id=message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def test_events_claimed_by_an_earlier_delivery_are_published_and_counted(
    namespace: str,
) -> None:
    names = Names(namespace)
    in_doubt, new = _records("a", "b", "c"), _records("d", "e")
    doubt_id = uuid.uuid4().hex
    # The state an earlier delivery of `in_doubt` leaves when its node dies during the
    # commit: every event id claimed with this delivery's marks, nothing settled.
    store = open_store(REDIS_URL, 600, namespace)
    claims = []
    for record in in_doubt:
        out = transform(record)
        assert isinstance(out, Outgoing)
        claims.append((out.event_id, f"{doubt_id}/{record.postback_id}"))
    assert all(await store.claim(claims))
    await store.close()
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel, names)
        await channel.default_exchange.publish(_message(in_doubt, doubt_id), names.intake)
        await channel.default_exchange.publish(_message(new, uuid.uuid4().hex), names.intake)
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        worker(settings_for(namespace)) as running,
    ):
        received = await subscriber.take(5, timeout=15, settle=0.5)
        text = generate_latest(running.metrics.registry).decode()
    assert sorted(r.event["tracking_id"] for r in received) == ["a", "b", "c", "d", "e"]
    assert metric(text, "postbacks_events_republished_total") == 3  # a, b, c only
    assert metric(text, "postbacks_duplicates_dropped_total") == 0
