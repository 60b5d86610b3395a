"""The quarantine message: written by the worker, read back by ``replay`` and ``stats``.

Two kinds of message reach ``NS.quarantine``:

- a **postback** that cannot become an event (not well-formed, not a postback, a routing key
  over AMQP's limit, a failure while it alone was processed): its body byte for byte, the
  reason in ``x-error``, and what the receiver knew of it in ``x-postback-id``,
  ``x-received-at``, ``x-format`` and ``x-charset``. Replay sends it back as a one-record
  intake envelope.
- a whole **intake message** that cannot be unpacked at all (a corrupt envelope published by
  hand, say), after a bounded number of deliveries, or one the broker dead-lettered
  (``x-first-death-reason``): as it was, with the reason added in ``x-error``. Replay sends
  a valid envelope back as it is; anything else it reports and leaves in place.

Whatever the postback carried, the message stays within AMQP's limits: a property over 255
bytes is shortened, its full value kept in a header, and the reason is bounded.
"""

from __future__ import annotations

import uuid

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from ingest import envelope, mediatype
from ingest.envelope import BadEnvelope, Record
from ingest.event import received_at_now

SHORTSTR = 255  # bytes: AMQP's limit for a routing key and for every string property
REASON_MAX = 1000  # characters of x-error kept; a longer reason ends with "…"


class NotReplayable(Exception):
    """A quarantined message that cannot go back to the intake; ``str(exc)`` says why."""


def fits_shortstr(value: str) -> bool:
    return len(value.encode("utf-8", "surrogatepass")) <= SHORTSTR


def bounded(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 1] + "…"


def content_type_of(record: Record) -> str:
    """``application/xml; charset=...`` (or JSON); without the charset when that would be
    over AMQP's limit for a property (``x-charset`` always has it in full)."""
    media = "application/xml" if record.fmt == "xml" else "application/json"
    if record.charset:
        full = f"{media}; charset={record.charset}"
        if fits_shortstr(full):
            return full
    return media


def headers_of(record: Record, reason: str) -> dict[str, str]:
    headers = {
        "x-error": bounded(reason),
        "x-postback-id": record.postback_id,
        "x-received-at": record.received_at,
        "x-format": record.fmt,
    }
    if record.charset:
        headers["x-charset"] = record.charset
    return headers


def postback(record: Record, reason: str) -> aio_pika.Message:
    """The quarantine message of one postback."""
    return aio_pika.Message(
        record.body,
        content_type=content_type_of(record),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=dict(headers_of(record, reason)),
    )


def intake_message(message: AbstractIncomingMessage, reason: str) -> aio_pika.Message:
    """The quarantine message of a whole intake message that cannot be unpacked."""
    headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
    headers["x-error"] = bounded(reason)
    return aio_pika.Message(
        message.body,
        content_type=message.content_type,
        message_id=message.message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers,
    )


# --- reading it back -------------------------------------------------------------------------


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def reason(message: AbstractIncomingMessage) -> str:
    """Why a message is in quarantine: the worker's header ``x-error``, else the broker's
    dead-letter reason (``x-first-death-reason``, e.g. ``delivery_limit``) and queue."""
    headers = message.headers or {}
    error = headers.get("x-error")
    if error:
        return _text(error)
    death = headers.get("x-first-death-reason")
    if death:
        where = headers.get("x-first-death-queue")
        source = f" from {_text(where)}" if where else ""
        return f"dead-lettered by the broker{source}: {_text(death)}"
    return "unknown (no x-error or x-first-death-reason header)"


def replayable(message: AbstractIncomingMessage) -> tuple[aio_pika.Message, int]:
    """The intake message a quarantined one goes back as, and how many postbacks it holds.

    A whole intake message goes back as it was, with its message id, so dedup marks it may
    hold are its own again. A single postback goes back as a one-record envelope. Raises
    :class:`NotReplayable` for a message that is neither (a corrupt envelope, say).
    """
    headers = message.headers or {}
    message_id = message.message_id
    if message.content_type == envelope.CONTENT_TYPE:
        try:
            count = len(envelope.unpack(message.body))
        except BadEnvelope as exc:
            raise NotReplayable(f"not a postback batch: {exc}") from None
        body = message.body
    else:
        fmt, sniffed_charset = mediatype.detect(message.content_type, message.body)
        charset_header = headers.get("x-charset")
        charset = _text(charset_header) if charset_header else sniffed_charset
        record = Record(
            _text(headers.get("x-postback-id") or message_id or uuid.uuid4().hex),
            _text(headers.get("x-received-at") or received_at_now()),
            _text(headers.get("x-format") or fmt or "xml"),
            charset,
            message.body,
        )
        body, count, message_id = envelope.pack([record]), 1, None
    out = aio_pika.Message(
        body,
        content_type=envelope.CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id or uuid.uuid4().hex,
        headers={"x-postbacks": count, "x-replayed": True},
    )
    return out, count


LISTING_HEADER = f"{'#':>5}  {'postbacks':>9}  {'received_at':<27}  {'id':<32}  reason"


def describe(message: AbstractIncomingMessage, position: int) -> str:
    """One line of ``postbacks replay --dry-run``: position, postbacks carried, when the
    (first) postback was received, its id, and the reason."""
    headers = message.headers or {}
    received = headers.get("x-received-at")
    postback_id = headers.get("x-postback-id") or message.message_id
    count: object = headers.get("x-postbacks", 1)
    if message.content_type == envelope.CONTENT_TYPE:
        try:
            records = envelope.unpack(message.body)
        except BadEnvelope:
            records = []
        if records:
            count = len(records)
            received = received or records[0].received_at
            postback_id = postback_id or records[0].postback_id
    return (
        f"{position:>5}  {_text(count):>9}  {_text(received or '-'):<27}  "
        f"{_text(postback_id or '-'):<32}  {reason(message)}"
    )
