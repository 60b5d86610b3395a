"""Event history and backfill (contract section 9) against the real broker, through the
real ``postbacks`` command where a user would run it."""

from __future__ import annotations

import asyncio
import itertools
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiormq
import orjson
import pytest
from prometheus_client import generate_latest

from ingest import topology
from ingest.history import History, topic_matches
from ingest.names import Names
from tests.integration._helpers import metric, pipeline, postbacks
from tests.integration.test_operator_stats import management_answers
from tests.support import AMQP_URL, POSTBACKS, ROOT, env_for, http_session, post, postback_xml


def stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ONE_DAY = History("1D")


async def declare(namespace: str, history: History | None = ONE_DAY) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        await topology.declare(await connection.channel(), Names(namespace), history)


async def publish_events(namespace: str, keys: list[str], tag: str = "e") -> list[str]:
    """Events as a worker publishes them (body, message_id, timestamp, headers); their ids."""
    ids = []
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        events = await channel.get_exchange(Names(namespace).events)
        for n, key in enumerate(keys):
            event_id = f"{tag}-{n}"
            body = {"event_id": event_id, "routing_key": key, "received_at": stamp()}
            await events.publish(
                aio_pika.Message(
                    orjson.dumps(body),
                    content_type="application/json",
                    message_id=event_id,
                    timestamp=datetime.now(UTC),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers={"code": key.rsplit(".", 1)[-1].upper(), "origin": "MMS_MT"},
                ),
                routing_key=key,
            )
            ids.append(event_id)
    return ids


