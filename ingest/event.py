"""The schema-2 event: normalization, identity and routing. Pure: no I/O.

``normalize`` turns the fields of a parsed postback into the event the contract defines
(its ``lifecycle`` left ``None``: the worker fills it in with :func:`with_lifecycle`);
``event_id`` hashes its identity; ``routing_key`` and ``amqp_headers`` give what goes on
the wire. ``Event`` is a typed view for downstream Python code.

Schema 2 is schema 1 plus ``lifecycle``, and an event's id is the one schema 1 gave it: the
identity leaves ``lifecycle`` out and counts ``schema`` as ``1``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ingest.codes import classify
from ingest.postback import NotAPostback

if TYPE_CHECKING:
    from ingest.lifecycle import Step

SCHEMA = 2
# The schema the identity is computed as: ids stay what schema 1 gave (contract section 4).
IDENTITY_SCHEMA = 1

# Sinch's field name -> the event's key, for every named scalar field.
SCALAR_FIELDS: dict[str, str] = {
    "status": "status_text",
    "status-details": "status_details",
    "sent-as": "sent_as",
    "tracking-id": "tracking_id",
    "client-reference": "client_reference",
    "mms-id": "mms_id",
    "operator-id": "operator_id",
    "handset": "handset",
    "from": "from",
    "to": "to",
    "timestamp": "timestamp",
    "error-info": "error_info",
    "content-type": "content_type",
    "content-name": "content_name",
    "audio-name": "audio_name",
    "video-name": "video_name",
    "keyword": "keyword",
    "message-subject": "message_subject",
}
# List fields: Sinch's name -> (the event's key, the name of each item's element).
LIST_FIELDS: dict[str, tuple[str, str]] = {
    "content": ("content_files", "file"),
    "copy-to": ("copy_to", "number"),
}
KNOWN_FIELDS = frozenset({"origin", "code", *SCALAR_FIELDS, *LIST_FIELDS})
_SCALAR_KEYS = tuple(SCALAR_FIELDS.values())
_ORIGIN_CODE = frozenset({"origin", "code"})

# Every key of a schema-2 event, in the order it is written.
EVENT_KEYS: tuple[str, ...] = (
    "schema",
    "event_id",
    "origin",
    "code",
    "family",
    "status",
    "final",
    *SCALAR_FIELDS.values(),
    "content_files",
    "copy_to",
    "extra",
    "format",
    "received_at",
    "lifecycle",
)
# The keys of a schema-1 event: schema 2 without ``lifecycle``.
SCHEMA_1_KEYS: tuple[str, ...] = tuple(key for key in EVENT_KEYS if key != "lifecycle")
NOT_IDENTITY = frozenset({"event_id", "format", "received_at", "lifecycle"})
# The keys of ``lifecycle``, in the order they are written.
LIFECYCLE_KEYS: tuple[str, ...] = ("seq", "previous", "current", "final", "stale")

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2}))?$",
    re.IGNORECASE,
)
_ROUTING_UNSAFE = re.compile(r"[.#*\s]+")


def text(value: Any) -> str | None:
    """A named field's value as a stripped string; empty means ``None``.

    JSON numbers and booleans become their JSON text (``31003`` -> ``"31003"``); an XML
    element with attributes gives its text; anything else structured becomes compact JSON.
    """
    if value is None:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if isinstance(value, dict) and set(value) - {"#text"} <= {k for k in value if k[:1] == "@"}:
        return text(value.get("#text"))
    return orjson.dumps(value).decode()


def items(value: Any, element: str) -> list[str]:
    """The texts of a list field: XML ``<content><file>U</file>...`` or JSON
    ``[{"file": "U"}, ...]``, in order; one item is a list of one."""
    out: list[str] = []
    pending: list[Any] = [value]
    while pending:
        item = pending.pop(0)
        if item is None:
            continue
        if isinstance(item, list):
            pending[0:0] = item
        elif isinstance(item, dict) and element in item:
            pending.insert(0, item[element])
        else:
            value_text = text(item)
            if value_text is not None:
                out.append(value_text)
    return out


# The offsets a timestamp may carry: hours 00..18, minutes 00..59 (as java.time allows).
_MAX_OFFSET_HOURS = 18


def _offset(sign: str, hours: str, minutes: str) -> timedelta | None:
    """The offset to add to local time for UTC, or ``None`` when it is out of range."""
    if int(hours) > _MAX_OFFSET_HOURS or int(minutes) > 59:
        return None
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return -offset if sign == "+" else offset


def _iso(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS``, the year zero-padded to four digits (strftime does not)."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def utc_timestamp(value: str | None) -> str | None:
    """Sinch's timestamp in UTC as ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``.

    Offsets ``-05:00`` and ``-0500`` (hours up to 18, minutes up to 59) are applied, no
    offset means UTC, the fraction digits are kept as sent, and text that is no timestamp
    (an offset out of range, a date outside years 1..9999 in UTC) is returned verbatim.
    """
    if value is None:
        return None
    match = _TIMESTAMP.match(value)
    if match is None:
        return value
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return value
    if sign is not None:
        offset = _offset(sign, off_h, off_m)
        if offset is None:
            return value
        try:
            moment += offset
        except OverflowError:  # before year 1 or after 9999 in UTC
            return value
    return _iso(moment) + (fraction or "") + "Z"


@functools.lru_cache(maxsize=4)
def _whole_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def received_at_now() -> str:
    """The receiver's acceptance time, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (on the hot path:
    the date and time are formatted once a second)."""
    now = time.time()
    second = int(now)
    return f"{_whole_second(second)}.{int((now - second) * 1_000_000):06d}Z"


def event_id(event: dict[str, Any]) -> str:
    """Lower-case hex SHA-256 of the event without ``event_id``, ``format``, ``received_at``
    and ``lifecycle``, with ``schema`` counted as ``1``, as compact JSON with sorted keys: the
    id schema 1 gave the same postback."""
    if event.keys() >= NOT_IDENTITY:  # an event from normalize: drop its four keys
        identity = event.copy()
        for key in NOT_IDENTITY:
            del identity[key]
    else:
        identity = {k: v for k, v in event.items() if k not in NOT_IDENTITY}
    identity["schema"] = IDENTITY_SCHEMA
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()


def normalize(fields: dict[str, Any], fmt: str, received_at: str) -> dict[str, Any]:
    """The schema-2 event for a parsed postback's ``fields``, its ``lifecycle`` ``None``.

    Raises :class:`NotAPostback` when ``origin`` or ``code`` is missing or empty.
    """
    origin = text(fields.get("origin"))
    code = text(fields.get("code"))
    if origin is None or code is None:
        missing = " and ".join(n for n, v in (("origin", origin), ("code", code)) if v is None)
        raise NotAPostback(f"not a postback: no {missing}")
    code = code.upper()
    # One pass over the fields sent: each named field's text, everything else to extra
    # (in the order sent); named fields not sent stay None.
    scalars: dict[str, Any] = dict.fromkeys(_SCALAR_KEYS)
    extra: dict[str, Any] = {}
    lists: dict[str, Any] = {}
    for name, value in fields.items():
        key = SCALAR_FIELDS.get(name)
        if key is not None:
            scalars[key] = text(value)
        elif name in LIST_FIELDS:
            lists[name] = value
        elif name not in _ORIGIN_CODE:
            extra[name] = value
    scalars["timestamp"] = utc_timestamp(scalars["timestamp"])
    family, status, final = classify(code, scalars["status_text"])
    event: dict[str, Any] = {
        "schema": SCHEMA,
        "event_id": "",
        "origin": origin,
        "code": code,
        "family": family,
        "status": status,
        "final": final,
        **scalars,
    }
    for name, (key, element) in LIST_FIELDS.items():
        event[key] = items(lists.get(name), element)
    event["extra"] = extra
    event["format"] = fmt
    event["received_at"] = received_at
    event["lifecycle"] = None
    event["event_id"] = event_id(event)
    return event


def with_lifecycle(event: dict[str, Any], step: Step | None) -> dict[str, Any]:
    """``event`` with its ``lifecycle`` set to ``step`` (``None``: no lifecycle), as a new dict
    in the same key order; the id does not change (``lifecycle`` is not identity).

    Raises :class:`ValueError` for a step given to an event without ``tracking_id``: such an
    event has no lifecycle (contract section 4).
    """
    if step is not None and event.get("tracking_id") is None:
        raise ValueError("an event without tracking_id has no lifecycle")
    return {**event, "lifecycle": None if step is None else step.as_dict()}


def _segment(value: str) -> str:
    return _ROUTING_UNSAFE.sub("_", value.lower()) or "_"


def routing_key(event: dict[str, Any]) -> str:
    """``ORIGIN.FAMILY.STATUS.CODE`` in lower case, e.g. ``mms_mt.delivery.delivered.n102``.

    Characters that mean something to a topic exchange (``.``, ``#``, ``*``, white space)
    inside one part become ``_``, so an odd origin cannot shift the parts.
    """
    return _routing_key(event["origin"], event["family"], event["status"], event["code"])


@functools.lru_cache(maxsize=4096)
def _routing_key(origin: str, family: str, status: str, code: str) -> str:
    # Few distinct combinations, each seen again and again: worked out once each.
    return ".".join(_segment(part) for part in (origin, family, status, code))


def amqp_headers(event: dict[str, Any]) -> dict[str, str]:
    """Headers ``code``, ``origin``, ``status``, ``tracking_id``; null values left out."""
    headers = {
        "code": event["code"],
        "origin": event["origin"],
        "status": event["status"],
        "tracking_id": event["tracking_id"],
    }
    return {k: v for k, v in headers.items() if v is not None}


def parse_received_at(value: str) -> datetime:
    """``received_at`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) back as an aware UTC datetime."""
    if len(value) != 27 or value[10] != "T" or value[19] != "." or value[26] != "Z":
        raise ValueError(f"not a received_at timestamp: {value!r}")
    return datetime(
        int(value[0:4]), int(value[5:7]), int(value[8:10]),
        int(value[11:13]), int(value[14:16]), int(value[17:19]), int(value[20:26]),
        tzinfo=UTC,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Where an event stands in its lifecycle (contract section 6): ``seq`` (higher is
    later), the ``previous`` and ``current`` status, whether ``current`` is ``final``, and
    whether this event is ``stale`` (it did not become ``current``)."""

    seq: int
    previous: str | None
    current: str
    final: bool
    stale: bool

    @classmethod
    def from_dict(cls, data: Any) -> Lifecycle:
        if not isinstance(data, dict):
            raise ValueError("an event's lifecycle is a JSON object or null")
        missing = [key for key in LIFECYCLE_KEYS if key not in data]
        if missing:
            raise ValueError(f"lifecycle lacks {', '.join(missing)}")
        seq, previous, current = data["seq"], data["previous"], data["current"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"lifecycle seq is a positive integer, not {seq!r}")
        if not isinstance(current, str) or not (previous is None or isinstance(previous, str)):
            raise ValueError("lifecycle previous and current are statuses")
        if not isinstance(data["final"], bool) or not isinstance(data["stale"], bool):
            raise ValueError("lifecycle final and stale are booleans")
        return cls(seq, previous, current, data["final"], data["stale"])

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in LIFECYCLE_KEYS}


# The schemas ``Event`` reads: schema 1 is schema 2 without ``lifecycle``.
READABLE_SCHEMAS = frozenset({1, SCHEMA})


@dataclass(frozen=True, slots=True)
class Event:
    """An event as downstream Python code sees it: ``Event.from_json(message.body)``.

    Reads schema 2 and, for messages published before the upgrade (a queue's backlog, a
    history replayed), schema 1, which has no ``lifecycle``: it reads as ``None``, and
    ``to_dict`` gives it back without the key, as it was.
    """

    schema: int
    event_id: str
    origin: str
    code: str
    family: str
    status: str
    final: bool
    status_text: str | None
    status_details: str | None
    sent_as: str | None
    tracking_id: str | None
    client_reference: str | None
    mms_id: str | None
    operator_id: str | None
    handset: str | None
    from_: str | None
    to: str | None
    timestamp: str | None
    error_info: str | None
    content_type: str | None
    content_name: str | None
    audio_name: str | None
    video_name: str | None
    keyword: str | None
    message_subject: str | None
    content_files: list[str] = field(default_factory=list)
    copy_to: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = "json"
    received_at: str = ""
    lifecycle: Lifecycle | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        schema = data.get("schema")
        if isinstance(schema, bool) or schema not in READABLE_SCHEMAS:
            raise ValueError(f"unsupported event schema {schema!r}")
        keys = EVENT_KEYS if schema == SCHEMA else SCHEMA_1_KEYS
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(f"event lacks {', '.join(missing)}")
        values = {("from_" if key == "from" else key): data[key] for key in keys}
        raw = data.get("lifecycle")
        values["lifecycle"] = None if raw is None else Lifecycle.from_dict(raw)
        return cls(**values)

    @classmethod
    def from_json(cls, body: bytes | str) -> Event:
        data = orjson.loads(body)
        if not isinstance(data, dict):
            raise ValueError("an event is a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        keys = EVENT_KEYS if self.schema == SCHEMA else SCHEMA_1_KEYS
        out = {key: getattr(self, "from_" if key == "from" else key) for key in keys}
        if "lifecycle" in out:
            out["lifecycle"] = None if self.lifecycle is None else self.lifecycle.to_dict()
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @property
    def received(self) -> datetime:
        return parse_received_at(self.received_at)

    @property
    def stale(self) -> bool:
        """Whether this event did not become its lifecycle's ``current`` (``False`` without
        a lifecycle)."""
        return self.lifecycle is not None and self.lifecycle.stale


__all__ = [
    "EVENT_KEYS",
    "LIFECYCLE_KEYS",
    "SCHEMA",
    "Event",
    "Lifecycle",
    "NotAPostback",
    "amqp_headers",
    "event_id",
    "normalize",
    "received_at_now",
    "routing_key",
    "utc_timestamp",
    "with_lifecycle",
]
