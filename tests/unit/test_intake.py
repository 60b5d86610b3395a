"""The worker's batch, judged before any I/O: each postback on its own; only a message that
cannot be unpacked takes the poison path; a message without an id is adopted first."""

from __future__ import annotations

from typing import Any, cast

import aio_pika
from aiormq.abc import DeliveredMessage
from pamqp import commands
from pamqp.header import ContentHeader

from ingest import envelope
from ingest.envelope import Record
from tests.support import postback_xml
from worker.intake import POISON_DELIVERIES, postback_count, prepare

RECEIVED = "2026-01-01T00:00:00.000000Z"


def incoming(
    body: bytes,
    content_type: str | None = envelope.CONTENT_TYPE,
    message_id: str | None = None,
    headers: dict[str, Any] | None = None,
    tag: int = 1,
) -> aio_pika.IncomingMessage:
    """An intake delivery as aio-pika hands it to the worker (no channel: nothing is acked)."""
    properties = commands.Basic.Properties(
        content_type=content_type, message_id=message_id, headers=headers
    )
    delivered = DeliveredMessage(
        delivery=commands.Basic.Deliver(consumer_tag="t", delivery_tag=tag, routing_key="q"),
        header=ContentHeader(body_size=len(body), properties=properties),
        body=body,
        channel=cast(Any, None),
    )
    return aio_pika.IncomingMessage(delivered)


def packed(*bodies: bytes) -> bytes:
    return envelope.pack([Record(f"p{n}", RECEIVED, "xml", None, b) for n, b in enumerate(bodies)])


def test_one_bad_postback_leaves_its_neighbours_events() -> None:
    long_origin = b"<postback><origin>" + b"A" * 250 + b"</origin><code>N102</code></postback>"
    body = packed(postback_xml("N101", "a"), long_origin, b"<postback>", postback_xml("N102", "b"))
    batch = prepare([incoming(body, message_id="m1")])
    assert [item.out.event["tracking_id"] for item in batch.events] == ["a", "b"]
    assert [r.record.postback_id for r in batch.rejected] == ["p1", "p2"]
    assert "routing key" in batch.rejected[0].reason
    assert batch.poison == [] and batch.retry == [] and batch.postbacks == 4


def test_marks_tell_messages_apart_by_their_id() -> None:
    body = packed(postback_xml("N102", "same"))
    batch = prepare([incoming(body, message_id="m1"), incoming(body, message_id="m2", tag=2)])
    marks = [item.mark for item in batch.events]
    assert marks == ["m1/p0", "m2/p0"]  # same event id, two claimants: one wins in the store


def test_identical_messages_without_an_id_are_each_adopted_with_an_id_of_their_own() -> None:
    raw = postback_xml("N102", "no-id")
    group = [incoming(raw, "application/xml", tag=n) for n in range(1, 31)]
    batch = prepare(group)
    assert batch.events == [] and batch.rejected == []
    ids = {adopted.again.message_id for adopted in batch.adopted}
    assert len(ids) == 30 and None not in ids
    again = batch.adopted[0].again
    assert again.content_type == envelope.CONTENT_TYPE
    (record,) = envelope.unpack(again.body)
    assert (record.body, record.fmt, record.postback_id) == (raw, "xml", again.message_id)
    # An envelope without an id keeps its body as it is.
    env = packed(raw)
    (adopted,) = prepare([incoming(env)]).adopted
    assert adopted.again.body == env and adopted.again.message_id


def test_only_a_message_that_cannot_be_unpacked_takes_the_poison_path() -> None:
    corrupt = incoming(b"PB2 garbage", message_id="c1")
    first = prepare([corrupt])
    assert first.retry == [corrupt] and first.poison == []
    last = incoming(
        b"PB2 garbage", message_id="c1", headers={"x-delivery-count": POISON_DELIVERIES - 1}
    )
    (poison,) = prepare([last]).poison
    assert "cannot be unpacked" in poison.reason and "PB1" in poison.reason


def test_x_postbacks_that_is_no_count_counts_as_one() -> None:
    for value, expected in (("many", 1), (-3, 1), (10**12, 1), (7, 7), ("12", 12), (True, 1)):
        assert postback_count(incoming(b"", headers={"x-postbacks": value})) == expected, value
    assert postback_count(incoming(b"")) == 1
