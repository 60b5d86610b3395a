"""Every example of both Sinch seed pages gives exactly the event the contract defines.

Bodies are copied verbatim from ``shared/seeds/000_*.txt`` (XML) and ``003_*.txt`` (JSON).
Each expected event is written out in full, every key, with its id computed independently
from the literal (SHA-256 of the compact, key-sorted JSON of the event without
``event_id``, ``format`` and ``received_at``).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ingest.event import EVENT_KEYS, Event

from ._support import CONTRACT_KEYS, RECEIVED_AT, event_of, expected_id, with_id

# 000: **N101 (Binary)**
XML_N101_BINARY = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N101</code>
    <sent-as>MMS</sent-as>
    <status>Message Sent</status>
    <mms-id>39597</mms-id>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3OQ==</tracking-id>
    <operator-id>31003</operator-id>
    <timestamp>2014-06-07T07:27:29-05:00</timestamp>
</postback>"""

# 000: **N101 (HTML)**
XML_N101_HTML = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N101</code>
    <sent-as>SMS</sent-as>
    <status>Message Sent</status>
    <mms-id>39755</mms-id>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3Nw==</tracking-id>
    <operator-id>31004</operator-id>
    <timestamp>2014-06-07T07:27:34-05:00</timestamp>
    <status-details>Handset setting: mms with pass via HTML</status-details>
</postback>"""

# 000: **N102 (Binary)**
XML_N102_BINARY = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N102</code>
    <sent-as>MMS</sent-as>
    <status>Message Sent/Delivered</status>
    <mms-id>39597</mms-id>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3OQ==</tracking-id>
    <operator-id>31003</operator-id>
    <timestamp>2014-06-07T07:27:34-05:00</timestamp>
    <handset>moto17c</handset>
</postback>"""

# 000: **N102 (HTML)**
XML_N102_HTML = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N102</code>
    <sent-as>SMS</sent-as>
    <status>Message Sent/Delivered</status>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3Nw==</tracking-id>
    <operator-id>31004</operator-id>
    <timestamp>2014-06-07T07:28:09-05:00</timestamp>
</postback>"""

# 000: **E101**
XML_E101 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>E101</code>
    <status>Message Failed</status>
    <mms-id>39755</mms-id>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3Nw==</tracking-id>
    <operator-id>31004</operator-id>
    <status-details>Error fetching dynamic content</status-details>
</postback>"""

# 000: **E102**
XML_E102 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>E102</code>
    <status>Message Sent/Rejected</status>
    <mms-id>39755</mms-id>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3Nw==</tracking-id>
    <operator-id>31004</operator-id>
    <status-details>Recipient blocked by mobile operator</status-details>
</postback>"""

# 000: **N501**
XML_N501 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N501</code>
    <sent-as>MMS</sent-as>
    <status>Message Sent</status>
    <mms-id>39755</mms-id>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3Nw==</tracking-id>
    <operator-id>31004</operator-id>
    <timestamp>2014-06-07T07:27:34-05:00</timestamp>
    <status-details></status-details>
</postback>"""

# 000: **N502**
XML_N502 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N502</code>
    <sent-as>MMS</sent-as>
    <status>Message Sent/Delivered</status>
    <mms-id>39597</mms-id>
    <from>28444</from>
    <to>12399471613</to>
    <tracking-id>TU1TXzU5Nzg3OQ==</tracking-id>
    <operator-id>31003</operator-id>
    <timestamp>2014-06-07T07:27:34-05:00</timestamp>
    <handset>moto17c</handset>
</postback>"""

# 000: **N003 (Success)**
XML_N003 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N003</code>
    <mms-id>35674</mms-id>
</postback>"""

# 000: **E002 (Failure)**
XML_E002 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>E002</code>
    <mms-id>35674</mms-id>
    <audio-name>http://www.yoursite.com/audio/1.mp3</audio-name>
