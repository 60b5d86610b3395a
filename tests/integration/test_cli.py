"""The operator commands: ``postbacks replay`` after a fix, and start-up refusing bad
settings with one line naming the variable and exit status 2."""

from __future__ import annotations

import asyncio
import socket

import aio_pika
import orjson
import pytest

from ingest.names import Names
from tests.support import (
    AMQP_URL,
    Stack,
    Subscriber,
    free_port,
    http_session,
    new_namespace,
    post,
    postback_xml,
    queue_count,
    wait_http,
)
from worker.cli import _parser

from ._helpers import intake_records, pipeline, postbacks, publish_raw, quarantined, wait_count

BROKEN = b"<postback><origin>MMS_MT</origin><code>N101</code><to>1</to>"


async def test_replay_moves_quarantined_postbacks_back_to_intake(namespace: str) -> None:
    names = Names(namespace)
    async with pipeline(namespace) as running, http_session() as session:
        assert (await post(session, running.postbacks, BROKEN))[0] == 200
        assert (await post(session, running.postbacks, BROKEN + b"  "))[0] == 200
        assert await wait_count(namespace, names.quarantine, 2) == 2
    # No worker runs now: replay puts both back, byte for byte, and says so.
    done = await postbacks(namespace, "replay")
    assert done.code == 0, done.stderr
    assert "moved 2" in done.stdout
    assert await queue_count(names.quarantine) == 0
    assert sorted(record.body for record in await intake_records(namespace)) == sorted(
        [BROKEN, BROKEN + b"  "]
    )
    nothing = await postbacks(namespace, "replay")
    assert nothing.code == 0, nothing.stderr
    assert "moved 0" in nothing.stdout


async def test_replayed_postback_that_is_now_accepted_becomes_an_event(namespace: str) -> None:
    """As after a fix: a quarantined postback the worker now understands comes out as an
    event; one it still rejects goes back to quarantine, nothing is lost."""
    names = Names(namespace)
    good = postback_xml("N102", "replayed", status="Message Sent/Delivered")
    async with Subscriber(namespace, "all", ["#"]) as subscriber:
        async with pipeline(namespace):
            pass  # declares the topology
        await publish_raw(
            names.quarantine,
            good,
            "application/xml",
            {"x-error": "not a postback: quarantined by an older version", "x-format": "xml"},
        )
        await publish_raw(names.quarantine, BROKEN, "application/xml", {"x-error": "broken"})
        done = await postbacks(namespace, "replay")
        assert done.code == 0, done.stderr
        assert "moved 2" in done.stdout
        async with pipeline(namespace):
            received = await subscriber.take(1, timeout=15, settle=0.3)
            back = await quarantined(namespace, 1)
    assert [item.event["tracking_id"] for item in received] == ["replayed"]
    assert received[0].event["status"] == "delivered"
    assert [message.body for message in back] == [BROKEN]
    assert await queue_count(names.intake) == 0


async def test_topology_declares_everything_and_is_idempotent(namespace: str) -> None:
    names = Names(namespace)
    first = await postbacks(namespace, "topology")
    await publish_raw(names.quarantine, b"<kept/>", "application/xml", {"x-error": "kept"})
    again = await postbacks(namespace, "topology")
    assert (first.code, again.code) == (0, 0), first.stderr + again.stderr
    for queue in (names.intake, names.quarantine, names.unrouted):
        await queue_count(queue)  # raises when the queue does not exist
    assert await queue_count(names.quarantine) == 1  # declaring again kept it
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        events = await channel.get_exchange(names.events)  # passive: raises when absent
        await events.publish(aio_pika.Message(b"{}"), routing_key="mms_mt.x.y.z")
    assert await wait_count(namespace, names.unrouted, 1) == 1  # the alternate exchange


