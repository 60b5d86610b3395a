"""One bad postback never costs another: whatever a postback does, it alone goes to
quarantine with its reason, its neighbours in the same intake message become events, and the
worker stays ready throughout."""

from __future__ import annotations

import asyncio
import io
import uuid
from dataclasses import dataclass

import aio_pika
from prometheus_client import generate_latest

from ingest import envelope, topology
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.names import Names
from tests.support import AMQP_URL, Subscriber, http_session, post, postback_xml, queue_count
from worker import tools
from worker.worker import Worker

from ._helpers import metric, pipeline, publish_raw, quarantined, settings_for, worker


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    fmt: str
    charset: str | None
    words: tuple[str, ...]  # the quarantine reason names one of these


HOSTILE = [
    Hostile(
        "origin of 250 bytes",
        b'{"origin":"' + b"A" * 250 + b'","code":"N102","tracking-id":"h-1"}',
        "json",
        None,
        ("routing key", "255"),
    ),
    Hostile(
        "origin of 119 x e-acute (238 bytes)",
        ('{"origin":"' + "é" * 119 + '","code":"N102"}').encode(),
        "json",
        None,
        ("routing key", "255"),
    ),
    Hostile(
        "UTF-7 charset with a lone surrogate",
        b"<postback><origin>MMS_MT</origin><code>N102</code><status>+2AA-</status></postback>",
        "xml",
        "utf-7",
        ("utf-7", "surrogate"),
    ),
    Hostile(
        "UTF-7 declaration with a lone surrogate",
        b'<?xml version="1.0" encoding="utf-7"?>'
        b"<postback><origin>MMS_MT</origin><code>N102</code><status>+2AA-</status></postback>",
        "xml",
        None,
        ("utf-7", "surrogate"),
    ),
    Hostile(
        "charset of 240 characters",
        b"<postback><origin>MMS_MT</origin><code>N102</code></postback>",
        "xml",
        "x" * 240,
        ("charset",),
    ),
    Hostile(
        "tracking id of 100,000 bytes",
        b"<postback><origin>MMS_MT</origin><code>N102</code><tracking-id>"
        + b"t" * 100_000
        + b"</tracking-id></postback>",
        "xml",
        None,
        ("headers",),
    ),
]


def _record(body: bytes, fmt: str = "xml", charset: str | None = None) -> Record:
    return Record(uuid.uuid4().hex, received_at_now(), fmt, charset, body)


async def _publish(
    names: Names,
    body: bytes,
    content_type: str | None = envelope.CONTENT_TYPE,
    message_id: str | None = None,
    headers: dict[str, aio_pika.abc.FieldValue] | None = None,
) -> None:
    await publish_raw(names.intake, body, content_type, headers, message_id)


async def test_hostile_postbacks_in_one_intake_message_go_alone_to_quarantine(
    namespace: str,
) -> None:
    names = Names(namespace)
    valid = [_record(postback_xml("N102", f"ok-{n}")) for n in range(50)]
    hostile = [_record(h.body, h.fmt, h.charset) for h in HOSTILE]
    mixed = valid[:25] + hostile + valid[25:]
    settings = settings_for(namespace)
    async with Subscriber(namespace, "all", ["#"]) as subscriber, worker(settings) as running:
        await _publish(
            names, envelope.pack(mixed), message_id=uuid.uuid4().hex, headers={"x-postbacks": 56}
        )
        received = await subscriber.take(50, timeout=20, settle=0.5)
        messages = await quarantined(namespace, len(HOSTILE))
        ready_after = running.ready
        intake_left = await queue_count(names.intake)
    assert sorted(r.event["tracking_id"] for r in received) == sorted(f"ok-{n}" for n in range(50))
    assert ready_after
    assert intake_left == 0
    by_id = {str(m.headers["x-postback-id"]): m for m in messages}
    assert sorted(by_id) == sorted(r.postback_id for r in hostile)
    for case, record in zip(HOSTILE, hostile, strict=True):
        message = by_id[record.postback_id]
        assert message.body == case.body, case.name
        reason = str(message.headers["x-error"]).lower()
        assert any(word in reason for word in case.words), (case.name, reason)
        assert message.content_type is not None and len(message.content_type) <= 255
    charset_case = by_id[hostile[4].postback_id]
    assert charset_case.headers["x-charset"] == "x" * 240  # shortened property, full header


async def test_hostile_postbacks_sent_among_valid_ones_cost_them_nothing(namespace: str) -> None:
    names = Names(namespace)
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        pipeline(namespace, max_body=1 << 20) as running,
        http_session() as session,
    ):

        async def good(n: int) -> int:
            return (await post(session, running.postbacks, postback_xml("N102", f"v-{n}")))[0]

        async def bad(case: Hostile) -> int:
            media = "application/xml" if case.fmt == "xml" else "application/json"
            content_type = f"{media}; charset={case.charset}" if case.charset else media
            return (await post(session, running.postbacks, case.body, content_type))[0]

        statuses = await asyncio.gather(
            *(good(n) for n in range(150)),
            *(bad(case) for case in HOSTILE),
            *(good(n) for n in range(150, 300)),
        )
        received = await subscriber.take(300, timeout=30, settle=0.5)
        messages = await quarantined(namespace, len(HOSTILE))
        ready_after = running.worker.ready
    assert statuses == [200] * (300 + len(HOSTILE))
    trackings = [r.event["tracking_id"] for r in received]
    assert sorted(trackings) == sorted(f"v-{n}" for n in range(300))  # each exactly once
    assert sorted(m.body for m in messages) == sorted(case.body for case in HOSTILE)
    assert ready_after
    assert await queue_count(names.intake) == 0


