"""The receiver answers 200 only once RabbitMQ confirmed the postback into ``NS.intake``;
when the broker is away, refuses, or stalls, the answer is 503 with Retry-After, never 200."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aio_pika

from ingest import envelope
from ingest.names import Names
from tests.support import AMQP_URL, http_session, post, postback_json, postback_xml, queue_count

from ._helpers import (
    TcpProxy,
    closed_port_url,
    get_text,
    intake_records,
    rabbitmqctl,
    receiver,
    settings_for,
    wait_count,
)


async def test_a_200_means_the_postback_is_already_in_the_intake_queue(namespace: str) -> None:
    body = postback_xml("N102", "confirm-1", status="Message Sent/Delivered")
    async with receiver(settings_for(namespace)) as url, http_session() as session:
        status, text, _ = await post(session, f"{url}/postbacks", body, "text/xml; charset=utf-8")
        # No worker runs: right after the answer the postback must be in the durable queue.
        in_queue = await queue_count(Names(namespace).intake)
        ready_status, ready_body = await get_text(f"{url}/readyz")
        metrics_status, metrics = await get_text(f"{url}/metrics")
    assert (status, text) == (200, "OK")
    assert metrics_status == 200
    assert 'postbacks_http_requests_total{code="200"} 1.0' in metrics.splitlines()
    assert ready_status == 200
    assert '"broker":"ok"' in ready_body.replace(" ", "")
    assert in_queue == 1
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(Names(namespace).intake, passive=True)
        message = await queue.get(no_ack=True)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert body in message.body


async def test_every_postback_answered_200_is_in_intake_byte_for_byte(namespace: str) -> None:
    bodies = [postback_xml("N101", f"many-{i}") for i in range(40)]
    bodies += [postback_json("N102", f"many-json-{i}") for i in range(40)]
    async with receiver(settings_for(namespace)) as url, http_session() as session:
        answers = await asyncio.gather(
            *(
                post(session, f"{url}/postbacks", body, None if body[:1] == b"<" else "text/plain")
                for body in bodies
            )
        )
    assert [status for status, _, _ in answers] == [200] * len(bodies)
    records = await intake_records(namespace)
    assert sorted(record.body for record in records) == sorted(bodies)
    assert {record.body: record.fmt for record in records} == {
        body: "xml" if body[:1] == b"<" else "json" for body in bodies
    }


async def test_broker_unreachable_gives_503_with_retry_after_never_200(namespace: str) -> None:
    settings = settings_for(namespace, amqp_url=closed_port_url(), confirm_timeout=2.0)
    async with receiver(settings, ready=False) as url, http_session() as session:
        started = time.monotonic()
        answers = [
            await post(session, f"{url}/postbacks", postback_xml("N101", f"down-{i}"))
            for i in range(3)
        ]
        elapsed = time.monotonic() - started
        ready_status, ready_body = await get_text(f"{url}/readyz")
        health_status, _ = await get_text(f"{url}/healthz")
    for status, _, headers in answers:
        assert status == 503
        assert int(headers["Retry-After"]) > 0
    assert elapsed < 3 * settings.confirm_timeout
    assert ready_status == 503
    assert '"broker"' in ready_body
    assert '"ok"' not in ready_body
    assert health_status == 200


async def test_broker_that_stalls_gives_503_within_the_confirm_timeout(namespace: str) -> None:
    proxy = TcpProxy()
    await proxy.start()
    settings = settings_for(namespace, amqp_url=proxy.url, confirm_timeout=1.0)
    try:
        async with receiver(settings) as url, http_session() as session:
            proxy.freeze()
            started = time.monotonic()
            status, _, headers = await post(
                session, f"{url}/postbacks", postback_xml("N101", "stalled")
            )
            elapsed = time.monotonic() - started
            proxy.thaw()
    finally:
        await proxy.close()
    assert status == 503
    assert "Retry-After" in headers
    assert elapsed < settings.confirm_timeout + 1.0


async def test_broker_refusing_the_postback_gives_503(namespace: str) -> None:
    """A full intake queue (overflow reject-publish) nacks: the receiver must not say 200."""
    names = Names(namespace)
    policy = f"{namespace}-full"
    async with receiver(settings_for(namespace)) as url, http_session() as session:
        first = await post(session, f"{url}/postbacks", postback_xml("N101", "fits"))
        await asyncio.to_thread(
            rabbitmqctl,
            "set_policy",
            "--apply-to",
            "queues",
            "--priority",
            "100",
            policy,
            f"^{names.intake.replace('.', '[.]')}$",
            '{"max-length": 1, "overflow": "reject-publish"}',
        )
        try:
            deadline = time.monotonic() + 10
            second = await post(session, f"{url}/postbacks", postback_xml("N101", "refused"))
            while second[0] == 200 and time.monotonic() < deadline:  # policy not applied yet
                second = await post(session, f"{url}/postbacks", postback_xml("N101", "again"))
        finally:
            await asyncio.to_thread(rabbitmqctl, "clear_policy", policy)
    assert first[0] == 200
    assert second[0] == 503
    assert "Retry-After" in second[2]


async def test_with_a_spool_the_postback_is_kept_and_forwarded_when_the_broker_is_back(
    namespace: str, tmp_path: Path
) -> None:
    proxy = TcpProxy()  # not listening yet: the broker is away
    spool = tmp_path / "spool"
    settings = settings_for(namespace, amqp_url=proxy.url, spool_dir=spool, confirm_timeout=1.0)
    body = postback_xml("N102", "spooled")
    try:
        async with receiver(settings, ready=False) as url, http_session() as session:
            status, text, _ = await post(session, f"{url}/postbacks", body)
            ready_status, ready_body = await get_text(f"{url}/readyz")
            assert (status, text) == (200, "OK")
            assert ready_status == 503
            assert '"spool_pending":1' in ready_body.replace(" ", "")
            assert sum(p.stat().st_size for p in spool.iterdir()) > len(body)
            await proxy.start()
            moved = await wait_count(namespace, Names(namespace).intake, 1, timeout=20)
    finally:
        await proxy.close()
    assert moved == 1
    records = await intake_records(namespace)
    assert [record.body for record in records] == [body]


async def test_readyz_follows_the_broker_link_down_and_back(namespace: str) -> None:
    proxy = TcpProxy()
    await proxy.start()
    settings = settings_for(namespace, amqp_url=proxy.url, confirm_timeout=1.0)
    try:
        async with receiver(settings) as url, http_session() as session:
            await proxy.close()  # the broker goes away: connections drop, nothing listens
            down = await wait_http_status(f"{url}/readyz", 503)
            refused = await post(session, f"{url}/postbacks", postback_xml("N101", "while-down"))
            await proxy.start()
            back = await wait_http_status(f"{url}/readyz", 200)
            accepted = await post(session, f"{url}/postbacks", postback_xml("N101", "back"))
    finally:
        await proxy.close()
    assert down == 503
    assert refused[0] == 503
    assert back == 200
    assert accepted[0] == 200
    assert [record.body for record in await intake_records(namespace)] == [
        postback_xml("N101", "back")
    ]


async def wait_http_status(url: str, status: int, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen, _ = await get_text(url)
        if seen == status:
            break
        await asyncio.sleep(0.1)
    return seen


async def test_the_spool_forwards_in_batches_bounded_by_bytes_as_the_live_path(
    namespace: str, tmp_path: Path
) -> None:
    """Large postbacks spooled while the broker was away go back in intake messages of about
    1 MiB each, never all in one (a broker refuses a message over its max size, and a
    forwarder that retried that one message for ever would wedge the whole spool)."""
    proxy = TcpProxy()
    spool = tmp_path / "spool"
    settings = settings_for(
        namespace, amqp_url=proxy.url, spool_dir=spool, confirm_timeout=0.5, max_body=1 << 20
    )
    pad = "x" * 400_000
    bodies = [postback_xml("N102", f"big-{n}", padding=pad) for n in range(12)]
    try:
        async with receiver(settings, ready=False) as url, http_session() as session:
            statuses = [(await post(session, f"{url}/postbacks", body))[0] for body in bodies]
            assert statuses == [200] * len(bodies)
            await proxy.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                _, ready_body = await get_text(f"{url}/readyz")
                if '"spool_pending":0' in ready_body.replace(" ", ""):
                    break
                await asyncio.sleep(0.2)
    finally:
        await proxy.close()
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        intake = await channel.declare_queue(Names(namespace).intake, passive=True)
        sizes, forwarded = [], []
        while (message := await intake.get(no_ack=True, fail=False)) is not None:
            sizes.append(len(message.body))
            forwarded += envelope.unpack(message.body)
    assert sorted(r.body for r in forwarded) == sorted(bodies)
    assert len(sizes) >= 4, sizes
    assert max(sizes) <= (1 << 20) + 500_000, sizes
