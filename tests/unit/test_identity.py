"""The event id: one postback, one id, however it was written; another postback, another id."""

from __future__ import annotations

import pytest

from ._support import event_of, expected_id

# Sinch's N101 (binary) example as a compact one-liner.
XML = (
    b"<postback><origin>MMS_MT</origin><code>N101</code><sent-as>MMS</sent-as>"
    b"<status>Message Sent</status><mms-id>39597</mms-id><from>28444</from>"
    b"<to>12399471613</to><tracking-id>TU1TXzU5Nzg3OQ==</tracking-id>"
    b"<operator-id>31003</operator-id><timestamp>2014-06-07T07:27:29-05:00</timestamp>"
    b"</postback>"
)
ID = event_of(XML, "xml")["event_id"]


def test_id_is_computed_as_the_contract_says() -> None:
    event = event_of(XML, "xml")
    assert event["event_id"] == expected_id(event)


def test_same_postback_twice_same_id() -> None:
    assert event_of(XML, "xml")["event_id"] == event_of(bytes(XML), "xml")["event_id"]


def test_element_order_does_not_matter() -> None:
    shuffled = (
        b"<postback><timestamp>2014-06-07T07:27:29-05:00</timestamp>"
        b"<operator-id>31003</operator-id><tracking-id>TU1TXzU5Nzg3OQ==</tracking-id>"
        b"<to>12399471613</to><from>28444</from><mms-id>39597</mms-id>"
        b"<status>Message Sent</status><sent-as>MMS</sent-as><code>N101</code>"
        b"<origin>MMS_MT</origin></postback>"
    )
    assert event_of(shuffled, "xml")["event_id"] == ID


def test_white_space_and_indentation_do_not_matter() -> None:
    indented = b"""<?xml version="1.0" encoding="UTF-8"?>
<postback>
\t<origin>
\t\tMMS_MT
\t</origin>
        <code>  N101  </code>
  <sent-as>MMS</sent-as>\r
  <status> Message Sent </status>
  <mms-id>39597</mms-id>
  <from> 28444</from>
  <to>12399471613 </to>
  <tracking-id>TU1TXzU5Nzg3OQ==</tracking-id>
  <operator-id>
    31003
  </operator-id>
  <timestamp>2014-06-07T07:27:29-05:00</timestamp>
</postback>

"""
    assert event_of(indented, "xml")["event_id"] == ID


def test_utf8_bom_does_not_matter() -> None:
    assert event_of(b"\xef\xbb\xbf" + XML, "xml")["event_id"] == ID


def test_xml_and_json_of_the_same_postback_have_the_same_id() -> None:
    json_with_numbers = b"""{
        "origin": "MMS_MT", "code": "N101", "sent-as": "MMS", "status": "Message Sent",
        "mms-id": 39597, "from": 28444, "to": 12399471613,
        "tracking-id": "TU1TXzU5Nzg3OQ==", "operator-id": 31003,
        "timestamp": "2014-06-07T07:27:29-05:00"
    }"""
    json_with_strings = (
        b'{"timestamp":"2014-06-07T07:27:29-05:00","operator-id":"31003",'
        b'"tracking-id":"TU1TXzU5Nzg3OQ==","to":"12399471613","from":"28444",'
        b'"mms-id":"39597","status":"Message Sent","sent-as":"MMS","code":"N101",'
        b'"origin":"MMS_MT"}'
    )
    assert event_of(json_with_numbers, "json")["event_id"] == ID
    assert event_of(json_with_strings, "json")["event_id"] == ID


def test_xml_and_json_mo_lists_have_the_same_id() -> None:
    xml = (
        b"<postback><origin>MMS_MO</origin><code>N401</code>"
        b"<content><file>https://x/1</file><file>https://x/2</file></content>"
        b"<copy-to><number>0612</number><number>0613</number></copy-to></postback>"
    )
    json = (
        b'{"origin":"MMS_MO","code":"N401","content":[{"file":"https://x/1"},'
        b'{"file":"https://x/2"}],"copy-to":[{"number":"0612"},{"number":"0613"}]}'
    )
    assert event_of(xml, "xml")["event_id"] == event_of(json, "json")["event_id"]


def test_xml_and_json_unknown_string_fields_have_the_same_id() -> None:
    xml = b"<postback><origin>MMS_MT</origin><code>N101</code><zz-new>v</zz-new></postback>"
    json = b'{"origin": "MMS_MT", "code": "N101", "zz-new": "v"}'
    assert event_of(xml, "xml")["event_id"] == event_of(json, "json")["event_id"]


