"""Every example of Sinch's two seed pages, copied verbatim, and the event the contract
defines for each, written out field by field (``event_id`` and ``received_at`` are checked
separately: the id is computed independently from the literal, the time must be fresh)."""

from __future__ import annotations

from typing import Any

# shared/seeds/000_*.txt: **N101 (Binary)**
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

# shared/seeds/000_*.txt: **N101 (HTML)**
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

# shared/seeds/000_*.txt: **N102 (Binary)**
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

# shared/seeds/000_*.txt: **N102 (HTML)**
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

# shared/seeds/000_*.txt: **E101**
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

# shared/seeds/000_*.txt: **E102**
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

# shared/seeds/000_*.txt: **N501**
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

# shared/seeds/000_*.txt: **N502**
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

# shared/seeds/000_*.txt: **N003 (Success)**
XML_N003 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>N003</code>
    <mms-id>35674</mms-id>
</postback>"""

# shared/seeds/000_*.txt: **E002 (Failure)**
XML_E002 = b"""\
<postback>
    <origin>MMS_MT</origin>
    <code>E002</code>
    <mms-id>35674</mms-id>
    <audio-name>http://www.yoursite.com/audio/1.mp3</audio-name>
</postback>"""

# shared/seeds/003_*.txt: Example: N101 MMS sent
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

# shared/seeds/003_*.txt: Example: N102 delivered
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

# shared/seeds/003_*.txt: Example: E102 rejected
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

# shared/seeds/003_*.txt: Example: N003 saved MMS ready
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
}

EVENT_XML_N501: dict[str, Any] = {
    "schema": 1,
    "origin": "MMS_MT",
    "code": "N501",
    "family": "discovery",
    "status": "sent",
    "final": False,
    "status_text": "Message Sent",
    "status_details": None,
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
}


# (name, body, content type as Sinch sends it, expected event)
SEEDS: list[tuple[str, bytes, str, dict[str, Any]]] = [
    ("XML_N101_BINARY", XML_N101_BINARY, "application/xml", EVENT_XML_N101_BINARY),
    ("XML_N101_HTML", XML_N101_HTML, "application/xml", EVENT_XML_N101_HTML),
    ("XML_N102_BINARY", XML_N102_BINARY, "application/xml", EVENT_XML_N102_BINARY),
    ("XML_N102_HTML", XML_N102_HTML, "application/xml", EVENT_XML_N102_HTML),
    ("XML_E101", XML_E101, "application/xml", EVENT_XML_E101),
    ("XML_E102", XML_E102, "application/xml", EVENT_XML_E102),
    ("XML_N501", XML_N501, "application/xml", EVENT_XML_N501),
    ("XML_N502", XML_N502, "application/xml", EVENT_XML_N502),
    ("XML_N003", XML_N003, "application/xml", EVENT_XML_N003),
    ("XML_E002", XML_E002, "application/xml", EVENT_XML_E002),
    ("JSON_N101", JSON_N101, "application/json", EVENT_JSON_N101),
    ("JSON_N102", JSON_N102, "application/json", EVENT_JSON_N102),
    ("JSON_E102", JSON_E102, "application/json", EVENT_JSON_E102),
    ("JSON_N003", JSON_N003, "application/json", EVENT_JSON_N003),
]
