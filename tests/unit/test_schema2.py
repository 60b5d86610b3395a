"""Schema 2 (contract section 4): the ``lifecycle`` key, ids that stay the schema-1 ids, the
typed ``Event`` and ``Lifecycle``, and the ``timed_out`` event of section 6."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from ingest.event import (
    EVENT_KEYS,
    SCHEMA,
    Event,
    Lifecycle,
    event_id,
    routing_key,
    with_lifecycle,
)
from ingest.lifecycle import Step, apply, timed_out_event
from tests.seeds import JSON_N101, SEED_EXAMPLES, XML_N501

from ._support import CONTRACT_KEYS, event_of, expected_id

# ---------------------------------------------------------------------------------------
# Identity: a known answer, worked out by hand from the contract's rule.
# ---------------------------------------------------------------------------------------

# The identity of Sinch's "N101 MMS sent" JSON example (003): the event of section 4 with
# event_id, format, received_at and lifecycle left out and schema counted as 1 ...
N101_IDENTITY: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N101",
    "family": "delivery",
    "status": "sent",
    "final": False,
    "status_text": "Sent",
    "status_details": "Message Sent",
    "sent_as": "MMS",
    "tracking_id": "abc123xyz",
    "client_reference": "send-001",
    "mms_id": None,
    "operator_id": None,
    "handset": None,
    "from": "18885551234",
    "to": "17745550001",
    "timestamp": "2026-04-24T18:30:00Z",
    "error_info": None,
    "content_type": None,
    "content_name": None,
    "audio_name": None,
    "video_name": None,
    "keyword": None,
    "message_subject": None,
    "content_files": [],
    "copy_to": [],
    "extra": {},
}
# ... as compact JSON with sorted keys, in UTF-8 ...
N101_IDENTITY_JSON = (
    b'{"audio_name":null,"client_reference":"send-001","code":"N101","content_files":[],'
    b'"content_name":null,"content_type":null,"copy_to":[],"error_info":null,"extra":{},'
    b'"family":"delivery","final":false,"from":"18885551234","handset":null,"keyword":null,'
    b'"message_subject":null,"mms_id":null,"operator_id":null,"origin":"MMS_MT","schema":1,'
    b'"sent_as":"MMS","status":"sent","status_details":"Message Sent","status_text":"Sent",'
    b'"timestamp":"2026-04-24T18:30:00Z","to":"17745550001","tracking_id":"abc123xyz",'
    b'"video_name":null}'
)
# ... and its SHA-256, written out.
N101_EVENT_ID = "b814766c69916a00e5f5b5a424867c261fefc4357751abbedc6595e06c2243a0"

# The ids schema 1 gave every seed example (recorded from the schema-1 code): a postback
# Sinch retries across the upgrade must still be a duplicate.
SCHEMA_1_IDS = {
    "xml-N101-binary": "32e0582148f0022b248458e2ee27e712ba7e4ef980638e968cc9052273de405d",
    "xml-N101-html": "3d8c22e776fc7d042b12f53729c119374f4db1d342bc92e3bfd75a386c472258",
    "xml-N102-binary": "bcbae3a58d3bd7961f6e1398ba7110047a8e7328d8beecd6f91a39f9a3a988b3",
    "xml-N102-html": "1241e9e86121b405febbcd9b7e32b7e7966f3b5452a1c27a90a0ab7dfdfe3dd9",
    "xml-E101": "f148b71e382a444993166ffddfd486a78e969e4af3e08d6d59b5cf96955849c3",
    "xml-E102": "ba6fd81e8d9fca744bac7fca3a5ab9094b521ea6094c775a5132bf1200ab32f7",
    "xml-N501": "ecfa5d38eeed7343e6bb78486c63c6bb0cb0e6be0f586b44476d4b8e2a7547f8",
    "xml-N502": "b5341c246456699c299f4469e941d9ef0c2fa38537f72099d39e5fedf7c94fb6",
    "xml-N003": "48c4c0d7d82d988b2f95d7d077dd822ec7221ea0ed29247b130c87d99234d602",
    "xml-E002": "a60947aa71f292c94e9c29e86067884e6f4e837774a08f823571ddaf83766508",
    "json-N101": N101_EVENT_ID,
    "json-N102": "5eca7f6cdb1f19f754da4c30610854e167b650200f3edc871f8ebfff03b16d81",
    "json-E102": "a8effa3573ae3a44a3dd0509dec0b4b3c0d7e01c3cbbeb308cb1339cddaf8824",
    "json-N003": "fa9c427d8b563eecc47187635d3d9a65d75ac2612d68c9cbde993876c60a42a3",
}


def test_known_answer_the_identity_serializes_and_hashes_as_written_out() -> None:
    assert orjson.dumps(N101_IDENTITY, option=orjson.OPT_SORT_KEYS) == N101_IDENTITY_JSON
    assert hashlib.sha256(N101_IDENTITY_JSON).hexdigest() == N101_EVENT_ID


def test_known_answer_the_seed_example_has_the_hand_computed_id() -> None:
    event = event_of(JSON_N101, "json")
    assert event["event_id"] == N101_EVENT_ID
    assert event["schema"] == 2
    # The identity is the event, minus what is not identity, with schema counted as 1.
    left_out = {"event_id", "format", "received_at", "lifecycle"}
    assert {k: v for k, v in event.items() if k not in left_out} | {"schema": 1} == N101_IDENTITY


@pytest.mark.parametrize(("name", "body", "fmt"), [(n, b, f) for n, b, f, _ in SEED_EXAMPLES])
def test_schema_2_ids_are_the_schema_1_ids(name: str, body: bytes, fmt: str) -> None:
    assert event_of(body, fmt)["event_id"] == SCHEMA_1_IDS[name]


def test_lifecycle_and_schema_do_not_change_the_id() -> None:
    event = event_of(JSON_N101, "json")
    step = Step(7, "sent", "delivered", True, True)
    assert with_lifecycle(event, step)["event_id"] == N101_EVENT_ID
    assert expected_id(with_lifecycle(event, step)) == N101_EVENT_ID
    assert event_id(with_lifecycle(event, step)) == N101_EVENT_ID
    assert event_id({**event, "schema": 1}) == N101_EVENT_ID


# ---------------------------------------------------------------------------------------
# The lifecycle key.
# ---------------------------------------------------------------------------------------


def test_every_event_has_the_lifecycle_key_last_and_none_from_normalize() -> None:
    assert EVENT_KEYS[-2:] == ("received_at", "lifecycle")
    assert set(EVENT_KEYS) == set(CONTRACT_KEYS)
    assert SCHEMA == 2
    for _, body, fmt, _ in SEED_EXAMPLES:
        event = event_of(body, fmt)
        assert tuple(event) == EVENT_KEYS
        assert event["lifecycle"] is None


def test_with_lifecycle_sets_the_step_keeps_the_order_and_the_original() -> None:
    event = event_of(JSON_N101, "json")
    _, step = apply(None, event["status"], event["final"])
    done = with_lifecycle(event, step)
    assert done["lifecycle"] == {
        "seq": 1,
        "previous": None,
        "current": "sent",
        "final": False,
        "stale": False,
    }
    assert tuple(done) == EVENT_KEYS
    assert {k: v for k, v in done.items() if k != "lifecycle"} == {
        k: v for k, v in event.items() if k != "lifecycle"
    }
    assert event["lifecycle"] is None  # a new dict
    assert with_lifecycle(done, None)["lifecycle"] is None
    assert orjson.loads(orjson.dumps(done)) == done


def test_with_lifecycle_refuses_a_step_for_an_event_without_tracking_id() -> None:
    no_tracking = event_of(b"<postback><origin>MMS_MO</origin><code>N401</code></postback>", "xml")
    assert with_lifecycle(no_tracking, None)["lifecycle"] is None
    with pytest.raises(ValueError, match="tracking_id"):
        with_lifecycle(no_tracking, Step(1, None, "received", True, False))


# ---------------------------------------------------------------------------------------
# The typed Event and Lifecycle.
# ---------------------------------------------------------------------------------------


def test_event_reads_and_writes_a_lifecycle() -> None:
    step = Step(3, "sent", "delivered", True, True)
    data = with_lifecycle(event_of(JSON_N101, "json"), step)
    event = Event.from_json(orjson.dumps(data))
    assert event.lifecycle == Lifecycle(3, "sent", "delivered", True, True)
    assert event.stale is True
    assert event.to_dict() == data
    assert tuple(event.to_dict()) == EVENT_KEYS
    assert Event.from_json(event.to_json()) == event


def test_event_without_a_lifecycle_reads_none() -> None:
    data = event_of(JSON_N101, "json")
    event = Event.from_dict(data)
    assert event.lifecycle is None and event.stale is False
    assert event.to_dict() == data


def test_event_reads_schema_1_without_a_lifecycle_and_gives_it_back_as_it_was() -> None:
    schema_1 = {k: v for k, v in event_of(JSON_N101, "json").items() if k != "lifecycle"}
    schema_1["schema"] = 1
    event = Event.from_json(orjson.dumps(schema_1))
    assert event.schema == 1 and event.lifecycle is None
    assert event.event_id == N101_EVENT_ID
    assert event.to_dict() == schema_1
    assert "lifecycle" not in event.to_dict()


@pytest.mark.parametrize(
    ("lifecycle", "problem"),
    [
        ([1], "JSON object"),
        ({"seq": 1, "previous": None, "current": "sent", "final": False}, "lacks stale"),
        ({"seq": 0, "previous": None, "current": "sent", "final": False, "stale": False}, "seq"),
        ({"seq": True, "previous": None, "current": "s", "final": False, "stale": False}, "seq"),
        ({"seq": "2", "previous": None, "current": "s", "final": False, "stale": False}, "seq"),
        ({"seq": 2, "previous": 1, "current": "s", "final": False, "stale": False}, "status"),
        ({"seq": 2, "previous": None, "current": None, "final": False, "stale": False}, "status"),
        ({"seq": 2, "previous": None, "current": "s", "final": 0, "stale": False}, "boolean"),
        ({"seq": 2, "previous": None, "current": "s", "final": False, "stale": "no"}, "boolean"),
    ],
)
def test_event_refuses_a_malformed_lifecycle(lifecycle: Any, problem: str) -> None:
    data = {**event_of(JSON_N101, "json"), "lifecycle": lifecycle}
    with pytest.raises(ValueError, match=problem):
        Event.from_json(orjson.dumps(data))


# ---------------------------------------------------------------------------------------
# The timed_out event (section 6, Receipt timeouts).
# ---------------------------------------------------------------------------------------

MADE_AT = "2026-04-27T18:30:00.250000Z"


def test_timed_out_event_has_the_contract_shape() -> None:
    latest = with_lifecycle(event_of(JSON_N101, "json"), Step(1, None, "sent", False, False))
    made = timed_out_event(latest, N101_EVENT_ID, 259200, MADE_AT)
    expected: dict[str, Any] = {
        "schema": 2,
        "origin": "MMS_MT",
        "code": "TIMEOUT",
        "family": "delivery",
        "status": "timed_out",
        "final": True,
        "status_text": None,
        "status_details": None,
        "sent_as": "MMS",
        "tracking_id": "abc123xyz",
        "client_reference": "send-001",
        "mms_id": None,
        "operator_id": None,
        "handset": None,
        "from": "18885551234",
        "to": "17745550001",
        "timestamp": None,
        "error_info": None,
        "content_type": None,
        "content_name": None,
        "audio_name": None,
        "video_name": None,
        "keyword": None,
        "message_subject": None,
        "content_files": [],
        "copy_to": [],
        "extra": {
            "after_seconds": "259200",
            "last_code": "N101",
            "first_event_id": N101_EVENT_ID,
        },
        "format": "timer",
        "received_at": MADE_AT,
        "lifecycle": None,
    }
    assert made == {**expected, "event_id": expected_id(expected)}
    assert tuple(made) == EVENT_KEYS
    assert routing_key(made) == "mms_mt.delivery.timed_out.timeout"
    event = Event.from_json(orjson.dumps(made))
    assert (event.format, event.code, event.final) == ("timer", "TIMEOUT", True)


def test_timed_out_event_copies_the_named_fields_of_the_latest_event_only() -> None:
    latest = {
        **event_of(XML_N501, "xml"),
        "status_text": "x",
        "handset": "h",
        "timestamp": "2014-06-07T12:27:34Z",
        "keyword": "k",
        "content_files": ["f"],
        "copy_to": ["1"],
        "extra": {"other": "1"},
    }
    made = timed_out_event(latest, "a" * 64, 2, MADE_AT)
    assert routing_key(made) == "mms_mt.discovery.timed_out.timeout"
    assert (made["mms_id"], made["operator_id"], made["sent_as"]) == ("39755", "31004", "MMS")
    assert (made["from"], made["to"]) == ("28444", "12399471613")
    assert made["status_text"] is made["handset"] is made["timestamp"] is made["keyword"] is None
    assert made["content_files"] == made["copy_to"] == []
    assert made["extra"] == {"after_seconds": "2", "last_code": "N501", "first_event_id": "a" * 64}


def test_two_timers_of_one_lifecycle_make_one_id() -> None:
    latest = event_of(JSON_N101, "json")
    one = timed_out_event(latest, N101_EVENT_ID, 259200, MADE_AT)
    two = timed_out_event(dict(latest), N101_EVENT_ID, 259200, MADE_AT)
    later = timed_out_event(latest, N101_EVENT_ID, 259200, "2026-04-27T18:31:02.000001Z")
    assert one == two
    assert one["event_id"] == two["event_id"] == later["event_id"]
    assert later["received_at"] != one["received_at"]
    # The latest event's lifecycle and received_at are not the timer's identity either.
    stepped = with_lifecycle(latest, Step(4, "sent", "sent", False, False))
    moved = {**stepped, "received_at": "2030-01-01T00:00:00.000000Z"}
    assert timed_out_event(moved, N101_EVENT_ID, 259200, MADE_AT)["event_id"] == one["event_id"]


def test_timers_of_other_lifecycles_or_settings_have_other_ids() -> None:
    latest = event_of(JSON_N101, "json")
    base = timed_out_event(latest, N101_EVENT_ID, 259200, MADE_AT)["event_id"]
    others = [
        timed_out_event({**latest, "tracking_id": "other"}, N101_EVENT_ID, 259200, MADE_AT),
        timed_out_event(latest, "b" * 64, 259200, MADE_AT),
        timed_out_event(latest, N101_EVENT_ID, 2, MADE_AT),
        timed_out_event({**latest, "code": "N013"}, N101_EVENT_ID, 259200, MADE_AT),
    ]
    assert all(other["event_id"] != base for other in others)
