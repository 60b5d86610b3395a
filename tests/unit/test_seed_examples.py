"""Every example of both Sinch seed pages gives exactly the event the contract defines.

Bodies are copied verbatim from ``shared/seeds/000_*.txt`` (XML) and ``003_*.txt`` (JSON).
Each expected event is written out in full, every key, with its id computed independently
from the literal (SHA-256 of the compact, key-sorted JSON of the event without
``event_id``, ``format``, ``received_at`` and ``lifecycle``, ``schema`` counted as 1).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ingest.event import EVENT_KEYS, Event
from tests.seeds import SEED_EXAMPLES, XML_N101_BINARY

from ._support import CONTRACT_KEYS, RECEIVED_AT, event_of, expected_id, with_id

SEED_CASES = [
    pytest.param(body, fmt, expected, id=name) for name, body, fmt, expected in SEED_EXAMPLES
]


@pytest.mark.parametrize(("body", "fmt", "expected"), SEED_CASES)
def test_seed_example_gives_the_contract_event(
    body: bytes, fmt: str, expected: dict[str, Any]
) -> None:
    assert event_of(body, fmt) == with_id(expected)


@pytest.mark.parametrize(("body", "fmt", "expected"), SEED_CASES)
def test_seed_event_id_is_sha256_of_the_sorted_compact_identity(
    body: bytes, fmt: str, expected: dict[str, Any]
) -> None:
    event = event_of(body, fmt)
    assert event["event_id"] == expected_id(expected)
    assert len(event["event_id"]) == 64
    assert event["event_id"] == event["event_id"].lower()


@pytest.mark.parametrize(("body", "fmt", "expected"), SEED_CASES)
def test_seed_event_has_exactly_the_contract_keys_and_serializes(
    body: bytes, fmt: str, expected: dict[str, Any]
) -> None:
    event = event_of(body, fmt)
    assert set(event) == set(CONTRACT_KEYS)
    assert set(EVENT_KEYS) == set(CONTRACT_KEYS)
    # What a subscriber receives is the JSON of the event: it reads back identical.
    assert orjson.loads(orjson.dumps(event)) == with_id(expected)


@pytest.mark.parametrize(("body", "fmt", "expected"), SEED_CASES)
def test_seed_event_reads_back_through_the_event_class(
    body: bytes, fmt: str, expected: dict[str, Any]
) -> None:
    message_body = orjson.dumps(event_of(body, fmt))
    event = Event.from_json(message_body)
    assert event.to_dict() == with_id(expected)
    assert event.from_ == expected["from"]
    assert event.final is expected["final"]


def test_event_class_refuses_another_schema_and_incomplete_events() -> None:
    good = event_of(XML_N101_BINARY, "xml")
    for schema in (3, 0, None, "2", True):
        with pytest.raises(ValueError, match="schema"):
            Event.from_json(orjson.dumps({**good, "schema": schema}))
    with pytest.raises(ValueError, match="lifecycle"):
        Event.from_json(orjson.dumps({k: v for k, v in good.items() if k != "lifecycle"}))
    incomplete = {k: v for k, v in good.items() if k != "copy_to"}
    with pytest.raises(ValueError, match="copy_to"):
        Event.from_json(orjson.dumps(incomplete))
    with pytest.raises(ValueError):
        Event.from_json(b"[1, 2]")


def test_seed_values_that_look_numeric_stay_strings() -> None:
    event = event_of(XML_N101_BINARY, "xml")
    for key in ("operator_id", "mms_id", "from", "to"):
        assert isinstance(event[key], str), key


# ---------------------------------------------------------------------------------------
# MO (N401) postbacks, built from the contract's description of the added fields.
# ---------------------------------------------------------------------------------------

MO_XML_ONE_FILE = b"""\
<postback>
    <origin>MMS_MO</origin>
    <code>N401</code>
    <status>MMS MO received</status>
    <from>0017745550001</from>
    <to>28444</to>
    <keyword>PHOTO</keyword>
    <message-subject>Our holiday</message-subject>
    <content>
        <file>https://mms.example.com/mo/1/image.jpg</file>
    </content>
    <timestamp>2026-04-24T13:30:00-05:00</timestamp>
    <operator-id>31003</operator-id>
