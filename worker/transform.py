"""From an accepted postback to what the worker publishes. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ingest.envelope import Record
from ingest.event import amqp_headers, normalize, parse_received_at, routing_key
from ingest.postback import NotAPostback, parse


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


def transform(record: Record) -> Outgoing | Rejected:
    try:
        event = normalize(
            parse(record.body, record.fmt, record.charset), record.fmt, record.received_at
        )
    except NotAPostback as exc:
        return Rejected(record, str(exc))
    return Outgoing(
        event=event,
        body=orjson.dumps(event),
        routing_key=routing_key(event),
        headers=amqp_headers(event),
        timestamp=parse_received_at(record.received_at),
    )


def quarantine_headers(record: Record, reason: str) -> dict[str, str]:
    headers = {
        "x-error": reason,
        "x-postback-id": record.postback_id,
        "x-received-at": record.received_at,
        "x-format": record.fmt,
    }
    if record.charset:
        headers["x-charset"] = record.charset
    return headers


def quarantine_content_type(record: Record) -> str:
    media = "application/xml" if record.fmt == "xml" else "application/json"
    return f"{media}; charset={record.charset}" if record.charset else media