async def subscriber(namespace: str, name: str, *patterns: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        names = Names(namespace)
        await topology.subscribe(await connection.channel(), names, name, list(patterns))


async def drain(queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    out = []
    async with await aio_pika.connect(AMQP_URL) as connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            out.append(message)
    return out


async def queue_exists(queue: str) -> bool:
    async with await aio_pika.connect(AMQP_URL) as connection:
        try:
            await (await connection.channel()).declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


KEYS = [
    "mms_mt.delivery.delivered.n102",
    "mms_mt.delivery.failed.e101",
    "mms_mo.inbound.received.n401",
    "mms_mt.template.transcoded.n003",
]


async def test_backfill_delivers_exactly_the_matching_events_and_nothing_to_others(
    namespace: str,
) -> None:
    names = Names(namespace)
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with pipeline(namespace, history_max_age="1D") as running:
        await subscriber(namespace, "watcher", "#")  # sees the live events
        async with http_session() as session:
            codes = ["N102", "E101", "N101", "N003", "N102"]
            for n, code in enumerate(codes):
                status, _, _ = await post(session, running.postbacks, postback_xml(code, f"t-{n}"))
                assert status == 200
        for _ in range(100):
            if len(live := await drain(names.subscriber("watcher"))) == len(codes):
                break
            await asyncio.sleep(0.1)
        assert len(live) == len(codes)
    # A subscriber made afterwards, bound to deliveries only.
    await subscriber(namespace, "billing", "mms_mt.delivery.#")
    done = await postbacks(
        namespace, "backfill", "billing", "--since", since.isoformat(), HISTORY_MAX_AGE="1D"
    )
    assert done.code == 0, done.stderr
    assert "read 5 event(s)" in done.stdout and "delivered 4" in done.stdout
    got = await drain(names.subscriber("billing"))
    originals = {m.message_id: m for m in live}
    assert sorted(str(m.message_id) for m in got) == sorted(
        str(m.message_id) for m in live if str(m.routing_key).startswith("mms_mt.delivery.")
    )
    for message in got:
        assert message.routing_key == names.subscriber("billing")  # straight into its queue
        original = originals[message.message_id]
        assert message.body == original.body
        assert message.headers["x-backfill"] is True
        own = {k: v for k, v in message.headers.items() if not k.startswith("x-")}
        assert own == {k: v for k, v in original.headers.items() if not k.startswith("x-")}
        assert message.content_type == "application/json"
        assert message.timestamp == original.timestamp
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert "x-stream-offset" not in message.headers
    assert await drain(names.subscriber("watcher")) == []  # others see nothing
    assert await drain(names.unrouted) == []  # every event was routed (to the history)


async def test_until_and_explicit_patterns(namespace: str) -> None:
    await declare(namespace)
    await subscriber(namespace, "late", "nothing.at.all")
    since = datetime.now(UTC)
    first = await publish_events(namespace, KEYS * 2, "a")
    await asyncio.sleep(1.2)
    until = datetime.now(UTC)
    await asyncio.sleep(0.2)
    await publish_events(namespace, KEYS * 2, "b")
    done = await postbacks(
        namespace,
        "backfill",
        "late",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "#.n401",
        "mms_mt.*.failed.*",
        HISTORY_MAX_AGE="1D",
    )
    assert done.code == 0, done.stderr
    assert "read 8 event(s)" in done.stdout and "delivered 4" in done.stdout
    got = sorted(str(m.message_id) for m in await drain(Names(namespace).subscriber("late")))
    assert got == sorted(
        i for i, key in zip(first, KEYS * 2, strict=True) if "n401" in key or "failed" in key
    )


async def test_default_patterns_are_the_subscribers_bindings(namespace: str) -> None:
    if not await management_answers():
        pytest.skip("the management API does not answer")
    await declare(namespace)
    since = datetime.now(UTC)
    ids = await publish_events(namespace, KEYS, "c")
    await subscriber(namespace, "alerts", "#.failed.#", "#.n003")
    done = await postbacks(
        namespace, "backfill", "alerts", "--since", since.isoformat(), HISTORY_MAX_AGE="1D"
    )
    assert done.code == 0, done.stderr
    got = sorted(str(m.message_id) for m in await drain(Names(namespace).subscriber("alerts")))
    assert got == [ids[1], ids[3]]
    # Without the management API the PATTERNs are required.
    off = await postbacks(
        namespace, "backfill", "alerts", "--since", since.isoformat(), "--management-url", "off"
    )
    assert off.code == 1 and "PATTERN" in one_line(off.stderr)


async def test_topic_matching_agrees_with_the_broker(namespace: str) -> None:
    patterns = [
        "#",
        "*",
        "*.*",
        "a.#",
        "#.a",
        "a.*",
        "*.a",
        "a.#.b",
        "a.*.b",
        "#.a.#",
        "a.#.#.b",
        "#.*",
        "*.#",
        "a.*.#",
        "a",
        "a.b",
        "",
        "a.",
        ".a",
        "#.b.*",
    ]
    alphabet = ["a", "b", "c", ""]
    keys = sorted(
        {".".join(parts) for n in range(1, 5) for parts in itertools.product(alphabet, repeat=n)}
        | {""}
    )
    exchange_name = f"{namespace}.matching"
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queues = []
        for pattern in patterns:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange, routing_key=pattern)
            queues.append(queue)
        for key in keys:
            await exchange.publish(aio_pika.Message(key.encode()), routing_key=key)
        for pattern, queue in zip(patterns, queues, strict=True):
            routed = set()
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                routed.add(message.body.decode())
            mine = {key for key in keys if topic_matches(pattern, key)}
            assert mine == routed, (pattern, sorted(mine ^ routed))
        await exchange.delete()


async def test_unknown_subscriber_bad_time_and_no_history_are_one_line_exit_1(
    namespace: str,
) -> None:
    await declare(namespace, None)
    await subscriber(namespace, "billing", "#")
    absent = await postbacks(namespace, "backfill", "billing", "--since", "2026-01-01", "#")
    assert absent.code == 1 and "no history" in one_line(absent.stderr)
    assert not await queue_exists(Names(namespace).history)
    await declare(namespace)
    unknown = await postbacks(
        namespace, "backfill", "nobody", "--since", "2026-01-01", "#", HISTORY_MAX_AGE="1D"
    )
    assert unknown.code == 1 and "nobody" in one_line(unknown.stderr)
    for bad in ("yesterday", "2026-02-30", "soon"):
        done = await postbacks(
            namespace, "backfill", "billing", "--since", bad, "#", HISTORY_MAX_AGE="1D"
        )
        assert done.code == 1 and "--since" in one_line(done.stderr), bad
    done = await postbacks(
        namespace,
        "backfill",
        "billing",
        "--since",
        "2026-01-01",
        "--until",
        "x",
        "#",
        HISTORY_MAX_AGE="1D",
    )
    assert done.code == 1 and "--until" in one_line(done.stderr)


async def test_a_changed_retention_is_one_line_naming_the_variable_exit_2(namespace: str) -> None:
    done = await postbacks(namespace, "topology", HISTORY_MAX_AGE="1D")
    assert done.code == 0, done.stderr
    assert await queue_exists(Names(namespace).history)
    again = await postbacks(namespace, "topology", HISTORY_MAX_AGE="1D")
    assert again.code == 0  # idempotent
    age = await postbacks(namespace, "topology", HISTORY_MAX_AGE="2D")
    assert age.code == 2 and "HISTORY_MAX_AGE" in one_line(age.stderr)
    size = await postbacks(namespace, "topology", HISTORY_MAX_AGE="1D", HISTORY_MAX_BYTES="1000")
    assert size.code == 2 and "HISTORY_MAX_BYTES" in one_line(size.stderr)
    # A long-running process stops at start with the same line.
    work = await postbacks(
        namespace, "work", HISTORY_MAX_AGE="3D", WORKER_METRICS_PORT="0", timeout=30
    )
    assert work.code == 2 and "HISTORY_MAX_AGE" in work.stderr
    bad = await postbacks(namespace, "topology", HISTORY_MAX_AGE="7d")
    assert bad.code == 2 and "HISTORY_MAX_AGE" in one_line(bad.stderr)


async def test_without_history_nothing_changes(namespace: str) -> None:
    names = Names(namespace)
    async with pipeline(namespace) as running, http_session() as session:
        status, _, _ = await post(session, running.postbacks, postback_xml("N102", "t-u"))
        assert status == 200
        for _ in range(100):
            if got := await drain(names.unrouted):
                break
            await asyncio.sleep(0.1)
        scraped = generate_latest(running.worker.metrics.registry).decode()
    assert len(got) == 1  # no subscriber: kept in NS.unrouted as before
    assert not await queue_exists(names.history)
    for name in (APPENDED, "postbacks_history_max_bytes", "postbacks_history_max_age_seconds"):
        assert f"\n{name} 0.0\n" in scraped, name  # exported, at 0: the alert stays quiet


APPENDED = "postbacks_history_appended_bytes_total"


async def history_bodies(namespace: str, count: int, timeout: float = 30) -> list[bytes]:
    """The bodies in ``NS.history`` from its start, once it holds at least ``count``
    (and nothing more came for half a second)."""
    bodies: list[bytes] = []
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        stream = await channel.declare_queue(Names(namespace).history, passive=True)

        async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            bodies.append(message.body)
            await message.ack()

        await stream.consume(deliver, arguments={"x-stream-offset": "first"})
        async with asyncio.timeout(timeout):
            while len(bodies) < count:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    return bodies


async def test_a_worker_counts_the_bytes_it_appends_and_shows_the_limits(namespace: str) -> None:
    limits = {"history_max_age": "2D", "history_max_bytes": 3_000_000_000, "dlr_timeout": 1}
    async with pipeline(namespace, **limits) as running, http_session() as session:
        # Three lifecycles that end at once, two that wait for a receipt and time out.
        for n, code in enumerate(["N102", "E101", "N102", "N101", "N101"]):
            status, _, _ = await post(session, running.postbacks, postback_xml(code, f"h-{n}"))
            assert status == 200
        bodies = await history_bodies(namespace, 7)
        appended = sum(len(body) for body in bodies)
        for _ in range(50):  # counted right after the commit that appended them
            scraped = generate_latest(running.worker.metrics.registry).decode()
            if metric(scraped, APPENDED) >= appended:
                break
            await asyncio.sleep(0.1)
    codes = sorted(orjson.loads(body)["code"] for body in bodies)
    assert codes == ["E101", "N101", "N101", "N102", "N102", "TIMEOUT", "TIMEOUT"]
    assert metric(scraped, APPENDED) == appended
    assert metric(scraped, "postbacks_history_max_bytes") == 3_000_000_000
    assert metric(scraped, "postbacks_history_max_age_seconds") == 2 * 86400


async def test_tail_since_prints_history_then_live_without_gaps_or_duplicates(
    namespace: str,
) -> None:
    await declare(namespace)
    since = datetime.now(UTC)
    before = await publish_events(namespace, KEYS * 3, "old")
    process = await asyncio.create_subprocess_exec(
        *POSTBACKS,
        "tail",
        "--since",
        since.isoformat(),
        "mms_mt.#",
        env=env_for(namespace, HISTORY_MAX_AGE="1D"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[dict[str, Any]] = []

    async def read(count: int) -> None:
        assert process.stdout is not None
        while len(lines) < count:
            line = await asyncio.wait_for(process.stdout.readline(), 20)
            assert line, "tail ended"
            lines.append(orjson.loads(line))

    try:
        wanted_before = [
            i for i, k in zip(before, KEYS * 3, strict=True) if k.startswith("mms_mt.")
        ]
        # Events published while the history is being read, and after: all printed once.
        during = asyncio.create_task(publish_events(namespace, KEYS * 3, "mid"))
        await read(len(wanted_before))
        mid = await during
        await asyncio.sleep(2.0)
        after = await publish_events(namespace, KEYS, "new")
        wanted_mid = [i for i, k in zip(mid, KEYS * 3, strict=True) if k.startswith("mms_mt.")]
        wanted_after = [i for i, k in zip(after, KEYS, strict=True) if k.startswith("mms_mt.")]
        await read(len(wanted_before) + len(wanted_mid) + len(wanted_after))
        await asyncio.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 15)
    lines += [orjson.loads(line) for line in rest.splitlines() if line.strip()]
    printed = [line["event_id"] for line in lines]
    assert printed == wanted_before + wanted_mid + wanted_after
    assert process.returncode == 0
