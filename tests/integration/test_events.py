"""What a subscriber receives: format detection and text encodings as the user sent them,
and the properties of each event message."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime

import aio_pika

from tests.support import Subscriber, http_session, post

from ._helpers import expected_event_id, pipeline, quarantined

MT = "<postback><origin>MMS_MT</origin><code>{code}</code><tracking-id>{tracking}</tracking-id>"


async def test_format_is_sniffed_from_the_first_byte_without_a_known_content_type(
    namespace: str,
) -> None:
    xml = b"<postback><origin>MMS_MT</origin><code>N101</code><to>sniff-xml</to></postback>"
    json = b'{"origin": "MMS_MT", "code": "N101", "to": "sniff-json"}'
    sent = [
        (None, xml, "xml"),
        (
            "text/plain",
            codecs.BOM_UTF8 + b" \r\n\t" + json.replace(b"sniff-json", b"bom-json"),
            "json",
        ),
        ("application/octet-stream", b"\n\n  " + xml.replace(b"sniff-xml", b"ws-xml"), "xml"),
        (None, json, "json"),
        ("text/plain", codecs.BOM_UTF8 + xml.replace(b"sniff-xml", b"bom-xml"), "xml"),
        ("application/xml", json.replace(b"sniff-json", b"declared-xml"), "xml"),
    ]
    async with (
        Subscriber(namespace, "sniff", ["#"]) as subscriber,
        pipeline(namespace) as running,
        http_session() as session,
    ):
        answers = [
            (await post(session, running.postbacks, body, content_type))[0]
            for content_type, body, _ in sent
        ]
        received = await subscriber.take(5, timeout=15, settle=0.5)
        in_quarantine = await quarantined(namespace, 1)
    assert answers == [200] * len(sent)
    assert len(received) == 5
    formats = {item.event["to"]: item.event["format"] for item in received}
    assert formats == {
        "sniff-xml": "xml",
        "bom-json": "json",
        "ws-xml": "xml",
        "sniff-json": "json",
        "bom-xml": "xml",
    }
    # A JSON body declared as XML is taken as XML: not well-formed, so quarantined.
    assert [message.body for message in in_quarantine] == [sent[-1][1]]


async def test_text_encoding_comes_from_charset_else_xml_declaration_else_utf8(
    namespace: str,
) -> None:
    word = "Entregué à Zoë"
    cases = [
        (
            "application/xml; charset=ISO-8859-1",
            f"{MT}<status>{word}</status></postback>",
            "latin1",
            "http-charset-xml",
        ),
        (
            "application/xml",
            f'<?xml version="1.0" encoding="ISO-8859-1"?>{MT}<status>{word}</status></postback>',
            "latin1",
            "declaration",
        ),
        (
            "text/xml; charset=iso-8859-1",
            f'<?xml version="1.0" encoding="UTF-8"?>{MT}<status>{word}</status></postback>',
            "latin1",
            "charset-beats-declaration",
        ),
        ("application/xml", f"{MT}<status>{word}</status></postback>", "utf-8", "utf8-xml"),
        (
            "application/json; charset=ISO-8859-1",
            '{"origin": "MMS_MT", "code": "{code}", "tracking-id": "{tracking}", "status": "'
            + word
            + '"}',
            "latin1",
            "http-charset-json",
        ),
        (
            "application/json",
            '{"origin": "MMS_MT", "code": "{code}", "tracking-id": "{tracking}",'
            ' "status": "' + word + '"}',
            "utf-8",
            "utf8-json",
        ),
        (
            "application/json; charset=UTF-16",
            '{"origin": "MMS_MT", "code": "{code}", "tracking-id": "{tracking}", "status": "'
            + word
            + '"}',
            "utf-16",
            "utf16-json",
        ),
        (
            'Application/JSON; Charset="UTF-8"',
            '{"origin": "MMS_MT", "code": "{code}", "tracking-id": "{tracking}", "status": "'
            + word
            + '"}',
            "utf-8",
            "quoted-charset-json",
        ),
    ]
    async with (
        Subscriber(namespace, "charset", ["#"]) as subscriber,
        pipeline(namespace) as running,
        http_session() as session,
    ):
        for content_type, template, encoding, tracking in cases:
            body = template.replace("{code}", "N102").replace("{tracking}", tracking)
            status, _, _ = await post(
                session, running.postbacks, body.encode(encoding), content_type
            )
            assert (tracking, status) == (tracking, 200)
        received = await subscriber.take(len(cases), timeout=15, settle=0.3)
    assert len(received) == len(cases)
    texts = {item.event["tracking_id"]: item.event["status_text"] for item in received}
    assert texts == {tracking: word for *_, tracking in cases}


async def test_event_message_properties(namespace: str) -> None:
    with_tracking = (
        b"<postback><origin>MMS_MT</origin><code>n102</code><status>Message Sent/Delivered</status>"
        b"<tracking-id>props-1</tracking-id><to>123</to></postback>"
    )
    without_tracking = b'{"origin": "MMS_MT", "code": "N003", "mms-id": "35674"}'
    async with (
        Subscriber(namespace, "props", ["#"]) as subscriber,
        pipeline(namespace) as running,
        http_session() as session,
    ):
        before = datetime.now(UTC).replace(microsecond=0)
        first, _, _ = await post(session, running.postbacks, with_tracking)
        second, _, _ = await post(session, running.postbacks, without_tracking, "text/plain")
        assert (first, second) == (200, 200)
        received = await subscriber.take(2, timeout=15, settle=0.3)
    assert len(received) == 2
    by_code = {item.event["code"]: item for item in received}
    for code, headers in (
        (
            "N102",
            {"code": "N102", "origin": "MMS_MT", "status": "delivered", "tracking_id": "props-1"},
        ),
        ("N003", {"code": "N003", "origin": "MMS_MT", "status": "transcoded"}),
    ):
        message, event = by_code[code].message, by_code[code].event
        assert message.content_type == "application/json"
        assert message.message_id == event["event_id"] == expected_event_id(event)
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        # Quorum queues add x-delivery-count on delivery; the event's own headers are these.
        own = {k: v for k, v in message.headers.items() if not k.startswith("x-")}
        assert own == headers
        received_at = datetime.strptime(event["received_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert message.timestamp is not None
        stamp = message.timestamp.replace(tzinfo=UTC)
        assert stamp == received_at.replace(tzinfo=UTC, microsecond=0)
        assert before <= stamp <= datetime.now(UTC)
    assert by_code["N102"].message.routing_key == "mms_mt.delivery.delivered.n102"
    assert by_code["N003"].message.routing_key == "mms_mt.template.transcoded.n003"
