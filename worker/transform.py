"""From an accepted postback to what the worker publishes. Pure: no I/O.

:func:`transform` judges each postback on its own and never raises: whatever one postback
does (not well-formed, not a postback, a routing key or headers over AMQP's limits, or an
error while it is parsed, normalized or serialized), it alone becomes :class:`Rejected`
with a reason, and its neighbours in the same intake message are not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ingest.envelope import Record
from ingest.event import amqp_headers, normalize, parse_received_at, routing_key
from ingest.postback import NotAPostback, parse

ROUTING_KEY_MAX = 255  # bytes: AMQP's short string
# Bytes of header values one event may carry. Its content header must fit one AMQP frame
# (RabbitMQ's frame_max is 128 KiB); only a huge tracking id could come near this.
HEADERS_MAX = 65536


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event ready to publish."""

    event: dict[str, Any]
    body: bytes
    routing_key: str
    headers: dict[str, str]
    timestamp: datetime

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


@dataclass(frozen=True, slots=True)
class Rejected:
    """A postback that goes to quarantine, with the reason."""

    record: Record
    reason: str


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def transform(record: Record) -> Outgoing | Rejected:
    """The event of one postback, or why it goes to quarantine. Never raises."""
    try:
        return _transform(record)
    except NotAPostback as exc:
        return Rejected(record, str(exc))
    except Exception as exc:  # a postback no rule foresaw: it alone is set aside
        return Rejected(record, f"worker could not process this postback: {describe(exc)}")


def _transform(record: Record) -> Outgoing | Rejected:
    event = normalize(
        parse(record.body, record.fmt, record.charset), record.fmt, record.received_at
    )
    key = routing_key(event)
    key_bytes = len(key.encode())
    if key_bytes > ROUTING_KEY_MAX:
        parts = "/".join(str(len(part.encode())) for part in key.split("."))
        return Rejected(
            record,
            f"routing key would be {key_bytes} bytes, over AMQP's {ROUTING_KEY_MAX} "
            f"(origin/family/status/code: {parts} bytes)",
        )
    headers = amqp_headers(event)
    header_bytes = sum(len(name) + len(value.encode()) for name, value in headers.items())
    if header_bytes > HEADERS_MAX:
        return Rejected(
            record, f"AMQP headers would be {header_bytes} bytes, over the {HEADERS_MAX} allowed"
        )
    return Outgoing(
        event=event,
        body=orjson.dumps(event),
        routing_key=key,
        headers=headers,
        timestamp=parse_received_at(record.received_at),
    )
