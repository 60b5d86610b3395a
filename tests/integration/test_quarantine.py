"""Bodies that are no postback end in ``NS.quarantine``, byte for byte, with the reason in
``x-error``; nothing else is published for them. Unknown codes are events, not quarantined."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.names import Names
from tests.support import Subscriber, http_session, post, postback_xml, queue_count

from ._helpers import pipeline, quarantined


@dataclass(frozen=True)
class Bad:
    name: str
    body: bytes
    content_type: str
    words: tuple[str, ...]  # the reason in x-error names one of these


BAD = [
    Bad(
        "malformed-xml",
        b"<postback><origin>MMS_MT</origin><code>N101</code>",
        "application/xml",
        ("well-formed", "xml"),
    ),
    Bad(
        "doctype",
        b'<?xml version="1.0"?>\n<!DOCTYPE postback [<!ENTITY boom "BOOM">]>\n'
        b"<postback><origin>MMS_MT</origin><code>N102</code><to>&boom;</to></postback>",
        "application/xml",
        ("dtd", "doctype", "entit"),
    ),
    Bad(
        "json-array",
        b'[{"origin": "MMS_MT", "code": "N102"}]',
        "application/json",
        ("object", "array", "list", "postback"),
    ),
    Bad(
        "xml-missing-code",
        b"<postback><origin>MMS_MT</origin><status>Message Sent</status></postback>",
        "text/xml",
        ("code",),
    ),
    Bad(
        "json-blank-code",
        b'{"origin": "MMS_MT", "code": "   ", "tracking-id": "x"}',
        "application/json",
        ("code",),
    ),
    Bad(
        "xml-other-root",
        b"<delivery><origin>MMS_MT</origin><code>N102</code></delivery>",
        "application/xml",
        ("postback",),
    ),
]


async def test_not_a_postback_is_quarantined_with_the_original_body_and_reason(
    namespace: str,
) -> None:
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        pipeline(namespace) as running,
        http_session() as session,
    ):
        answers = [
            (await post(session, running.postbacks, case.body, case.content_type))[0]
            for case in BAD
        ]
        messages = await quarantined(namespace, len(BAD))
        published = await subscriber.take(0, settle=0.5)
        intake_left = await queue_count(Names(namespace).intake)
    # The receiver does not parse: it accepts, and the worker decides.
    assert answers == [200] * len(BAD)
    reasons = {message.body: str(message.headers.get("x-error", "")) for message in messages}
    assert sorted(reasons) == sorted(case.body for case in BAD)  # byte for byte, each once
    assert len(messages) == len(BAD)
    for case in BAD:
        reason = reasons[case.body].lower()
        assert any(word in reason for word in case.words), (case.name, reason)
    assert published == []
    assert await queue_count(Names(namespace).unrouted) == 0
    assert intake_left == 0


async def test_unknown_code_is_an_event_not_quarantined(namespace: str) -> None:
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        pipeline(namespace) as running,
        http_session() as session,
    ):
        body = postback_xml("X777", "unknown-code", status="Something new")
        assert (await post(session, running.postbacks, body))[0] == 200
        received = await subscriber.take(1, timeout=15, settle=0.3)
    assert len(received) == 1
    event = received[0].event
    assert (event["code"], event["family"], event["status"], event["final"]) == (
        "X777",
        "unknown",
        "unknown",
        False,
    )
    assert received[0].message.routing_key == "mms_mt.unknown.unknown.x777"
    assert await queue_count(Names(namespace).quarantine) == 0


async def _raw_post(url: str, body: bytes, content_type: bytes) -> int:
    """POST with header bytes no HTTP client library sends; returns the status code."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /postbacks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: " + content_type + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 15)
        return int(status_line.split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize("spool", [False, True], ids=["no-spool", "spool"])
async def test_a_charset_that_is_not_utf8_costs_its_batch_neighbours_nothing(
    namespace: str, tmp_path: Path, spool: bool
) -> None:
    # One request whose charset parameter holds a byte that is not UTF-8 arrives among 60
    # good ones, so it shares their intake batch. Each is answered 200; the good ones become
    # events, the odd one is quarantined naming its charset; the receiver goes on.
    bad = postback_xml("N101", "odd-charset")
    values = {"spool_dir": tmp_path / "spool"} if spool else {}
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        pipeline(namespace, **values) as running,
        http_session() as session,
    ):

        async def good(i: int) -> int:
            body = postback_xml("N102", f"neighbour-{i}")
            return (await post(session, running.postbacks, body))[0]

        statuses = await asyncio.gather(
            *(good(i) for i in range(30)),
            _raw_post(running.postbacks, bad, b"application/xml; charset=\xff"),
            *(good(i) for i in range(30, 60)),
        )
        after = await post(session, running.postbacks, postback_xml("N102", "after"))
        received = await subscriber.take(61, timeout=20, settle=0.3)
        messages = await quarantined(namespace, 1)
    assert statuses == [200] * 61
    assert after[0] == 200
    assert sorted(r.event["tracking_id"] for r in received) == sorted(
        [f"neighbour-{i}" for i in range(60)] + ["after"]
    )
    assert [m.body for m in messages] == [bad]
    assert "unknown charset '\\\\xff'" in str(messages[0].headers["x-error"])
