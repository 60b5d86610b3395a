"""The intake message format (internal to this project). Pure: no I/O.

Postbacks accepted together share one AMQP message on ``NS.intake`` (group commit), so a
message carries one or more records. Each record keeps the body byte for byte with what
the receiver learned without parsing it: a unique postback id, when it was accepted, the
format (``xml``/``json``) and the HTTP charset, if any.

Wire form: ``PB1``, ``!I`` record count, then per record ``!H`` length + metadata (fields
joined by ``\\x1f``) and ``!I`` length + body.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

CONTENT_TYPE = "application/vnd.postbacks.batch"
MAGIC = b"PB1"
_COUNT = struct.Struct("!I")
_META = struct.Struct("!H")
_BODY = struct.Struct("!I")
_SEP = "\x1f"


class BadEnvelope(ValueError):
    """An intake message that this project did not write."""


@dataclass(slots=True)  # not frozen: built once per postback, and frozen costs 4x as much
class Record:
    postback_id: str
    received_at: str
    fmt: str
    charset: str | None
    body: bytes


RECORD_OVERHEAD = 64  # bytes a record adds to its body in an envelope, at most (its metadata)


def batches(records: Sequence[Record], max_count: int, max_bytes: int) -> Iterator[list[Record]]:
    """``records`` in order, cut into envelopes of at most ``max_count`` records and about
    ``max_bytes`` bytes: a record that alone is larger goes alone."""
    batch: list[Record] = []
    size = 0
    for record in records:
        cost = len(record.body) + RECORD_OVERHEAD
        if batch and (len(batch) >= max_count or size + cost > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += cost
    if batch:
        yield batch


def pack(records: Iterable[Record]) -> bytes:
    parts = [MAGIC, b""]
    for rec in records:
        meta = _SEP.join((rec.postback_id, rec.received_at, rec.fmt, rec.charset or "")).encode()
        parts += (_META.pack(len(meta)), meta, _BODY.pack(len(rec.body)), rec.body)
    parts[1] = _COUNT.pack((len(parts) - 2) // 4)
    return b"".join(parts)


def unpack(data: bytes) -> list[Record]:
    if not data.startswith(MAGIC):
        raise BadEnvelope("intake message does not start with PB1")
    view = memoryview(data)
    pos, end, out = len(MAGIC) + _COUNT.size, len(data), []
    try:
        (count,) = _COUNT.unpack_from(view, len(MAGIC))
        while pos < end:
            (meta_len,) = _META.unpack_from(view, pos)
            pos += _META.size
            meta = bytes(view[pos : pos + meta_len]).decode()
            pos += meta_len
            (body_len,) = _BODY.unpack_from(view, pos)
            pos += _BODY.size
            if pos + body_len > end:
                raise BadEnvelope("intake message is truncated")
            body = bytes(view[pos : pos + body_len])
            pos += body_len
            postback_id, received_at, fmt, charset = meta.split(_SEP)
            out.append(Record(postback_id, received_at, fmt, charset or None, body))
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, BadEnvelope):
            raise
        raise BadEnvelope(f"intake message is malformed: {exc}") from None
    if not out:
        raise BadEnvelope("intake message holds no postback")
    if len(out) != count:
        raise BadEnvelope(f"intake message holds {len(out)} postbacks, its header says {count}")
    return out
