"""``postbacks stats`` against the real broker: depths, consumers, rates (from the
management API when it answers, else the fallback says so) and the quarantine size."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass

import aio_pika
import aiohttp

from ingest.names import Names
from tests.support import AMQP_URL, POSTBACKS, ROOT, Stack, env_for, free_port, wait_http

MANAGEMENT = "http://127.0.0.1:15672"
GUEST = "Basic " + base64.b64encode(b"guest:guest").decode()


async def cli(namespace: str, *args: str, timeout: float = 60, **env: str) -> tuple[int, str, str]:
    """Run ``postbacks ARGS`` as a user does; (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *POSTBACKS,
        *args,
        env=env_for(namespace, **env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Row:
    queue: str
    role: str
    ready: str
    unacked: str
    consumers: str
    in_rate: str
    out_rate: str
    net_rate: str
    leader: str = "-"  # the node of the queue's leader, when the management API tells


def table(output: str) -> dict[str, Row]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["queue", "role"])
    rows: dict[str, Row] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        assert len(cells) in (8, 9), line
        rows[cells[0]] = Row(*cells)
    return rows


async def publish(queue: str, count: int, **headers: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        for n in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(f"<broken {n}".encode(), headers=dict(headers)),
                routing_key=queue,
            )


async def management_answers() -> bool:
    try:
        async with (
            aiohttp.ClientSession(headers={"Authorization": GUEST}) as session,
            session.get(f"{MANAGEMENT}/api/overview", timeout=aiohttp.ClientTimeout(3)) as r,
        ):
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def delete_queue(name: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(name)


async def test_stats_without_management_api_shows_depths_consumers_and_quarantine(
    namespace: str, processes: Stack
) -> None:
    names = Names(namespace)
    assert (await cli(namespace, "topology"))[0] == 0
    await publish(names.quarantine, 3, **{"x-error": "not well-formed XML"})
    port = free_port()
    processes.start("work", INGEST_HOST="127.0.0.1", WORKER_METRICS_PORT=port)
    await wait_http(f"http://127.0.0.1:{port}/readyz")

    code, out, err = await cli(namespace, "stats", "--management-url", "off", "--interval", "0.5")
    assert code == 0, err
    rows = table(out)
    assert list(rows) == [
        names.intake,
        names.quarantine,
        names.unrouted,
        names.timers,
        names.waiting(259200),  # the receipt timers of the default DLR_TIMEOUT
    ]
    assert (rows[names.intake].ready, rows[names.intake].consumers) == ("0", "1")
    assert (rows[names.quarantine].ready, rows[names.quarantine].consumers) == ("3", "0")
    assert rows[names.unrouted].ready == "0"
    for row in rows.values():  # rates the fallback cannot know are shown as unknown
        assert (row.unacked, row.in_rate, row.out_rate) == ("-", "-", "-")
        assert float(row.net_rate) == 0.0
    assert "management API not asked" in out
    assert "quarantine: 3 message(s) held" in out
    assert "postbacks replay --dry-run" in out


async def test_stats_says_when_the_management_api_is_unreachable(namespace: str) -> None:
    names = Names(namespace)
    assert (await cli(namespace, "topology"))[0] == 0
    closed = f"http://127.0.0.1:{free_port()}/"
    code, out, err = await cli(namespace, "stats", "--management-url", closed, "--interval", "0")
    assert code == 0, err
    assert f"management API not reachable at http://guest:***@127.0.0.1:{closed[17:-1]}/" in out
    assert "rabbitmq-plugins enable rabbitmq_management" in out
    assert "guest:guest" not in out
    rows = table(out)
    assert rows[names.intake].net_rate == "-"  # one sample only
    assert rows[names.intake].consumers == "0"
    assert "intake: no worker is consuming" in out
    assert "quarantine: empty" in out


async def test_stats_net_rate_follows_a_growing_intake(namespace: str) -> None:
    names = Names(namespace)
    assert (await cli(namespace, "topology"))[0] == 0
    running = asyncio.create_task(
        cli(namespace, "stats", "--management-url", "off", "--interval", "5")
    )
    await asyncio.sleep(2.5)  # after the first sample (at start), well before the second
    await publish(names.intake, 30)
    code, out, err = await running
    assert code == 0, err
    row = table(out)[names.intake]
    assert row.ready == "30"
    assert 0 < float(row.net_rate) <= 30 / 2.5


async def test_stats_with_the_broker_default_management_api(namespace: str) -> None:
    """Default: the management API at the AMQP host, port 15672. When this broker has the
    plugin (the operating guide says to enable it), rates and subscriber queues come from
    it; when not, the table says it fell back."""
    names = Names(namespace)
    subscriber = names.subscriber("billing")
    try:
        code, _, err = await cli(namespace, "subscribe", "billing", "#.failed.#")
        assert code == 0, err
        await publish(names.quarantine, 2, **{"x-error": "not a postback"})
        code, out, err = await cli(namespace, "stats", "--interval", "0.2")
        assert code == 0, err
        rows = table(out)
        assert rows[names.quarantine].ready == "2"
        if await management_answers():
            assert "in/s, out/s from the RabbitMQ management API" in out
            assert rows[subscriber].role == "subscriber"
            assert rows[subscriber].consumers == "0"
            for row in rows.values():
                if row.ready == "absent":  # timer queues: declared by the first worker
                    assert row.role.startswith("timers"), row
                    continue
                assert row.unacked.isdigit()
                float(row.in_rate), float(row.out_rate), float(row.net_rate)
            assert f"events exchange {names.events}: in" in out
            assert rows[names.intake].leader == "rabbit@localhost"
        else:
            assert "management API not reachable at http://guest:***@127.0.0.1:15672/" in out
            assert subscriber not in rows
    finally:
        await delete_queue(subscriber)


async def test_stats_on_an_unreachable_broker_fails_with_one_line(namespace: str) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    code, out, err = await cli(namespace, "stats", AMQP_URL=closed)
    assert code == 1
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("postbacks: error: AMQP_URL amqp://guest:***@127.0.0.1:")
