"""``postbacks replay``: ``--dry-run`` lists each quarantined message with its reason (the
worker's ``x-error``, or the broker's dead-letter reason) and moves nothing; the real run
shows progress and moves every message back to the intake once."""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid

import aio_pika

from ingest import envelope
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.names import DELIVERY_LIMIT, Names
from tests.integration.test_operator_stats import cli
from tests.support import (
    AMQP_URL,
    Stack,
    Subscriber,
    free_port,
    http_session,
    post,
    postback_xml,
    queue_count,
    wait_http,
)
from worker.quarantine import LISTING_HEADER
from worker.tools import Progress

BROKEN = b"<postback><origin>MMS_MT</origin><code>N101</code>"
NOT_A_POSTBACK = b'{"hello": "world"}'


async def wait_count(queue: str, count: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = await queue_count(queue)
        if seen == count:
            break
        await asyncio.sleep(0.1)
    return seen


async def dead_letter_through_delivery_limit(names: Names, body: bytes) -> str:
    """Put a good postback in the intake and have the broker dead-letter it, as it does
    with a message no worker manages to finish: deliver and return it past the limit."""
    postback_id = uuid.uuid4().hex
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(
                envelope.pack([Record(postback_id, received_at_now(), "xml", None, body)]),
                content_type=envelope.CONTENT_TYPE,
                message_id=postback_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"x-postbacks": 1},
            ),
            routing_key=names.intake,
        )
        intake = await channel.declare_queue(names.intake, passive=True)
        for _ in range(DELIVERY_LIMIT + 5):
            message = await intake.get(no_ack=False, fail=False)
            if message is None:
                break
            await message.nack(requeue=True)
    assert await wait_count(names.quarantine, 3) == 3
    return postback_id


async def test_dry_run_lists_reasons_moves_nothing_then_replay_moves_all(
    namespace: str, processes: Stack
) -> None:
    names = Names(namespace)
    http, metrics = free_port(), free_port()
    receiver = processes.start("receive", INGEST_HOST="127.0.0.1", INGEST_PORT=http)
    worker = processes.start("work", INGEST_HOST="127.0.0.1", WORKER_METRICS_PORT=metrics)
    await wait_http(f"http://127.0.0.1:{http}/readyz")
    await wait_http(f"http://127.0.0.1:{metrics}/readyz")
    async with http_session() as session:
        for body, kind in ((BROKEN, "application/xml"), (NOT_A_POSTBACK, "application/json")):
            answer = await post(session, f"http://127.0.0.1:{http}/postbacks", body, kind)
            assert answer[0] == 200
    assert await wait_count(names.quarantine, 2) == 2
    assert worker.terminate() == 0
    good = postback_xml("N102", "dead-lettered", status="Delivered")
    dead_id = await dead_letter_through_delivery_limit(names, good)

    code, out, err = await cli(namespace, "replay", "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == LISTING_HEADER
    assert lines[-1] == "would move 3 postback message(s) from quarantine to intake"
    listed = lines[1:-1]
    assert [line.split()[0] for line in listed] == ["1", "2", "3"]
    reasons = {line.split()[3]: line for line in listed}
    dead = reasons[dead_id]
    assert re.search(rf"dead-lettered by the broker from {re.escape(names.intake)}: \S+", dead)
    worker_said = [line for key, line in reasons.items() if key != dead_id]
    assert len(worker_said) == 2
    for line in worker_said:
        assert "unknown" not in line and "dead-lettered" not in line
        assert re.match(r"\s*\d\s+1\s+\d{4}-\d\d-\d\dT", line)  # one postback, received_at
    assert any("not a postback" in line for line in worker_said), out
    # ... and nothing moved.
    assert await queue_count(names.quarantine) == 3
    assert await queue_count(names.intake) == 0

    code, out, err = await cli(namespace, "replay")
    assert code == 0, err
    assert out.strip() == "moved 3 postback message(s) from quarantine to intake"
    assert "replay [" in err and "3/3 100%" in err
    assert await queue_count(names.quarantine) == 0
    assert await queue_count(names.intake) == 3

    # After the "fix": the good postback comes out as an event, the others return.
    async with Subscriber(namespace, "replayed", ["#"]) as subscriber:
        processes.start("work", INGEST_HOST="127.0.0.1", WORKER_METRICS_PORT=free_port())
        received = await subscriber.take(1, timeout=20, settle=0.5)
    assert [r.event["tracking_id"] for r in received] == ["dead-lettered"]
    assert await wait_count(names.quarantine, 2) == 2
    del receiver


async def test_replay_of_many_shows_progress_and_moves_each_once(namespace: str) -> None:
    names = Names(namespace)
    assert (await cli(namespace, "topology"))[0] == 0
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        for n in range(250):
            await channel.default_exchange.publish(
                aio_pika.Message(
                    f"<broken {n}".encode(),
                    content_type="application/xml",
                    headers={"x-error": f"broken {n}", "x-format": "xml"},
                ),
                routing_key=names.quarantine,
            )
    code, out, err = await cli(namespace, "replay", "--dry-run")
    assert code == 0, err
    assert len(out.splitlines()) == 1 + 250 + 1
    assert "broken 249" in out

    code, out, err = await cli(namespace, "replay")
    assert code == 0, err
    assert "moved 250 " in out
    progress = [line for line in err.splitlines() if line.startswith("replay [")]
    # Not a terminal: a line every tenth of the way at most, and the final one.
    assert 2 <= len(progress) <= 11
    counts = []
    for line in progress:
        found = re.search(r"\] (\d+)/250 ", line)
        assert found is not None, line
        counts.append(int(found[1]))
    assert counts == sorted(set(counts)) and counts[0] >= 25 and counts[-1] == 250
    assert progress[-1].startswith("replay [" + "#" * 30 + "] 250/250 100%")
    assert " msg/s" in progress[-1] and " in " in progress[-1]
    assert await queue_count(names.intake) == 250
    assert await queue_count(names.quarantine) == 0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    out = Terminal()
    bar = Progress(out, 1000)
    bar.update(100)
    bar.drawn = 0.0  # as if 0.1 s had passed
    bar.update(500)
    bar.update(600)  # too soon after the last redraw: skipped
    bar.finish(1000)
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 3
    assert "100/1000  10%" in frames[0] and "ETA" in frames[0]
    assert "500/1000  50%" in frames[1]
    assert frames[2].startswith("replay [" + "#" * 30 + "] 1000/1000 100%")
    assert text.endswith("\x1b[K\n") and text.count("\n") == 1


def test_progress_lines_in_a_log_file() -> None:
    out = io.StringIO()
    bar = Progress(out, 40)
    for done in range(1, 41):
        bar.update(done)
    bar.finish(40)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ... 90 %, then the final line
    assert "4/40  10%" in lines[0]
    assert lines[-1].startswith("replay [" + "#" * 30 + "] 40/40 100%")
    assert "\r" not in out.getvalue()
