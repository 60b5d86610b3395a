"""Every example of Sinch's two seed pages, copied verbatim from ``shared/seeds/000_*.txt``
(XML) and ``003_*.txt`` (JSON), and the event the contract defines for each, every key
written out. ``received_at`` is the fixed time the unit tests normalize with; the event id
is computed independently by the tests that use these."""

from __future__ import annotations

from typing import Any

RECEIVED_AT = "2024-05-01T10:00:00.123456Z"

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
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_N101_HTML: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_N102_BINARY: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_N102_HTML: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_E101: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_E102: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_N501: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_N502: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_N003: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_XML_E002: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_JSON_N101: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_JSON_N102: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_JSON_E102: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}

EVENT_JSON_N003: dict[str, Any] = {
    "schema": 2,
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
    "lifecycle": None,
}


# (name, body, format, expected event) for every seed example.
SEED_EXAMPLES: list[tuple[str, bytes, str, dict[str, Any]]] = [
    ("xml-N101-binary", XML_N101_BINARY, "xml", EVENT_XML_N101_BINARY),
    ("xml-N101-html", XML_N101_HTML, "xml", EVENT_XML_N101_HTML),
    ("xml-N102-binary", XML_N102_BINARY, "xml", EVENT_XML_N102_BINARY),
    ("xml-N102-html", XML_N102_HTML, "xml", EVENT_XML_N102_HTML),
    ("xml-E101", XML_E101, "xml", EVENT_XML_E101),
    ("xml-E102", XML_E102, "xml", EVENT_XML_E102),
    ("xml-N501", XML_N501, "xml", EVENT_XML_N501),
    ("xml-N502", XML_N502, "xml", EVENT_XML_N502),
    ("xml-N003", XML_N003, "xml", EVENT_XML_N003),
    ("xml-E002", XML_E002, "xml", EVENT_XML_E002),
    ("json-N101", JSON_N101, "json", EVENT_JSON_N101),
    ("json-N102", JSON_N102, "json", EVENT_JSON_N102),
    ("json-E102", JSON_E102, "json", EVENT_JSON_E102),
    ("json-N003", JSON_N003, "json", EVENT_JSON_N003),
]