@pytest.mark.parametrize(
    ("command", "variable", "env", "flags"),
    [
        ("receive", "INGEST_PORT", {"INGEST_PORT": "70000"}, []),
        ("receive", "AMQP_URL", {"AMQP_URL": "nonsense"}, []),
        ("receive", "INGEST_ALLOW_FROM", {"INGEST_ALLOW_FROM": "10.0.0.0/99"}, []),
        ("receive", "INGEST_PORT", {}, ["--port", "-1"]),
        ("work", "WORKER_METRICS_PORT", {"WORKER_METRICS_PORT": "99999"}, []),
        ("run", "INGEST_ALLOW_FROM", {"INGEST_ALLOW_FROM": "10.0.0.0/8,not-a-cidr"}, []),
        ("receive", "INGEST_HOST", {"INGEST_HOST": "999.1.1.1"}, []),
        ("receive", "INGEST_HOST", {}, ["--host", "no such host"]),
        ("receive", "INGEST_SPOOL_DIR", {"INGEST_SPOOL_DIR": "/proc/no-such-dir/spool"}, []),
        ("run", "INGEST_SPOOL_DIR", {}, ["--spool-dir", "/proc/no-such-dir/spool"]),
        ("work", "REDIS_URL", {"REDIS_URL": "redis://127.0.0.1:6379/?socket_timeout=abc"}, []),
        ("run", "REDIS_URL", {"REDIS_URL": "redis://127.0.0.1:6379/abc"}, []),
        ("work", "REDIS_URL", {}, ["--redis-url", "unix://"]),
    ],
)
async def test_bad_setting_stops_start_up_with_one_line_and_exit_2(
    command: str, variable: str, env: dict[str, str], flags: list[str]
) -> None:
    done = await postbacks(new_namespace(), command, *flags, timeout=15, **env)
    assert done.code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "variable", "port_setting"),
    [
        ("receive", "INGEST_PORT", "INGEST_PORT"),
        ("work", "WORKER_METRICS_PORT", "WORKER_METRICS_PORT"),
    ],
)
async def test_a_port_in_use_is_named_not_blamed_on_the_broker(
    command: str, variable: str, port_setting: str, namespace: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = {port_setting: str(port), "INGEST_HOST": "127.0.0.1"}
        done = await postbacks(namespace, command, timeout=20, **settings)
    last = done.stderr.strip().splitlines()[-1]
    assert done.code == 2, done.stderr
    assert variable in last and f"127.0.0.1:{port}" in last, last
    assert "broker" not in last and "Traceback" not in done.stderr


def refusals(stderr: str) -> list[str]:
    """The lines of ``stderr`` that tell of a failure: plain text (``postbacks: error:
    ...``) or a log record at level error or worse; the info records are left out."""
    found = []
    for line in stderr.strip().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            found.append(line)
            continue
        if not isinstance(record, dict) or record.get("level") in ("error", "critical"):
            found.append(line)
    return found


async def test_run_with_its_port_in_use_says_so_once_and_exits_2(namespace: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await postbacks(
            namespace,
            "run",
            timeout=30,
            INGEST_HOST="127.0.0.1",
            INGEST_PORT=port,
            WORKER_METRICS_PORT=free_port(),
        )
    assert done.code == 2, done.stderr
    lines = refusals(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "INGEST_PORT" in lines[0] and f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "61", "1e9", "soon"])
async def test_stats_refuses_an_interval_outside_0_to_60_seconds(value: str) -> None:
    done = await postbacks(new_namespace(), "stats", "--interval", value, timeout=15)
    assert done.code == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--interval" in lines[0]


@pytest.mark.parametrize(
    "patterns",
    [
        ["x" * 256],
        ["mms_mt.delivery.#", "é" * 128],  # 128 characters, 256 bytes of UTF-8
        ["#.n102", ""],
    ],
)
async def test_subscribe_checks_every_pattern_before_declaring_anything(
    namespace: str, patterns: list[str]
) -> None:
    done = await postbacks(namespace, "subscribe", "billing", *patterns, timeout=15)
    assert done.code == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "PATTERN" in lines[0], done.stderr
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await queue_count(Names(namespace).subscriber("billing"))


async def test_subscribe_accepts_a_pattern_of_255_bytes(namespace: str) -> None:
    pattern = "a." * 126 + "#.x"  # 255 bytes
    done = await postbacks(namespace, "subscribe", "billing", pattern, timeout=15)
    assert done.code == 0, done.stderr
    assert await queue_count(Names(namespace).subscriber("billing")) == 0


def test_replay_takes_match_and_limit() -> None:
    args = _parser().parse_args(["replay", "--match", "not a postback", "--limit", "3"])
    assert (args.match, args.limit, args.dry_run) == ("not a postback", 3, False)
    plain = _parser().parse_args(["replay", "--dry-run"])
    assert (plain.match, plain.limit, plain.dry_run) == (None, None, True)


@pytest.mark.parametrize("limit", ["0", "-2", "ten", "1.5"])
def test_replay_refuses_a_limit_below_1(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _parser().parse_args(["replay", "--limit", limit])
    assert caught.value.code == 2
    assert "--limit" in capsys.readouterr().err


async def test_receive_on_the_ipv6_wildcard_logs_a_url_that_answers(
    namespace: str, processes: Stack
) -> None:
    port = free_port()
    proc = processes.start("receive", INGEST_HOST="::", INGEST_PORT=port)
    url = f"http://[::1]:{port}/postbacks"
    await wait_http(f"http://[::1]:{port}/readyz", 200, timeout=30)
    logged = [
        orjson.loads(line)
        for line in proc.output().splitlines()
        if line.startswith("{") and "receiver listening" in line
    ]
    assert [record["url"] for record in logged] == [url]
    async with http_session() as session:
        assert (await post(session, url, postback_xml("N102", "v6")))[0] == 200
    # A method token the HTTP parser does not know is 405, as any other method.
    reader, writer = await asyncio.open_connection("::1", port)
    writer.write(b"FOO /postbacks HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.split(b" ", 2)[1] == b"405", status
    assert "Traceback" not in proc.output()
