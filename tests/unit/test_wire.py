"""worker.wire writes the bytes aio-pika/aiormq would write for the same publishes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from worker.wire import Frames, table


def _aio_pika_bytes(
    message: aio_pika.Message, exchange: str, routing_key: str, channel: int, size: int
) -> bytes:
    """What aiormq's basic_publish marshals for ``message`` (its frames, in order)."""
    body = message.body
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    frames: list[Any] = [
        spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=False),
        ContentHeader(properties=message.properties, body_size=len(body)),
        *(ContentBody(chunk) for chunk in chunks),
    ]
    return ChannelFrame.marshall(channel_number=channel, frames=frames).payload


@pytest.mark.parametrize(
    "headers",
    [
        {"code": "N101", "origin": "MMS_MT", "status": "sent", "tracking_id": "RUN-1"},
        {"origin": "MMS_MO", "code": "N401", "status": "received"},  # unsorted, no tracking id
        {"tracking_id": "ünïcode-✓", "code": "N102", "origin": "o", "status": "s"},
    ],
)
@pytest.mark.parametrize("size", [700, 131064, 100])  # one body frame, and split bodies
def test_event_publish_is_byte_identical(headers: dict[str, str], size: int) -> None:
    body = b'{"schema":2,"event_id":"ab"}' * 25
    stamp = datetime(2026, 4, 24, 18, 31, 10, 123456, tzinfo=UTC)
    message = aio_pika.Message(
        body,
        content_type="application/json",
        message_id="e" * 64,
        timestamp=stamp,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=dict(headers),
    )
    frames = Frames(7, size)
    frames.publish(
        "ns.events",
        "mms_mt.delivery.sent.n101",
        body,
        content_type="application/json",
        message_id="e" * 64,
        timestamp=stamp,
        headers=headers,
    )
    expected = _aio_pika_bytes(message, "ns.events", "mms_mt.delivery.sent.n101", 7, size)
    assert frames.take() == expected


def test_timer_publish_without_headers_or_timestamp_is_byte_identical() -> None:
    body = b'{"origin":"MMS_MT","after_seconds":60}'
    message = aio_pika.Message(
        body,
        content_type="application/vnd.postbacks.timer+json",
        message_id="f" * 32,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    frames = Frames(3, 131064)
    frames.publish(
        "", "ns.waiting-60s", body,
        content_type="application/vnd.postbacks.timer+json", message_id="f" * 32,
    )  # fmt: skip
    assert frames.take() == _aio_pika_bytes(message, "", "ns.waiting-60s", 3, 131064)


def test_many_publishes_concatenate_and_take_empties() -> None:
    frames = Frames(1, 1000)
    expected = b""
    for i in range(3):
        body = f"body-{i}".encode()
        frames.publish("x", f"k.{i}", body, content_type="application/json", message_id=str(i))
        message = aio_pika.Message(
            body, content_type="application/json", message_id=str(i),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )  # fmt: skip
        expected += _aio_pika_bytes(message, "x", f"k.{i}", 1, 1000)
    assert frames.count == 3
    assert frames.take() == expected
    assert frames.count == 0 and frames.take() == b""


def test_table_matches_pamqp() -> None:
    from pamqp import encode

    headers: dict[str, Any] = {"status": "x", "code": "N101", "a": ""}
    assert table(headers) == encode.field_table(headers)


def test_a_routing_key_over_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        Frames(1, 1000).publish("x", "k" * 256, b"", content_type="t", message_id="m")