</postback>"""

# 003: Example: N101 MMS sent
JSON_N101 = b"""\
{
  "origin": "MMS_MT",
  "code": "N101",
  "sent-as": "MMS",
  "status": "Sent",
  "status-details": "Message Sent",
  "to": "17745550001",
  "from": "18885551234",
  "timestamp": "2026-04-24T18:30:00Z",
  "tracking-id": "abc123xyz",
  "client-reference": "send-001"
}"""

# 003: Example: N102 delivered
JSON_N102 = b"""\
{
  "origin": "MMS_MT",
  "code": "N102",
  "sent-as": "MMS",
  "status": "Delivered",
  "status-details": "Message Delivered",
  "to": "17745550001",
  "from": "18885551234",
  "timestamp": "2026-04-24T18:31:10Z",
  "tracking-id": "abc123xyz",
  "client-reference": "send-001",
  "handset": "Apple iPhone"
}"""

# 003: Example: E102 rejected
JSON_E102 = b"""\
{
  "origin": "MMS_MT",
  "code": "E102",
  "sent-as": "MMS",
  "status": "Rejected",
  "status-details": "Message Rejected",
  "to": "17745550001",
  "from": "18885551234",
  "timestamp": "2026-04-24T18:32:00Z",
  "tracking-id": "abc123xyz",
  "client-reference": "send-001",
  "error-info": "Delivery was not successful."
}"""

# 003: Example: N003 saved MMS ready
JSON_N003 = b"""\
{
  "origin": "MMS_MT",
  "code": "N003",
  "status": "Transcoding successful",
  "status-details": "MMS template is available for sending.",
  "mms-id": "123456",
  "tracking-id": "template-build-001",
  "client-reference": "template-build-001",
  "timestamp": "2026-04-24T18:33:00Z"
}"""


# ---------------------------------------------------------------------------------------
# The events the contract defines for them (without event_id: computed from the literal).
# ---------------------------------------------------------------------------------------

EVENT_XML_N101_BINARY: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N101",
    "family": "delivery",
    "status": "sent",
    "final": False,
    "status_text": "Message Sent",
    "status_details": None,
    "sent_as": "MMS",
    "tracking_id": "TU1TXzU5Nzg3OQ==",
    "client_reference": None,
    "mms_id": "39597",
    "operator_id": "31003",
    "handset": None,
    "from": "28444",
    "to": "12399471613",
    "timestamp": "2014-06-07T12:27:29Z",
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
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_N101_HTML: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N101",
    "family": "delivery",
    "status": "sent",
    "final": False,
    "status_text": "Message Sent",
    "status_details": "Handset setting: mms with pass via HTML",
    "sent_as": "SMS",
    "tracking_id": "TU1TXzU5Nzg3Nw==",
    "client_reference": None,
    "mms_id": "39755",
    "operator_id": "31004",
    "handset": None,
    "from": "28444",
    "to": "12399471613",
    "timestamp": "2014-06-07T12:27:34Z",
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
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_N102_BINARY: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N102",
    "family": "delivery",
    "status": "delivered",
    "final": True,
    "status_text": "Message Sent/Delivered",
    "status_details": None,
    "sent_as": "MMS",
    "tracking_id": "TU1TXzU5Nzg3OQ==",
    "client_reference": None,
    "mms_id": "39597",
    "operator_id": "31003",
    "handset": "moto17c",
    "from": "28444",
    "to": "12399471613",
    "timestamp": "2014-06-07T12:27:34Z",
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
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_N102_HTML: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N102",
    "family": "delivery",
    "status": "delivered",
    "final": True,
    "status_text": "Message Sent/Delivered",
    "status_details": None,
    "sent_as": "SMS",
    "tracking_id": "TU1TXzU5Nzg3Nw==",
    "client_reference": None,
    "mms_id": None,
    "operator_id": "31004",
    "handset": None,
    "from": "28444",
    "to": "12399471613",
    "timestamp": "2014-06-07T12:28:09Z",
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
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_E101: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "E101",
    "family": "delivery",
    "status": "failed",
    "final": True,
    "status_text": "Message Failed",
    "status_details": "Error fetching dynamic content",
    "sent_as": None,
    "tracking_id": "TU1TXzU5Nzg3Nw==",
    "client_reference": None,
    "mms_id": "39755",
    "operator_id": "31004",
    "handset": None,
    "from": "28444",
    "to": "12399471613",
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
    "extra": {},
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_E102: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "E102",
    "family": "delivery",
    "status": "rejected",
    "final": True,
    "status_text": "Message Sent/Rejected",
    "status_details": "Recipient blocked by mobile operator",
    "sent_as": None,
    "tracking_id": "TU1TXzU5Nzg3Nw==",
    "client_reference": None,
    "mms_id": "39755",
    "operator_id": "31004",
    "handset": None,
    "from": "28444",
    "to": "12399471613",
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
    "extra": {},
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_N501: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N501",
    "family": "discovery",
    "status": "sent",
    "final": False,
    "status_text": "Message Sent",
    "status_details": None,  # <status-details></status-details>
    "sent_as": "MMS",
    "tracking_id": "TU1TXzU5Nzg3Nw==",
    "client_reference": None,
    "mms_id": "39755",
    "operator_id": "31004",
    "handset": None,
    "from": "28444",
    "to": "12399471613",
    "timestamp": "2014-06-07T12:27:34Z",
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
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_N502: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N502",
    "family": "discovery",
    "status": "delivered",
    "final": True,
    "status_text": "Message Sent/Delivered",
    "status_details": None,
    "sent_as": "MMS",
    "tracking_id": "TU1TXzU5Nzg3OQ==",
    "client_reference": None,
    "mms_id": "39597",
    "operator_id": "31003",
    "handset": "moto17c",
    "from": "28444",
    "to": "12399471613",
    "timestamp": "2014-06-07T12:27:34Z",
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
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_N003: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N003",
    "family": "template",
    "status": "transcoded",
    "final": True,
    "status_text": None,
    "status_details": None,
    "sent_as": None,
    "tracking_id": None,
    "client_reference": None,
    "mms_id": "35674",
    "operator_id": None,
    "handset": None,
    "from": None,
    "to": None,
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
    "extra": {},
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_XML_E002: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "E002",
    "family": "template",
    "status": "transcoding_failed",
    "final": True,
    "status_text": None,
    "status_details": None,
    "sent_as": None,
    "tracking_id": None,
    "client_reference": None,
    "mms_id": "35674",
    "operator_id": None,
    "handset": None,
    "from": None,
    "to": None,
    "timestamp": None,
    "error_info": None,
    "content_type": None,
    "content_name": None,
    "audio_name": "http://www.yoursite.com/audio/1.mp3",
    "video_name": None,
    "keyword": None,
    "message_subject": None,
    "content_files": [],
    "copy_to": [],
    "extra": {},
    "format": "xml",
    "received_at": RECEIVED_AT,
}

EVENT_JSON_N101: dict[str, Any] = {
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
    "format": "json",
    "received_at": RECEIVED_AT,
}

EVENT_JSON_N102: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N102",
    "family": "delivery",
    "status": "delivered",
    "final": True,
    "status_text": "Delivered",
    "status_details": "Message Delivered",
    "sent_as": "MMS",
    "tracking_id": "abc123xyz",
    "client_reference": "send-001",
    "mms_id": None,
    "operator_id": None,
    "handset": "Apple iPhone",
    "from": "18885551234",
    "to": "17745550001",
    "timestamp": "2026-04-24T18:31:10Z",
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
    "format": "json",
    "received_at": RECEIVED_AT,
}

EVENT_JSON_E102: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "E102",
    "family": "delivery",
    "status": "rejected",
    "final": True,
    "status_text": "Rejected",
    "status_details": "Message Rejected",
    "sent_as": "MMS",
    "tracking_id": "abc123xyz",
    "client_reference": "send-001",
    "mms_id": None,
    "operator_id": None,
    "handset": None,
    "from": "18885551234",
    "to": "17745550001",
    "timestamp": "2026-04-24T18:32:00Z",
    "error_info": "Delivery was not successful.",
    "content_type": None,
    "content_name": None,
    "audio_name": None,
    "video_name": None,
    "keyword": None,
    "message_subject": None,
    "content_files": [],
    "copy_to": [],
    "extra": {},
    "format": "json",
    "received_at": RECEIVED_AT,
}

EVENT_JSON_N003: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N003",
    "family": "template",
    "status": "transcoded",
    "final": True,
    "status_text": "Transcoding successful",
    "status_details": "MMS template is available for sending.",
    "sent_as": None,
    "tracking_id": "template-build-001",
    "client_reference": "template-build-001",
    "mms_id": "123456",
    "operator_id": None,
    "handset": None,
    "from": None,
    "to": None,
    "timestamp": "2026-04-24T18:33:00Z",
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
    "format": "json",
    "received_at": RECEIVED_AT,
}

SEED_CASES = [
    pytest.param(XML_N101_BINARY, "xml", EVENT_XML_N101_BINARY, id="xml-N101-binary"),
    pytest.param(XML_N101_HTML, "xml", EVENT_XML_N101_HTML, id="xml-N101-html"),
    pytest.param(XML_N102_BINARY, "xml", EVENT_XML_N102_BINARY, id="xml-N102-binary"),
    pytest.param(XML_N102_HTML, "xml", EVENT_XML_N102_HTML, id="xml-N102-html"),
    pytest.param(XML_E101, "xml", EVENT_XML_E101, id="xml-E101"),
    pytest.param(XML_E102, "xml", EVENT_XML_E102, id="xml-E102"),
    pytest.param(XML_N501, "xml", EVENT_XML_N501, id="xml-N501"),
    pytest.param(XML_N502, "xml", EVENT_XML_N502, id="xml-N502"),
    pytest.param(XML_N003, "xml", EVENT_XML_N003, id="xml-N003"),
    pytest.param(XML_E002, "xml", EVENT_XML_E002, id="xml-E002"),
    pytest.param(JSON_N101, "json", EVENT_JSON_N101, id="json-N101"),
    pytest.param(JSON_N102, "json", EVENT_JSON_N102, id="json-N102"),
    pytest.param(JSON_E102, "json", EVENT_JSON_E102, id="json-E102"),
    pytest.param(JSON_N003, "json", EVENT_JSON_N003, id="json-N003"),
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
    with pytest.raises(ValueError, match="schema"):
        Event.from_json(orjson.dumps({**good, "schema": 2}))
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
    "schema": 1,
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
    "schema": 1,
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
