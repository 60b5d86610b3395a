"""Shared helpers for the unit tests: turning a body into the event, and an independent
computation of the event id as the contract words it."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ingest.event import normalize
from ingest.postback import parse
from tests.seeds import RECEIVED_AT as RECEIVED_AT

# Every key of a schema-2 event, as the contract's table lists them.
CONTRACT_KEYS = (
    "schema",
    "event_id",
    "origin",
    "code",
    "family",
    "status",
    "final",
    "status_text",
    "status_details",
    "sent_as",
    "tracking_id",
    "client_reference",
    "mms_id",
    "operator_id",
    "handset",
    "from",
    "to",
    "timestamp",
    "error_info",
    "content_type",
    "content_name",
    "audio_name",
    "video_name",
    "keyword",
    "message_subject",
    "content_files",
    "copy_to",
    "extra",
    "format",
    "received_at",
    "lifecycle",
)


def event_of(
    body: bytes, fmt: str, charset: str | None = None, received_at: str = RECEIVED_AT
) -> dict[str, Any]:
    """The event a worker makes of ``body`` as it arrived."""
    return normalize(parse(body, fmt, charset), fmt, received_at)


def expected_id(event: dict[str, Any]) -> str:
    """SHA-256 of the event without event_id/format/received_at/lifecycle and with schema
    counted as 1, as the contract defines."""
    left_out = ("event_id", "format", "received_at", "lifecycle")
    identity = {k: v for k, v in event.items() if k not in left_out}
    identity["schema"] = 1
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()


def with_id(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` (written without ``event_id``) completed with its independently computed id."""
    assert "event_id" not in event
    return {**event, "event_id": expected_id(event)}


def blank_event(**values: Any) -> dict[str, Any]:
    """An event with every key of the contract set to its 'absent' value, then ``values``.

    Only for tests that are not about the full literal event; the seed tests spell
    every key out.
    """
    event: dict[str, Any] = {key: None for key in CONTRACT_KEYS if key != "event_id"}
    event.update(schema=2, content_files=[], copy_to=[], extra={})
    event.update({key.rstrip("_"): value for key, value in values.items()})
    return event