async def test_an_x_postbacks_header_that_is_no_count_is_no_crash(namespace: str) -> None:
    names = Names(namespace)
    records = [_record(postback_xml("N101", f"many-{n}")) for n in range(3)]
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        worker(settings_for(namespace)) as running,
    ):
        for value in ("many", -4, 10**12):
            await _publish(
                names,
                envelope.pack(records),
                message_id=uuid.uuid4().hex,
                headers={"x-postbacks": value},
            )
        received = await subscriber.take(3, timeout=15, settle=0.5)
        ready_after = running.ready
    # The same three postbacks three times (three intake messages): three events.
    assert sorted(r.event["tracking_id"] for r in received) == [f"many-{n}" for n in range(3)]
    assert ready_after
    assert await queue_count(names.quarantine) == 0


async def test_identical_messages_without_a_message_id_give_one_event(namespace: str) -> None:
    names = Names(namespace)
    body = postback_xml("N102", "no-message-id")
    settings = settings_for(namespace)
    async with Subscriber(namespace, "all", ["#"]) as subscriber:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, names)
            for _ in range(30):  # all waiting before the worker starts: one batch
                await channel.default_exchange.publish(
                    aio_pika.Message(body, content_type="application/xml"),
                    routing_key=names.intake,
                )
        async with worker(settings) as running:
            received = await subscriber.take(1, timeout=15, settle=1.5)
            duplicates = metric(_scrape(running), "postbacks_duplicates_dropped_total")
    assert [r.event["tracking_id"] for r in received] == ["no-message-id"]
    assert duplicates == 29
    assert await queue_count(names.intake) == 0


def _scrape(running: Worker) -> str:
    return generate_latest(running.metrics.registry).decode()


async def test_a_corrupt_envelope_is_quarantined_and_never_blocks_a_replay(
    namespace: str,
) -> None:
    names = Names(namespace)
    settings = settings_for(namespace)
    broken = postback_xml("N101", "broken")[:-5]  # not well-formed: quarantined by itself
    async with worker(settings) as running:
        await _publish(names, b"PB2 not an envelope", message_id=uuid.uuid4().hex)
        await _publish(names, envelope.pack([_record(broken)]), message_id=uuid.uuid4().hex)
        messages = await quarantined(namespace, 2, timeout=30)
        ready_after = running.ready
    assert ready_after
    reasons = sorted(str(m.headers["x-error"]) for m in messages)
    assert "cannot be unpacked" in reasons[0] and "PB1" in reasons[0], reasons
    # Put them back as they were, then replay: the valid one moves, the corrupt one is
    # reported and stays, and the command does not fail.
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        for message in messages:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    headers=message.headers,
                ),
                routing_key=names.quarantine,
            )
    report = io.StringIO()
    moved = await tools.replay(settings, progress=None, report=report)
    assert moved == 1
    assert "left in quarantine" in report.getvalue() and "PB1" in report.getvalue()
    assert await queue_count(names.quarantine) == 1
    assert await queue_count(names.intake) == 1
    moved_again = await tools.replay(settings, progress=None, report=io.StringIO())
    assert moved_again == 0  # the corrupt one is still reported, never moved
    assert await queue_count(names.quarantine) == 1


async def test_replay_match_and_limit_choose_what_moves(namespace: str) -> None:
    names = Names(namespace)
    settings = settings_for(namespace)
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            names.quarantine, durable=True, arguments={"x-queue-type": "quorum"}
        )
        for n in range(6):
            reason = "unknown charset 'foo'" if n % 2 else "not well-formed XML: line 1"
            await channel.default_exchange.publish(
                aio_pika.Message(
                    postback_xml("N101", f"q-{n}"),
                    content_type="application/xml",
                    headers={"x-error": reason, "x-postback-id": f"q-{n}", "x-format": "xml"},
                ),
                routing_key=names.quarantine,
            )
    listing = io.StringIO()
    would = await tools.replay(settings, dry_run=True, listing=listing, match="charset")
    assert would == 3 and listing.getvalue().count("unknown charset") == 3
    assert "well-formed" not in listing.getvalue()
    moved = await tools.replay(settings, progress=None, match="charset", limit=2)
    assert moved == 2
    assert await queue_count(names.quarantine) == 4
    assert await queue_count(names.intake) == 2
    rest = await tools.replay(settings, progress=None, match="charset")
    assert rest == 1
    assert await queue_count(names.quarantine) == 3
    intake = await _take_intake(names)
    assert sorted(r.postback_id for r in intake) == ["q-1", "q-3", "q-5"]


async def _take_intake(names: Names) -> list[Record]:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.intake, passive=True)
        records: list[Record] = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            records += envelope.unpack(message.body)
        return records
