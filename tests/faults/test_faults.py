"""A postback answered 200 is a promise: these tests break parts of the system on purpose,
with real processes, a real RabbitMQ node and a real Redis (private ones, see
``services.py``), and check what a user would notice: every postback answered 200 appears
downstream exactly once, and the parts recover by themselves."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
import uuid
from pathlib import Path

import aio_pika
import pytest

from ingest import envelope
from ingest.names import DELIVERY_LIMIT
from tests.support import queue_count, take_all

from .kit import (
    Cluster,
    Downstream,
    Load,
    Report,
    Row,
    Service,
    all_ready,
    readiness,
    tally,
    valid_postback,
)

pytestmark = pytest.mark.faults


def _assert_exactly_once(fault: str, load: Load, downstream: Downstream) -> None:
    result = tally(load.shots, downstream)
    assert result.lost == 0, f"{fault}: postbacks answered 200 never arrived: {result.lost_ids}"
    assert result.duplicates == 0, f"{fault}: events published twice: {result.duplicate_ids}"


def _mostly_200(load: Load) -> None:
    """The fault under test does not concern the receiver: it goes on answering 200 (a rare
    503 under CPU contention, when the broker's confirm is late, is allowed: it is no
    promise broken)."""
    statuses = load.statuses()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 0.99 * len(load.shots), statuses


def _alive(*services: Service) -> None:
    for service in services:
        assert service.alive(), f"{service.role} died:\n{service.proc.output()[-3000:]}"


async def _stream(load: Load, count: int | None = None) -> asyncio.Task[object]:
    task: asyncio.Task[object] = asyncio.create_task(load.run(count))
    await asyncio.sleep(0)
    return task


async def test_worker_killed_with_sigkill_mid_stream(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    """Thousands of postbacks at full rate, one receiver, two workers sharing Redis; a worker
    is killed with SIGKILL three times mid-stream and started again."""
    receiver = await cluster.receiver()
    workers = [await cluster.worker(), await cluster.worker()]
    load = Load(receiver.postbacks, "kill", concurrency=64)
    total = 8000
    running = await _stream(load, total)
    recoveries: list[float] = []
    for round_, at in enumerate((1500, 3500, 5500)):
        await load.wait_answered(at)
        victim = workers[round_ % 2]
        victim.proc.kill()  # SIGKILL to its process group
        await asyncio.sleep(0.3)
        restarted = cluster.restart(victim)
        workers[round_ % 2] = restarted
        recoveries.append(await all_ready([restarted]))
    await running
    last_answer = max(shot.answered for shot in load.shots)
    await downstream.collect(load.accepted(), timeout=90)
    drained = time.monotonic() - last_answer
    _alive(receiver, *workers)
    report.note_rss("receiver (full-rate worker-kill test)", receiver.peak_rss_kib())
    report.note_rss(
        "worker (full-rate worker-kill test, larger of two)",
        max(worker.peak_rss_kib() for worker in workers),
    )
    result = tally(load.shots, downstream)
    report.add(
        Row(
            "worker killed (SIGKILL ×3, restarted)",
            result,
            f"worker ready {max(recoveries):.1f} s after restart (max of 3)",
            f"2 workers sharing Redis, full rate; killed after 1,500, 3,500 and 5,500 "
            f"answers; all events out {drained:.1f} s after the last answer",
        )
    )
    assert len(load.shots) == total
    _mostly_200(load)
    _assert_exactly_once("worker killed", load, downstream)
    assert max(recoveries) < 15


async def test_broker_stopped_and_started_mid_stream(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    """``rabbitmqctl stop_app`` mid-stream: 503 (never 200) while it is away, readiness names
    the broker; after ``start_app`` everything recovers by itself within seconds."""
    receiver = await cluster.receiver()
    workers = [await cluster.worker(), await cluster.worker()]
    load = Load(receiver.postbacks, "broker", concurrency=64, rate=800)
    running = await _stream(load)
    await load.wait_answered(1500)

    stopping = time.monotonic()
    await asyncio.to_thread(cluster.rabbit.stop_app)
    stopped = time.monotonic()
    await asyncio.sleep(0.5)
    receiver_ready, receiver_body = await readiness(receiver)
    worker_ready = [await readiness(worker) for worker in workers]
    await asyncio.sleep(3.0)
    outage_end = time.monotonic()
    await asyncio.to_thread(cluster.rabbit.start_app)
    back = time.monotonic()
    recovery = await all_ready([receiver, *workers], timeout=30)
    await asyncio.sleep(2.0)  # the stream goes on after the broker is back
    load.stop()
    await running

    during = [shot for shot in load.shots if stopped <= shot.sent and shot.answered <= outage_end]
    phases = {
        "before": [s for s in load.shots if s.sent < stopping],
        "while stop_app ran": [s for s in load.shots if stopping <= s.sent < stopped],
        "while stopped": [s for s in load.shots if stopped <= s.sent < outage_end],
        "while start_app ran": [s for s in load.shots if outage_end <= s.sent < back],
        "after": [s for s in load.shots if back <= s.sent],
    }
    after = [shot for shot in load.shots if shot.sent >= back and shot.status == 200]
    first_200 = min(shot.answered for shot in after) - back if after else float("inf")
    await downstream.collect(load.accepted(), timeout=90)
    _alive(receiver, *workers)
    result = tally(load.shots, downstream)
    answers_during = {shot.status for shot in during}
    report.add(
        Row(
            f"broker stopped (`stop_app` … `start_app`, {back - stopping:.1f} s)",
            result,
            f"all ready {recovery:.1f} s after `start_app`; first 200 after {first_200:.1f} s",
            "answers by when the postback was sent: "
            + "; ".join(
                f"{phase} {dict(sorted(collections.Counter(s.status for s in shots).items()))}"
                for phase, shots in phases.items()
            )
            + f"; {result.unasked} postbacks answered 503 arrived anyway (at most once)",
        )
    )
    assert receiver_ready == 503
    assert receiver_body["checks"]["broker"] != "ok"
    assert "broker" in receiver_body["checks"]["broker"]
    for status, body in worker_ready:
        assert status == 503
        assert body["checks"]["broker"] != "ok"
    assert during, "no postback was sent while the broker was away"
    assert 200 not in answers_during, "a postback was answered 200 while the broker was away"
    assert answers_during <= {503}
    _assert_exactly_once("broker restarted", load, downstream)
    assert recovery < 15
    assert first_200 < 15


async def test_redis_down_then_back(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    """Redis shut down mid-stream: workers stop acking (nothing dropped, nothing published),
    readiness names Redis; when it is back they resume and every 200 arrives once."""
    receiver = await cluster.receiver()
    workers = [await cluster.worker(), await cluster.worker()]
    load = Load(receiver.postbacks, "redis", concurrency=32, rate=600)
    running = await _stream(load)
    await load.wait_answered(1200)
    subscriber = cluster.names.subscriber("faults")

    down = time.monotonic()
    await asyncio.to_thread(cluster.redis.stop)
    await asyncio.sleep(1.5)  # batches already past their claim finish
    published_before = await queue_count(subscriber, cluster.rabbit.url)
    intake_before = await queue_count(cluster.names.intake, cluster.rabbit.url)
    worker_ready = []
    for worker in workers:
        deadline = time.monotonic() + 10
        status, body = await readiness(worker)
        while status != 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            status, body = await readiness(worker)
        worker_ready.append((status, body))
    await asyncio.sleep(2.0)
    published_after = await queue_count(subscriber, cluster.rabbit.url)
    intake_after = await queue_count(cluster.names.intake, cluster.rabbit.url)
    receiver_ready, _ = await readiness(receiver)

    await asyncio.to_thread(cluster.redis.start)
    back = time.monotonic()
    recovery = await all_ready(workers, timeout=30)
    while await queue_count(subscriber, cluster.rabbit.url) == published_after:
        assert time.monotonic() - back < 30, "no event was published after Redis came back"
        await asyncio.sleep(0.05)
    flowing = time.monotonic() - back
    await asyncio.sleep(1.5)
    load.stop()
    await running
    await downstream.collect(load.accepted(), timeout=90)
    drained = time.monotonic() - back
    _alive(receiver, *workers)
    result = tally(load.shots, downstream)
    report.add(
        Row(
            f"Redis down (shut down {back - down:.1f} s, started again empty)",
            result,
            f"workers ready {recovery:.1f} s and events flowing {flowing:.1f} s after Redis "
            "answers again",
            f"while down: 0 events published ({published_before}→{published_after} in the "
            f"subscriber queue), intake grew {intake_before}→{intake_after}; receiver kept "
            f"answering 200; backlog delivered within {drained:.1f} s",
        )
    )
    for status, body in worker_ready:
        assert status == 503, body
        assert "redis" in str(body["checks"].get("redis", "")).lower(), body
    assert published_after == published_before, "events were published while Redis was down"
    assert intake_after > intake_before, "the intake did not keep what arrived meanwhile"
    assert receiver_ready == 200
    _mostly_200(load)
    _assert_exactly_once("redis down", load, downstream)
    assert recovery < 15


async def _slow_post(port: int, body: bytes, pieces: int, spread: float) -> int | None:
    """POST ``body`` in ``pieces`` over ``spread`` seconds; the status, or None (no answer)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(
            b"POST /postbacks HTTP/1.1\r\nHost: faults\r\nContent-Type: application/xml\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            writer.write(body[start : start + step])
            await writer.drain()
            await asyncio.sleep(spread / pieces)
        line = await asyncio.wait_for(reader.readline(), 20)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None
    except (OSError, TimeoutError, ValueError, IndexError):
        return None
    finally:
        writer.close()


async def test_receiver_sigterm_with_requests_in_flight(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    """SIGTERM while requests are in flight: each gets its answer, every 200 arrives."""
    receiver = await cluster.receiver()
    worker = await cluster.worker()
    load = Load(receiver.postbacks, "sigterm", concurrency=64)
    running = await _stream(load)
    await load.wait_answered(2000)
    # Requests certainly in flight: the handler is reading their bodies when the signal comes.
    slow_ids = [f"sigterm-slow-{i}" for i in range(16)]
    slow = [
        asyncio.create_task(_slow_post(receiver.port, valid_postback(t, 0)[0], 4, 2.0))
        for t in slow_ids
    ]
    await asyncio.sleep(0.8)
    signalled = time.monotonic()
    receiver.proc.popen.send_signal(signal.SIGTERM)
    load.stop()
    code = await asyncio.to_thread(receiver.proc.popen.wait, 15)
    exited = time.monotonic() - signalled
    slow_answers = await asyncio.gather(*slow)
    await running
    restarted = cluster.restart(receiver)
    recovery = await all_ready([restarted])

    # The slow ones count as postbacks too.
    accepted = load.accepted() | {
        t for t, s in zip(slow_ids, slow_answers, strict=True) if s == 200
    }
    await downstream.collect(accepted, timeout=60)
    _alive(restarted, worker)
    in_flight = [s for s in load.shots if s.sent < signalled <= s.answered]
    unanswered = [s for s in load.shots if s.status is None]
    result = tally(load.shots, downstream)
    counts = downstream.count_by_tracking()
    report.add(
        Row(
            "receiver stopped (SIGTERM under load)",
            result,
            f"exited {exited:.1f} s after SIGTERM (status {code}); ready {recovery:.1f} s "
            "after restart",
            f"{len(in_flight)} fast requests in flight, answers "
            f"{sorted({str(s.status) for s in in_flight})}; {len(slow_ids)} slow uploads in "
            f"flight all answered {sorted({str(s) for s in slow_answers})}, all delivered",
        )
    )
    assert code == 0
    assert exited < 10
    assert slow_answers == [200] * len(slow_ids)
    assert all(counts[t] == 1 for t in slow_ids)
    assert all(s.status == 200 for s in in_flight if s.sent < signalled - 0.2), [
        (s.status, s.error) for s in in_flight
    ]
    assert len(unanswered) <= load.concurrency
    _assert_exactly_once("receiver SIGTERM", load, downstream)


async def _publish_raw(cluster: Cluster, body: bytes, message_id: str) -> None:
    """Straight into ``NS.intake``, as an intake batch."""
    async with await aio_pika.connect(cluster.rabbit.url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                content_type=envelope.CONTENT_TYPE,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=cluster.names.intake,
        )


async def _die_holding_each_delivery(amqp_url: str, queue: str) -> int:
    """Take the message and drop the connection without an ack, like a consumer killed
    while working on it, until the queue no longer hands it out; returns the deliveries."""
    deliveries, empty_since = 0, time.monotonic()
    while time.monotonic() - empty_since < 2.0 and deliveries < 5 * DELIVERY_LIMIT:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            message = await declared.get(no_ack=False, fail=False)
        finally:
            await connection.close()
        if message is None:
            await asyncio.sleep(0.1)
            continue
        deliveries += 1
        empty_since = time.monotonic()
    return deliveries


async def test_poison_message_is_quarantined_and_workers_go_on(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    """A message that makes the worker raise is retried a bounded number of times, then lands
    in ``NS.quarantine`` with its reason; valid traffic keeps flowing meanwhile."""
    receiver = await cluster.receiver()
    workers = [await cluster.worker(), await cluster.worker()]
    load = Load(receiver.postbacks, "poison", concurrency=16, rate=500)
    running = await _stream(load, 2000)
    await load.wait_answered(300)

    poison_id = f"poison-{uuid.uuid4().hex[:8]}"
    corrupt = envelope.MAGIC + b"\x00\x40not-a-record\xff\xfe"
    await _publish_raw(cluster, corrupt, poison_id)
    published = time.monotonic()
    deadline = published + 30
    while await queue_count(cluster.names.quarantine, cluster.rabbit.url) == 0:
        assert time.monotonic() < deadline, "the poison message never reached quarantine"
        await asyncio.sleep(0.1)
    quarantined_after = time.monotonic() - published
    await running
    await downstream.collect(load.accepted(), timeout=60)
    _alive(receiver, *workers)
    held = await take_all(cluster.names.quarantine, cluster.rabbit.url)
    arguments = cluster.rabbit.ctl("list_queues", "name", "arguments").stdout
    logs = "\n".join(worker.proc.output() for worker in workers)
    deliveries = logs.count("cannot be unpacked, will retry") + logs.count(
        "intake message quarantined"
    )
    result = tally(load.shots, downstream)
    reason = str((held[0].headers or {}).get("x-error")) if held else ""

    # The backstop: a message whose consumer dies every time it takes it (no worker left to
    # quarantine it) is dead-lettered by the quorum queue after x-delivery-limit deliveries.
    for worker in workers:
        assert worker.proc.terminate() == 0
    crasher_id = f"crasher-{uuid.uuid4().hex[:8]}"
    await _publish_raw(cluster, corrupt, crasher_id)
    crashes = await _die_holding_each_delivery(cluster.rabbit.url, cluster.names.intake)
    dead_lettered = await take_all(cluster.names.quarantine, cluster.rabbit.url)
    death = (dead_lettered[0].headers or {}) if dead_lettered else {}
    death_reason = str(death.get("x-first-death-reason"))
    report.add(
        Row(
            "poison message (corrupt intake batch)",
            result,
            f"quarantined {quarantined_after:.1f} s after it was published",
            f"{deliveries} deliveries, then `NS.quarantine` with x-error “{reason}”; "
            "valid traffic unaffected. Backstop: a message whose consumer dies each time "
            f"was delivered {crashes} times, then dead-lettered to `NS.quarantine` "
            f"(x-first-death-reason “{death_reason}”)",
        )
    )
    assert [m.message_id for m in dead_lettered] == [crasher_id]
    assert crashes == DELIVERY_LIMIT + 1
    assert death_reason == "delivery_limit"
    assert [m.message_id for m in held] == [poison_id]
    assert held[0].body == corrupt
    assert "BadEnvelope" in reason
    assert 1 <= deliveries <= DELIVERY_LIMIT
    intake_line = next(
        line for line in arguments.splitlines() if line.startswith(cluster.names.intake)
    )
    assert "x-delivery-limit" in intake_line and cluster.names.quarantine in intake_line
    assert len(load.shots) == 2000
    _mostly_200(load)
    _assert_exactly_once("poison", load, downstream)


async def _spool_pending(receiver: Service) -> int:
    _, body = await readiness(receiver)
    return int(body.get("spool_pending", -1))


async def _wait_spool_empty(receiver: Service, timeout: float = 60) -> float:
    started = time.monotonic()
    while await _spool_pending(receiver) != 0:
        assert time.monotonic() - started < timeout, "the spool was not forwarded"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _spooled_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("spool-*.log"))


async def test_spool_holds_postbacks_while_the_broker_is_away(
    cluster: Cluster, downstream: Downstream, report: Report, tmp_path: Path
) -> None:
    """Broker stopped, 1,000 postbacks: all 200 (fsynced into the spool); broker back: all
    1,000 events, in order, none twice, and the spool is emptied."""
    spool = tmp_path / "spool"
    receiver = await cluster.receiver(INGEST_SPOOL_DIR=str(spool))
    worker = await cluster.worker()  # one worker: events leave in intake order
    await asyncio.to_thread(cluster.rabbit.stop_app)
    try:
        load = Load(receiver.postbacks, "spool", concurrency=64)
        await load.run(1000)
        pending = await _spool_pending(receiver)
        on_disk = _spooled_bytes(spool)
    finally:
        await asyncio.to_thread(cluster.rabbit.start_app)
    forwarded = await _wait_spool_empty(receiver)
    await downstream.collect(load.accepted(), timeout=60)
    _alive(receiver, worker)
    result = tally(load.shots, downstream)
    ours = [seen for seen in downstream.events if seen.tracking in load.accepted()]
    in_order = [seen.received_at for seen in ours] == sorted(seen.received_at for seen in ours)
    report.add(
        Row(
            "spool: broker stopped, 1,000 postbacks",
            result,
            f"spool forwarded {forwarded:.1f} s after `start_app`",
            f"{pending} postbacks in the spool ({on_disk} bytes) while down; forwarded in "
            f"order: {'yes' if in_order else 'NO'}; spool files left: "
            f"{_spooled_bytes(spool)} bytes",
        )
    )
    assert load.statuses() == {200: 1000}
    assert pending == 1000 and on_disk > 0
    assert result.downstream == 1000
    _assert_exactly_once("spool", load, downstream)
    assert in_order, "spooled postbacks were not forwarded in the order they were accepted"
    assert _spooled_bytes(spool) == 0


async def test_spool_survives_a_receiver_killed_with_sigkill(
    cluster: Cluster, downstream: Downstream, report: Report, tmp_path: Path
) -> None:
    """A receiver killed with SIGKILL while its spool is not empty forwards it after restart."""
    spool = tmp_path / "spool"
    receiver = await cluster.receiver(INGEST_SPOOL_DIR=str(spool))
    worker = await cluster.worker()
    await asyncio.to_thread(cluster.rabbit.stop_app)
    try:
        load = Load(receiver.postbacks, "spoolkill", concurrency=32)
        await load.run(300)
        receiver.proc.kill()  # SIGKILL
        on_disk = _spooled_bytes(spool)
    finally:
        await asyncio.to_thread(cluster.rabbit.start_app)
    restarted = cluster.restart(receiver)
    started = time.monotonic()
    await all_ready([restarted])
    await _wait_spool_empty(restarted)
    forwarded = time.monotonic() - started
    await downstream.collect(load.accepted(), timeout=60)
    _alive(restarted, worker)
    result = tally(load.shots, downstream)
    report.add(
        Row(
            "spool: receiver SIGKILLed with a full spool",
            result,
            f"spool forwarded {forwarded:.1f} s after restart",
            f"{on_disk} bytes spooled when killed",
        )
    )
    assert load.statuses() == {200: 300}
    assert on_disk > 0
    _assert_exactly_once("spool + SIGKILL", load, downstream)
    assert _spooled_bytes(spool) == 0