</postback>"""

MO_JSON_ONE_FILE = b"""\
{
  "origin": "MMS_MO",
  "code": "N401",
  "status": "MMS MO received",
  "from": "0017745550001",
  "to": "28444",
  "keyword": "PHOTO",
  "message-subject": "Our holiday",
  "content": [{"file": "https://mms.example.com/mo/1/image.jpg"}],
  "timestamp": "2026-04-24T13:30:00-05:00",
  "operator-id": "31003"
}"""

EVENT_MO_ONE_FILE: dict[str, Any] = {
    "schema": 2,
    "origin": "MMS_MO",
    "code": "N401",
    "family": "inbound",
    "status": "received",
    "final": True,
    "status_text": "MMS MO received",
    "status_details": None,
    "sent_as": None,
    "tracking_id": None,
    "client_reference": None,
    "mms_id": None,
    "operator_id": "31003",
    "handset": None,
    "from": "0017745550001",
    "to": "28444",
    "timestamp": "2026-04-24T18:30:00Z",
    "error_info": None,
    "content_type": None,
    "content_name": None,
    "audio_name": None,
    "video_name": None,
    "keyword": "PHOTO",
    "message_subject": "Our holiday",
    "content_files": ["https://mms.example.com/mo/1/image.jpg"],
    "copy_to": [],
    "extra": {},
    "format": "xml",
    "received_at": RECEIVED_AT,
    "lifecycle": None,
}

MO_XML_GROUP = b"""\
<postback>
    <origin>MMS_MO</origin>
    <code>N401</code>
    <from>17745550001</from>
    <to>28444</to>
    <keyword>GROUP</keyword>
    <message-subject>Plans</message-subject>
    <content>
        <file>https://mms.example.com/mo/2/c.txt</file>
        <file>https://mms.example.com/mo/2/a.jpg</file>
        <file>https://mms.example.com/mo/2/b.mp4</file>
    </content>
    <copy-to>
        <number>17745550003</number>
        <number>017745550002</number>
    </copy-to>
    <timestamp>2026-04-24T18:30:00Z</timestamp>
