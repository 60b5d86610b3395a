"""Events reach the subscriber queues whose patterns match their routing key; events no
subscriber is bound for are kept in ``NS.unrouted``. Subscribers are made with the
``postbacks subscribe`` command, as an operator would."""

from __future__ import annotations

import asyncio

import aio_pika

from ingest.names import Names
from tests.support import AMQP_URL, http_session, post, postback_xml, queue_count

from ._helpers import drain_events, pipeline, postbacks, wait_count


async def test_event_without_subscriber_lands_in_unrouted_a_bound_one_does_not(
    namespace: str,
) -> None:
    names = Names(namespace)
    async with pipeline(namespace) as running, http_session() as session:
        assert (await post(session, running.postbacks, postback_xml("N102", "nobody")))[0] == 200
        assert await wait_count(namespace, names.unrouted, 1) == 1
        done = await postbacks(namespace, "subscribe", "delivered", "#.n102")
        assert done.code == 0, done.stderr
        assert (await post(session, running.postbacks, postback_xml("N102", "bound")))[0] == 200
        assert (await post(session, running.postbacks, postback_xml("E101", "unbound")))[0] == 200
        assert await wait_count(namespace, names.subscriber("delivered"), 1) == 1
        assert await wait_count(namespace, names.unrouted, 2) == 2
    unrouted = await drain_events(namespace, names.unrouted)
    delivered = await drain_events(namespace, names.subscriber("delivered"))
    assert [event["tracking_id"] for event in unrouted] == ["nobody", "unbound"]
    assert [event["tracking_id"] for event in delivered] == ["bound"]


async def test_subscribe_patterns_select_the_right_events(namespace: str) -> None:
    names = Names(namespace)
    done = await asyncio.gather(
        postbacks(namespace, "subscribe", "deliveries", "mms_mt.delivery.#"),
        postbacks(namespace, "subscribe", "failures", "#.failed.#"),
        postbacks(namespace, "subscribe", "delivered", "#.n102"),
        postbacks(namespace, "subscribe", "inbound", "mms_mo.#", "*.template.*.*"),
    )
    assert [d.code for d in done] == [0, 0, 0, 0], [d.stderr for d in done]
    sent = {
        "n101": postback_xml("N101", "n101"),
        "n102": postback_xml("N102", "n102"),
        "e101": postback_xml("E101", "e101"),
        "e102-failed": postback_xml("E102", "e102-failed", status="Message Sent/Failed"),
        "e102-rejected": postback_xml("E102", "e102-rejected", status="Message Sent/Rejected"),
        "e002": postback_xml("E002", "e002"),
        "e501": postback_xml("E501", "e501"),
        "n401": b"<postback><origin>MMS_MO</origin><code>N401</code>"
        b"<tracking-id>n401</tracking-id></postback>",
    }
    expected = {
        "deliveries": {"n101", "n102", "e101", "e102-failed", "e102-rejected"},
        "failures": {"e101", "e102-failed", "e501"},
        "delivered": {"n102"},
        "inbound": {"n401", "e002"},
    }
    async with pipeline(namespace) as running, http_session() as session:
        for body in sent.values():
            assert (await post(session, running.postbacks, body))[0] == 200
        for name, tracking in expected.items():
            await wait_count(namespace, names.subscriber(name), len(tracking))
        await asyncio.sleep(0.3)  # room for an unexpected extra event to arrive
    for name, tracking in expected.items():
        events = await drain_events(namespace, names.subscriber(name))
        assert (name, sorted(e["tracking_id"] for e in events)) == (name, sorted(tracking))
    assert await queue_count(names.unrouted) == 0


async def test_subscribe_is_idempotent_and_adds_patterns(namespace: str) -> None:
    names = Names(namespace)
    queue = names.subscriber("billing")
    first = await postbacks(namespace, "subscribe", "billing", "#.n102")
    assert first.code == 0, first.stderr
    assert queue in first.stdout
    await _publish_event(namespace, "mms_mt.delivery.delivered.n102", b'{"kept": true}')
    again = await postbacks(namespace, "subscribe", "billing", "#.n102")
    more = await postbacks(namespace, "subscribe", "billing", "#.e101")
    assert (again.code, more.code) == (0, 0), again.stderr + more.stderr
    # Re-subscribing kept the queue (and what it held) and the first pattern; it added one.
    await _publish_event(namespace, "mms_mt.delivery.delivered.n102", b'{"n102": true}')
    await _publish_event(namespace, "mms_mt.delivery.failed.e101", b'{"e101": true}')
    await _publish_event(namespace, "mms_mt.delivery.sent.n101", b'{"n101": true}')
    assert await wait_count(namespace, queue, 3) == 3
    bodies = await drain_events(namespace, queue)
    assert bodies == [{"kept": True}, {"n102": True}, {"e101": True}]
    assert await queue_count(names.unrouted) == 1  # the n101 nobody is bound for


async def _publish_event(namespace: str, routing_key: str, body: bytes) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(Names(namespace).events)
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)
