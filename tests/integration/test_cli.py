"""The operator commands: ``postbacks replay`` after a fix, and start-up refusing bad
settings with one line naming the variable and exit status 2."""

from __future__ import annotations

import socket

import aio_pika
import pytest

from ingest.names import Names
from tests.support import (
    AMQP_URL,
    Subscriber,
    http_session,
    new_namespace,
    post,
    postback_xml,
    queue_count,
)

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
    command: str, variable: str, port_setting: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = {port_setting: str(port), "INGEST_HOST": "127.0.0.1"}
        done = await postbacks(new_namespace(), command, timeout=20, **settings)
    last = done.stderr.strip().splitlines()[-1]
    assert done.code == 2, done.stderr
    assert variable in last and f"127.0.0.1:{port}" in last, last
    assert "broker" not in last and "Traceback" not in done.stderr
