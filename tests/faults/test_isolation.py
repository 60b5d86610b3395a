"""Every hostile postback of the black-box review, mixed into a stream of valid ones sent to
real ``postbacks receive`` / ``postbacks work`` processes (two workers sharing Redis): each
valid postback arrives exactly once, every hostile one gets its clear answer or goes alone
to quarantine with its reason, and the workers stay ready the whole time."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import aiohttp
import pytest

from ingest import envelope
from ingest.envelope import Record
from ingest.event import received_at_now
from tests.integration._helpers import publish_raw
from tests.support import postback_xml, take_all

from .kit import Cluster, Downstream, Load, Report, Row, readiness, tally

pytestmark = pytest.mark.faults

# Bodies answered 200 that must each end alone in quarantine: (body, content type, reason word).
QUARANTINED: dict[str, tuple[bytes, str, str]] = {
    "origin of 250 bytes (routing key over 255)": (
        b'{"origin":"' + b"A" * 250 + b'","code":"N102"}',
        "application/json",
        "routing key",
    ),
    "origin of 119 x é (routing key over 255)": (
        ('{"origin":"' + "é" * 119 + '","code":"N102"}').encode(),
        "application/json",
        "routing key",
    ),
    "charset parameter of 240 characters": (
        b"<postback><origin>MMS_MT</origin><code>N102</code><tracking-id>cs</tracking-id>"
        b"</postback>",
        "application/xml; charset=" + "x" * 240,
        "charset",
    ),
    "UTF-7 charset, lone surrogate": (
        b"<postback><origin>MMS_MT</origin><code>N102</code><status>+2AA-</status></postback>",
        "application/xml; charset=utf-7",
        "surrogate",
    ),
    "UTF-7 declaration, lone surrogate": (
        b'<?xml version="1.0" encoding="utf-7"?><postback><origin>MMS_MT</origin>'
        b"<code>N102</code><status>+2AA-</status></postback>",
        "application/xml",
        "surrogate",
    ),
}


async def _raw(port: int, request: bytes, timeout: float = 10) -> int | None:
    """Send ``request`` as is; the status of the answer (None when the server closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1]) if line else None
    finally:
        writer.close()


async def _aborted_mid_body(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /postbacks HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        b"Content-Length: 1000\r\n\r\n<postback>"
    )
    await writer.drain()
    writer.close()
    del reader


async def _publish_intake(
    cluster: Cluster,
    body: bytes,
    content_type: str | None,
    message_id: str | None,
    headers: dict[str, aio_pika.abc.FieldValue] | None = None,
) -> None:
    intake = cluster.names.intake
    await publish_raw(intake, body, content_type, headers, message_id, cluster.rabbit.url)


async def test_hostile_postbacks_mixed_into_valid_traffic(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    receiver = await cluster.receiver()
    workers = [await cluster.worker(), await cluster.worker()]
    prefix = f"iso{uuid.uuid4().hex[:6]}"
    valid = Load(receiver.postbacks, prefix, concurrency=16, rate=300)
    background = asyncio.create_task(valid.run(3000))
    await valid.wait_answered(200)

    not_ready: list[str] = []
    watching = True

    async def watch() -> None:
        while watching:
            for worker in workers:
                status, body = await readiness(worker)
                if status != 200:
                    not_ready.append(f"{worker.port}: {status} {body}")
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    answers: dict[str, int | None] = {}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, (body, content_type, _) in QUARANTINED.items():
            for _ in range(3):  # several times, so some share an intake batch with valid ones
                async with session.post(
                    receiver.postbacks, data=body, headers={"Content-Type": content_type}
                ) as got:
                    answers[name] = got.status
    port = receiver.port
    answers["bad gzip"] = await _raw(
        port,
        b"POST /postbacks HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 12\r\nConnection: close\r\n\r\nnot gzip at!",
    )
    answers["Expect: 100-continue over the limit"] = await _raw(
        port,
        b"POST /postbacks HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        b"Expect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
    )
    answers["method FOO"] = await _raw(
        port, b"FOO /postbacks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    for _ in range(20):
        await _aborted_mid_body(port)
    # Straight into the intake, as an operator or a stray script might publish.
    await _publish_intake(
        cluster,
        envelope.pack(
            [
                Record(
                    uuid.uuid4().hex,
                    received_at_now(),
                    "xml",
                    None,
                    postback_xml("N101", f"{prefix}-many"),
                )
            ]
        ),
        envelope.CONTENT_TYPE,
        uuid.uuid4().hex,
        {"x-postbacks": "many"},
    )
    corrupt_id = uuid.uuid4().hex
    await _publish_intake(cluster, b"PB1\x00\x40not-a-record", envelope.CONTENT_TYPE, corrupt_id)
    same = postback_xml("N102", f"{prefix}-no-id")
    for _ in range(30):
        await _publish_intake(cluster, same, "application/xml", None)

    await background
    expected = valid.accepted() | {f"{prefix}-many", f"{prefix}-no-id"}
    await downstream.collect(expected, timeout=90)
    deadline = time.monotonic() + 30
    held: list[aio_pika.abc.AbstractIncomingMessage] = []
    wanted = 3 * len(QUARANTINED) + 1
    while len(held) < wanted and time.monotonic() < deadline:
        held += await take_all(cluster.names.quarantine, cluster.rabbit.url)
        await asyncio.sleep(0.5)
    watching = False
    await watcher
    alive = [service.alive() for service in (receiver, *workers)]
    logs = cluster.logs()

    result = tally(valid.shots, downstream)
    counts = downstream.count_by_tracking()
    reasons = {str((m.headers or {}).get("x-error", "")) for m in held}
    report.add(
        Row(
            "hostile postbacks mixed into valid traffic",
            result,
            "workers ready throughout" if not not_ready else f"{len(not_ready)} not-ready polls",
            f"{len(held)} quarantined alone; HTTP answers "
            + ", ".join(f"{k}: {v}" for k, v in answers.items() if k not in QUARANTINED),
        )
    )
    assert all(alive), alive
    assert not_ready == [], not_ready[:5]
    assert result.lost == 0 and result.duplicates == 0, result
    assert counts[f"{prefix}-many"] == 1 and counts[f"{prefix}-no-id"] == 1
    for name in QUARANTINED:
        assert answers[name] == 200, name
    assert answers["bad gzip"] == 400
    assert answers["Expect: 100-continue over the limit"] == 413
    assert answers["method FOO"] == 405
    bodies = [m.body for m in held]
    for name, (body, _, word) in QUARANTINED.items():
        assert bodies.count(body) == 3, name
        mine = [str((m.headers or {}).get("x-error", "")) for m in held if m.body == body]
        assert all(word in reason.lower() for reason in mine), (name, mine)
    assert [m.message_id for m in held if m.content_type == envelope.CONTENT_TYPE] == [corrupt_id]
    assert len(held) == wanted, reasons
    assert "Traceback" not in logs