def test_equivalent_timestamps_give_the_same_id() -> None:
    for stamp in (b"2014-06-07T07:27:29-0500", b"2014-06-07T12:27:29Z", b"2014-06-07T12:27:29"):
        body = XML.replace(b"2014-06-07T07:27:29-05:00", stamp)
        assert event_of(body, "xml")["event_id"] == ID, stamp


def test_lower_case_code_gives_the_same_id() -> None:
    assert event_of(XML.replace(b"N101", b"n101"), "xml")["event_id"] == ID


def test_empty_and_absent_fields_give_the_same_id() -> None:
    with_empty = XML.replace(
        b"</postback>",
        b"<status-details></status-details><handset/><error-info> </error-info></postback>",
    )
    assert event_of(with_empty, "xml")["event_id"] == ID
    json_absent = b'{"origin": "MMS_MO", "code": "N401"}'
    json_empty = b'{"origin": "MMS_MO", "code": "N401", "keyword": "", "handset": null}'
    assert event_of(json_absent, "json")["event_id"] == event_of(json_empty, "json")["event_id"]


def test_text_encoding_of_the_body_does_not_matter() -> None:
    text = "<postback><origin>MMS_MO</origin><code>N401</code><keyword>Café</keyword></postback>"
    utf8 = event_of(text.encode("utf-8"), "xml")
    latin1 = event_of(text.encode("latin-1"), "xml", "ISO-8859-1")
    declared = event_of(
        b'<?xml version="1.0" encoding="ISO-8859-1"?>' + text.encode("latin-1"), "xml"
    )
    assert utf8["keyword"] == "Café"
    assert utf8["event_id"] == latin1["event_id"] == declared["event_id"]


def test_received_at_and_format_do_not_change_the_id() -> None:
    one = event_of(XML, "xml", received_at="2024-01-01T00:00:00.000000Z")
    two = event_of(XML, "xml", received_at="2025-12-31T23:59:59.999999Z")
    assert one["received_at"] != two["received_at"]
    assert one["event_id"] == two["event_id"] == ID


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<origin>MMS_MT</origin>", b"<origin>MMS_MO</origin>"),
        (b"<code>N101</code>", b"<code>N102</code>"),
        (b"<sent-as>MMS</sent-as>", b"<sent-as>SMS</sent-as>"),
        (b"<status>Message Sent</status>", b"<status>Message sent</status>"),
        (b"<mms-id>39597</mms-id>", b"<mms-id>39598</mms-id>"),
        (b"<from>28444</from>", b"<from>028444</from>"),
        (b"<to>12399471613</to>", b"<to>12399471614</to>"),
        (b"<tracking-id>TU1TXzU5Nzg3OQ==</tracking-id>", b"<tracking-id>X</tracking-id>"),
        (b"<operator-id>31003</operator-id>", b"<operator-id>31004</operator-id>"),
        (b"07:27:29-05:00", b"07:27:30-05:00"),
        (b"07:27:29-05:00", b"07:27:29.0-05:00"),
        (b"</postback>", b"<status-details>x</status-details></postback>"),
        (b"</postback>", b"<client-reference>r</client-reference></postback>"),
        (b"</postback>", b"<handset>h</handset></postback>"),
        (b"</postback>", b"<error-info>e</error-info></postback>"),
        (b"</postback>", b"<content-type>image/jpeg</content-type></postback>"),
        (b"</postback>", b"<content-name>n</content-name></postback>"),
        (b"</postback>", b"<audio-name>a</audio-name></postback>"),
        (b"</postback>", b"<video-name>v</video-name></postback>"),
        (b"</postback>", b"<keyword>k</keyword></postback>"),
        (b"</postback>", b"<message-subject>s</message-subject></postback>"),
        (b"</postback>", b"<content><file>f</file></content></postback>"),
        (b"</postback>", b"<copy-to><number>1</number></copy-to></postback>"),
        (b"</postback>", b"<something-new>1</something-new></postback>"),
    ],
    ids=lambda value: value.decode(),
)
def test_a_different_value_gives_a_different_id(old: bytes, new: bytes) -> None:
    changed = XML.replace(old, new)
    assert changed != XML
    assert event_of(changed, "xml")["event_id"] != ID


def test_different_json_postbacks_have_different_ids() -> None:
    one = b'{"origin": "MMS_MT", "code": "N102", "tracking-id": "a"}'
    two = b'{"origin": "MMS_MT", "code": "N102", "tracking-id": "b"}'
    assert event_of(one, "json")["event_id"] != event_of(two, "json")["event_id"]
