"""What a worker makes of a group of intake messages, before any I/O: the batch.

Each postback is judged on its own (:func:`worker.transform.transform`): an event to
publish, or a postback for quarantine. Only an intake message that cannot be unpacked at all
takes the poison path (retried a bounded number of times, then quarantined whole). A message
this project did not write and that carries no message id is first *adopted*: published
back into the intake as an envelope with an id of its own, in the same transaction as its
ack, so that every later delivery of it has an identity that dedup can tell from an
identical copy.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from ingest import envelope, mediatype
from ingest.envelope import Record
from ingest.event import parse_received_at, received_at_now
from worker.timers import Timer
from worker.transform import Outgoing, Rejected, describe, transform

log = logging.getLogger("postbacks.worker")

POISON_DELIVERIES = 3  # an intake message that cannot be unpacked this often is quarantined
MAX_COUNT = 1 << 20  # larger x-postbacks values are taken as 1 (a batch bound, not a fact)


@dataclass(slots=True)
class Item:
    """One postback that becomes an event, unless its event id was published already."""

    message: AbstractIncomingMessage
    out: Outgoing
    mark: str  # who claims the event id: intake message id / postback id


@dataclass(slots=True)
class Poison:
    message: AbstractIncomingMessage
    reason: str


@dataclass(slots=True)
class Adopted:
    message: AbstractIncomingMessage
    again: aio_pika.Message  # the same postbacks as an envelope with a message id


@dataclass(slots=True)
class Batch:
    """A group of intake messages (in delivery order) and what becomes of each postback."""

    messages: list[AbstractIncomingMessage]
    events: list[Item] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    retry: list[AbstractIncomingMessage] = field(default_factory=list)
    adopted: list[Adopted] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)  # receipt timers to arm
    postbacks: int = 0

    @property
    def claims(self) -> list[tuple[str, str]]:
        return [(item.out.event_id, item.mark) for item in self.events]


def postback_count(message: AbstractIncomingMessage) -> int:
    """The ``x-postbacks`` header as a count for batching; 1 when it is absent or no count."""
    value = (message.headers or {}).get("x-postbacks", 1)
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return value if 1 <= value <= MAX_COUNT else 1
    if isinstance(value, str | bytes) and value.isdigit():
        number = int(value)
        return number if 1 <= number <= MAX_COUNT else 1
    return 1


def delivery_count(message: AbstractIncomingMessage) -> int:
    """Earlier deliveries of this message (quorum queues count them)."""
    value = (message.headers or {}).get("x-delivery-count", 0)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


def _received_at(message: AbstractIncomingMessage) -> str:
    value = (message.headers or {}).get("x-received-at")
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        try:
            parse_received_at(value)
        except ValueError:
            pass
        else:
            return value
    return received_at_now()


def raw_record(message: AbstractIncomingMessage, postback_id: str) -> Record:
    """A message that is not an envelope (published by hand, say) as one raw postback, its
    format sniffed as the receiver would."""
    fmt, charset = mediatype.detect(message.content_type, message.body)
    return Record(postback_id, _received_at(message), fmt or "xml", charset, message.body)


def records_of(message: AbstractIncomingMessage) -> list[Record]:
    """The postbacks in an intake message that has a message id. Raises
    :class:`ingest.envelope.BadEnvelope` for an envelope that cannot be unpacked."""
    if message.content_type == envelope.CONTENT_TYPE:
        return envelope.unpack(message.body)
    return [raw_record(message, str(message.message_id))]


def adopt(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The intake message a message without an id goes back as: an envelope keeps its body
    (a corrupt one then takes the poison path as usual), anything else is wrapped."""
    message_id = uuid.uuid4().hex
    if message.content_type == envelope.CONTENT_TYPE:
        body, count = message.body, postback_count(message)
    else:
        body, count = envelope.pack([raw_record(message, message_id)]), 1
    return aio_pika.Message(
        body,
        content_type=envelope.CONTENT_TYPE,
        message_id=message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={"x-postbacks": count},
    )


def prepare(group: Sequence[AbstractIncomingMessage]) -> Batch:
    """The batch of a group of intake messages. Pure: nothing is published or acked."""
    batch = Batch(list(group))
    for message in group:
        if not message.message_id:
            batch.adopted.append(Adopted(message, adopt(message)))
            continue
        try:
            records = records_of(message)
        except Exception as exc:  # cannot be unpacked at all: bounded retries
            deliveries = delivery_count(message) + 1
            reason = f"intake message cannot be unpacked ({deliveries} deliveries): {describe(exc)}"
            if deliveries >= POISON_DELIVERIES:
                log.error("intake message quarantined", extra={"reason": reason})
                batch.poison.append(Poison(message, reason))
            else:
                log.warning(
                    "intake message cannot be unpacked, will retry", extra={"reason": reason}
                )
                batch.retry.append(message)
            continue
        key = message.message_id
        for record in records:
            batch.postbacks += 1
            result = transform(record)
            if isinstance(result, Rejected):
                log.info(
                    "postback quarantined",
                    extra={"reason": result.reason[:200], "postback_id": record.postback_id},
                )
                batch.rejected.append(result)
            else:
                batch.events.append(Item(message, result, f"{key}/{record.postback_id}"))
    return batch