</postback>"""

MO_JSON_GROUP = b"""\
{
  "origin": "MMS_MO",
  "code": "N401",
  "from": "17745550001",
  "to": "28444",
  "keyword": "GROUP",
  "message-subject": "Plans",
  "content": [
    {"file": "https://mms.example.com/mo/2/c.txt"},
    {"file": "https://mms.example.com/mo/2/a.jpg"},
    {"file": "https://mms.example.com/mo/2/b.mp4"}
  ],
  "copy-to": [{"number": "17745550003"}, {"number": "017745550002"}],
  "timestamp": "2026-04-24T18:30:00Z"
}"""

EVENT_MO_GROUP: dict[str, Any] = {
    "schema": 2,
    "origin": "MMS_MO",
    "code": "N401",
    "family": "inbound",
    "status": "received",
    "final": True,
    "status_text": None,
    "status_details": None,
    "sent_as": None,
    "tracking_id": None,
    "client_reference": None,
    "mms_id": None,
    "operator_id": None,
    "handset": None,
    "from": "17745550001",
    "to": "28444",
    "timestamp": "2026-04-24T18:30:00Z",
    "error_info": None,
    "content_type": None,
    "content_name": None,
    "audio_name": None,
    "video_name": None,
    "keyword": "GROUP",
    "message_subject": "Plans",
    "content_files": [
        "https://mms.example.com/mo/2/c.txt",
        "https://mms.example.com/mo/2/a.jpg",
        "https://mms.example.com/mo/2/b.mp4",
    ],
    "copy_to": ["17745550003", "017745550002"],
    "extra": {},
    "format": "xml",
    "received_at": RECEIVED_AT,
    "lifecycle": None,
}

MO_CASES = [
    pytest.param(MO_XML_ONE_FILE, "xml", EVENT_MO_ONE_FILE, id="xml-one-file"),
    pytest.param(MO_JSON_ONE_FILE, "json", EVENT_MO_ONE_FILE, id="json-one-file"),
    pytest.param(MO_XML_GROUP, "xml", EVENT_MO_GROUP, id="xml-group"),
    pytest.param(MO_JSON_GROUP, "json", EVENT_MO_GROUP, id="json-group"),
]


@pytest.mark.parametrize(("body", "fmt", "expected"), MO_CASES)
def test_mo_postback_gives_the_contract_event(
    body: bytes, fmt: str, expected: dict[str, Any]
) -> None:
    assert event_of(body, fmt) == with_id({**expected, "format": fmt})


def test_mo_as_xml_and_as_json_have_one_id() -> None:
    assert event_of(MO_XML_GROUP, "xml")["event_id"] == event_of(MO_JSON_GROUP, "json")["event_id"]
    assert (
        event_of(MO_XML_ONE_FILE, "xml")["event_id"]
        == event_of(MO_JSON_ONE_FILE, "json")["event_id"]
    )


def test_mo_lists_keep_the_order_sent() -> None:
    body = (
        b"<postback><origin>MMS_MO</origin><code>N401</code>"
        b"<content><file>https://x/b</file><file>https://x/a</file></content>"
        b"<copy-to><number>2</number><number>1</number></copy-to></postback>"
    )
    swapped = (
        b"<postback><origin>MMS_MO</origin><code>N401</code>"
        b"<content><file>https://x/a</file><file>https://x/b</file></content>"
        b"<copy-to><number>1</number><number>2</number></copy-to></postback>"
    )
    event = event_of(body, "xml")
    assert event["content_files"] == ["https://x/b", "https://x/a"]
    assert event["copy_to"] == ["2", "1"]
    assert event_of(swapped, "xml")["content_files"] == ["https://x/a", "https://x/b"]
    assert event["event_id"] != event_of(swapped, "xml")["event_id"]


def test_mo_single_copy_to_number_is_a_list_of_one() -> None:
    body = (
        b"<postback><origin>MMS_MO</origin><code>N401</code>"
        b"<copy-to><number>17745550003</number></copy-to></postback>"
    )
    assert event_of(body, "xml")["copy_to"] == ["17745550003"]
    json_body = b'{"origin": "MMS_MO", "code": "N401", "copy-to": [{"number": "17745550003"}]}'
    assert event_of(json_body, "json")["copy_to"] == ["17745550003"]


def test_mo_json_numbers_in_lists_become_strings() -> None:
    body = b'{"origin": "MMS_MO", "code": "N401", "copy-to": [{"number": 17745550003}]}'
    assert event_of(body, "json")["copy_to"] == ["17745550003"]


def test_mo_without_content_or_copy_to_has_empty_lists() -> None:
    body = b"<postback><origin>MMS_MO</origin><code>N401</code><keyword>HI</keyword></postback>"
    event = event_of(body, "xml")
    assert event["content_files"] == []
    assert event["copy_to"] == []
    assert event["keyword"] == "HI"
    assert event["message_subject"] is None


def test_unknown_fields_are_kept_in_extra_with_their_names() -> None:
    body = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N101</code>
    <fallback-sms-text>See https://x.example/m</fallback-sms-text>
    <carrier region="eu"><name>Op</name><name>Op2</name></carrier>
</postback>"""
    event = event_of(body, "xml")
    assert event["extra"] == {
        "fallback-sms-text": "See https://x.example/m",
        "carrier": {"@region": "eu", "name": ["Op", "Op2"]},
    }
    json_body = (
        b'{"origin": "MMS_MT", "code": "N101", '
        b'"fallback-sms-text": "See", "carrier": {"ids": [1, 2], "ok": true}}'
    )
    assert event_of(json_body, "json")["extra"] == {
        "fallback-sms-text": "See",
        "carrier": {"ids": [1, 2], "ok": True},
    }


def test_mo_files_in_repeated_content_elements_keep_document_order() -> None:
    body = (
        b"<postback><origin>MMS_MO</origin><code>N401</code>"
        b"<content><file>https://x/1</file><file>https://x/2</file></content>"
        b"<content><file>https://x/3</file></content></postback>"
    )
    assert event_of(body, "xml")["content_files"] == ["https://x/1", "https://x/2", "https://x/3"]
