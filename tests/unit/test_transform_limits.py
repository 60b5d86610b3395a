"""A postback whose event would break AMQP's limits is rejected on its own, with the reason;
``transform`` never raises, and the quarantine message always fits AMQP's limits."""

from __future__ import annotations

import pytest

from ingest import envelope
from ingest.envelope import Record
from tests.support import postback_xml
from tests.unit.test_intake import incoming
from worker import quarantine
from worker.transform import Outgoing, Rejected, transform

RECEIVED = "2026-01-01T00:00:00.000000Z"


def record(body: bytes, fmt: str = "json", charset: str | None = None) -> Record:
    return Record("p1", RECEIVED, fmt, charset, body)


@pytest.mark.parametrize(
    "origin", ["A" * 250, "é" * 119, "A" * 232], ids=["250-ascii", "119-e-acute", "232-ascii"]
)
def test_a_routing_key_over_255_bytes_is_rejected_with_that_reason(origin: str) -> None:
    body = ('{"origin":"' + origin + '","code":"N102"}').encode()
    result = transform(record(body))
    assert isinstance(result, Rejected)
    assert "routing key would be" in result.reason and "255" in result.reason
    assert origin not in result.reason  # sizes, not the postback's content


def test_a_routing_key_of_exactly_255_bytes_is_an_event() -> None:
    # "<origin>.delivery.delivered.n102" is 24 bytes more than the origin.
    origin = "A" * (255 - len(".delivery.delivered.n102"))
    result = transform(record(('{"origin":"' + origin + '","code":"N102"}').encode()))
    assert isinstance(result, Outgoing)
    assert len(result.routing_key.encode()) == 255


def test_headers_over_the_bound_are_rejected() -> None:
    body = postback_xml("N102", "t" * 70_000)
    result = transform(record(body, "xml"))
    assert isinstance(result, Rejected) and "headers" in result.reason


@pytest.mark.parametrize(
    ("fmt", "charset", "received_at"),
    [("yaml", None, RECEIVED), ("xml", "utf-7", RECEIVED), ("xml", None, "yesterday")],
)
def test_transform_never_raises(fmt: str, charset: str | None, received_at: str) -> None:
    body = b"<postback><origin>MMS_MT</origin><code>N102</code><status>+2AA-</status></postback>"
    result = transform(Record("p1", received_at, fmt, charset, body))
    assert isinstance(result, Rejected) and result.reason


def test_a_quarantine_message_stays_within_amqp_limits() -> None:
    charset = "x" * 300
    message = quarantine.postback(record(b"{}", "json", charset), "r" * 5000)
    assert message.content_type == "application/json"  # shortened; x-charset has it all
    assert message.headers["x-charset"] == charset
    reason = str(message.headers["x-error"])
    assert len(reason) == quarantine.REASON_MAX and reason.endswith("…")
    short = quarantine.postback(record(b"{}", "json", "latin-1"), "bad")
    assert short.content_type == "application/json; charset=latin-1"


def test_replay_reads_back_what_the_worker_wrote_and_refuses_a_corrupt_envelope() -> None:
    body = postback_xml("N101", "back")
    written = quarantine.postback(Record("p9", RECEIVED, "xml", "utf-8", body), "broken")
    read = incoming(
        written.body, written.content_type, headers=dict(written.headers), message_id=None
    )
    again, count = quarantine.replayable(read)
    assert count == 1 and again.message_id
    (back,) = envelope.unpack(again.body)
    assert (back.postback_id, back.received_at, back.fmt, back.charset, back.body) == (
        "p9",
        RECEIVED,
        "xml",
        "utf-8",
        body,
    )
    corrupt = incoming(b"PB2 no", envelope.CONTENT_TYPE, message_id="x")
    with pytest.raises(quarantine.NotReplayable, match="PB1"):
        quarantine.replayable(corrupt)
