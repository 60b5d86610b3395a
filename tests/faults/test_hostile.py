"""Hostile input, each alongside valid traffic that must still go through: every hostile
request gets a clear 4xx, a timeout, or a quarantine entry with its reason; no process dies;
no credential or postback body reaches the logs; peak memory is reported."""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from ingest import app as receiver_app
from tests.support import queue_count, take_all

from .kit import Cluster, Downstream, Load, Report, Row, tally

pytestmark = pytest.mark.faults

MIB = 1 << 20
MILLION_NUMBERS = b"[" + b"1," * 999_999 + b"1]"  # 2,000,001 bytes: just under the limit
MAX_BODY = len(MILLION_NUMBERS) + 99  # "2 MB"
FAR_OVER = 50 * MIB


def _billion_laughs() -> bytes:
    lines = ['<?xml version="1.0"?>', "<!DOCTYPE postback [", ' <!ENTITY lol0 "lol">']
    for level in range(1, 10):
        lines.append(f' <!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    lines += [
        "]>",
        "<postback><origin>MMS_MT</origin><code>N102</code>"
        "<tracking-id>&lol9;</tracking-id></postback>",
    ]
    return "\n".join(lines).encode()


QUARANTINED: dict[str, tuple[bytes, str]] = {
    "XML entity expansion (billion laughs)": (_billion_laughs(), "application/xml"),
    "XML external entity (file:///etc/passwd)": (
        b'<?xml version="1.0"?>\n<!DOCTYPE postback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"\n<postback><origin>MMS_MT</origin><code>N102</code>"
        b"<tracking-id>&xxe;</tracking-id></postback>",
        "application/xml",
    ),
    "XML nested 100,000 deep": (
        b"<postback><origin>MMS_MT</origin><code>N102</code><tracking-id>hostile-deep"
        b"</tracking-id>" + b"<x>" * 100_000 + b"</x>" * 100_000 + b"</postback>",
        "application/xml",
    ),
    "JSON nested 100,000 deep": (
        b'{"origin":"MMS_MT","code":"N102","tracking-id":"hostile-deep-json","x":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        "application/json",
    ),
    "invalid UTF-8 (XML, charset=utf-8)": (
        b"<postback><origin>MMS_MT</origin><code>N102</code>"
        b"<tracking-id>hostile-utf8-\xff\xfe\xc3</tracking-id></postback>",
        "application/xml; charset=utf-8",
    ),
    "invalid UTF-8 (JSON)": (
        b'{"origin":"MMS_MT","code":"N102","tracking-id":"hostile-utf8-json-\xff\xc0"}',
        "application/json",
    ),
    "JSON array of a million numbers, just under the limit": (MILLION_NUMBERS, "application/json"),
}


@dataclass
class Answer:
    status: int | None  # None: no status line, the server closed the connection
    seconds: float
    detail: str = ""


async def _exchange(
    port: int, head: bytes, body: AsyncIterator[bytes] | None, timeout: float
) -> Answer:
    """Send ``head`` then ``body`` (as fast as the server takes it) while reading the answer."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def pump() -> None:
        try:
            writer.write(head)
            await writer.drain()
            if body is not None:
                async for piece in body:
                    writer.write(piece)
                    await writer.drain()
        except OSError:
            pass

    sending = asyncio.create_task(pump())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return Answer(None, time.monotonic() - started, "no answer, connection still open")
    except OSError as exc:
        return Answer(None, time.monotonic() - started, f"closed: {type(exc).__name__}")
    finally:
        sending.cancel()
        writer.close()
    seconds = time.monotonic() - started
    if not line:
        return Answer(None, seconds, "closed by the server without an answer")
    return Answer(int(line.split()[1]), seconds, line.decode().strip())


def _head(auth: str, extra: str) -> bytes:
    return (
        f"POST /postbacks HTTP/1.1\r\nHost: faults\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/xml\r\n{extra}\r\n"
    ).encode()


async def _steady(total: int, chunked: bool) -> AsyncIterator[bytes]:
    piece = b"<" + b"a" * (65536 - 1)
    for _ in range(total // len(piece)):
        yield b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


async def _endless_chunks() -> AsyncIterator[bytes]:
    yield b"1\r\n<\r\n"
    while True:
        await asyncio.sleep(0.5)
        yield b"1\r\na\r\n"


async def _one_byte_a_second(data: bytes) -> AsyncIterator[bytes]:
    for index in range(len(data)):
        yield data[index : index + 1]
        await asyncio.sleep(1.0)


async def _held_connections(
    port: int, count: int
) -> tuple[list[asyncio.StreamReader], list[asyncio.StreamWriter]]:
    """``count`` connections opened at once, sending nothing."""
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count)),
        return_exceptions=True,
    )
    readers, writers = [], []
    for item in opened:
        if isinstance(item, BaseException):
            raise AssertionError(f"could not open a connection: {item!r}")
        readers.append(item[0])
        writers.append(item[1])
    return readers, writers


async def _closed_by_server(readers: list[asyncio.StreamReader], timeout: float) -> int:
    async def one(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), timeout) == b""
        except TimeoutError:
            return False
        except OSError:
            return True

    return sum(await asyncio.gather(*(one(reader) for reader in readers)))


def test_basic_auth_comparison_is_constant_time() -> None:
    """Code-level check: credentials are compared with ``hmac.compare_digest`` only."""
    source = inspect.getsource(receiver_app._Gate.authorized)
    assert source.count("hmac.compare_digest(") == 2
    for line in source.splitlines():
        if "==" in line or "!=" in line:  # no plain comparison touches a credential
            assert not any(word in line for word in ("user", "password", "expected")), line
    assert "import hmac" in inspect.getsource(receiver_app)


async def test_hostile_input_alongside_valid_traffic(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    auth = "Basic " + base64.b64encode(f"faults:{secret}".encode()).decode()
    # Credentials of every kind, to look for in the logs afterwards.
    amqp_password, redis_password = f"amqp-{uuid.uuid4().hex}", f"redis-{uuid.uuid4().hex}"
    amqp = cluster.rabbit.add_user("faults", amqp_password)
    redis = cluster.redis.add_user("faults", redis_password)
    receiver = await cluster.receiver(
        INGEST_MAX_BODY=MAX_BODY, INGEST_BASIC_AUTH=f"faults:{secret}", AMQP_URL=amqp
    )
    workers = [
        await cluster.worker(AMQP_URL=amqp, REDIS_URL=redis),
        await cluster.worker(AMQP_URL=amqp, REDIS_URL=redis),
    ]
    prefix = f"valid{uuid.uuid4().hex[:6]}"
    valid = Load(
        receiver.postbacks, prefix, concurrency=8, rate=150, headers={"Authorization": auth}
    )
    background = asyncio.create_task(valid.run())
    await valid.wait_answered(50)

    async def post_quarantined() -> dict[str, int]:
        answers = {}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for name, (body, content_type) in QUARANTINED.items():
                headers = {"Authorization": auth, "Content-Type": content_type}
                async with session.post(receiver.postbacks, data=body, headers=headers) as got:
                    await got.read()
                    answers[name] = got.status
            wrong = "Basic " + base64.b64encode(b"faults:wrong").decode()
            headers = {"Authorization": wrong, "Content-Type": "application/xml"}
            async with session.post(receiver.postbacks, data=b"<a/>", headers=headers) as got:
                answers["wrong password"] = got.status
                answers["wrong password has WWW-Authenticate"] = int(
                    "WWW-Authenticate" in got.headers
                )
        return answers

    async def while_held() -> tuple[int, int, int, float]:
        readers, writers = await _held_connections(receiver.port, 2000)
        during = Load(
            receiver.postbacks, f"{prefix}-held", concurrency=16, headers={"Authorization": auth}
        )
        started = time.monotonic()
        await during.run(300)
        took = time.monotonic() - started
        closed = await _closed_by_server(readers, 30)
        for writer in writers:
            writer.close()
        valid.shots.extend(during.shots)
        return len(readers), during.statuses()[200], closed, took

    started = time.monotonic()
    port = receiver.port
    exchanges = {
        "over, Content-Length": _exchange(
            port, _head(auth, f"Content-Length: {FAR_OVER}\r\n"), _steady(FAR_OVER, False), 30
        ),
        "over, chunked": _exchange(
            port, _head(auth, "Transfer-Encoding: chunked\r\n"), _steady(FAR_OVER, True), 30
        ),
        "never ends": _exchange(
            port, _head(auth, "Transfer-Encoding: chunked\r\n"), _endless_chunks(), 30
        ),
        "slow body": _exchange(
            port, _head(auth, "Content-Length: 100\r\n"), _one_byte_a_second(b"<" * 100), 30
        ),
        "slow head": _exchange(
            port, b"", _one_byte_a_second(_head(auth, "Content-Length: 4\r\n")), 40
        ),
    }
    raw_tasks = {name: asyncio.create_task(coro) for name, coro in exchanges.items()}
    quarantined_task = asyncio.create_task(post_quarantined())
    held_task = asyncio.create_task(while_held())
    quarantined_answers = await quarantined_task
    held_count, held_ok, held_closed, held_took = await held_task
    raw = {name: await task for name, task in raw_tasks.items()}
    over_with_length, over_chunked = raw["over, Content-Length"], raw["over, chunked"]
    never_ends, slow_body, slow_head = raw["never ends"], raw["slow body"], raw["slow head"]
    hostile_seconds = time.monotonic() - started

    deadline = time.monotonic() + 60
    while await queue_count(cluster.names.quarantine, cluster.rabbit.url) < len(QUARANTINED):
        assert time.monotonic() < deadline, "hostile postbacks did not all reach quarantine"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    valid.stop()
    await background
    await downstream.collect(valid.accepted(), timeout=60)
    quarantine = await take_all(cluster.names.quarantine, cluster.rabbit.url)
    reasons = {
        name: [str((m.headers or {}).get("x-error", "")) for m in quarantine if m.body == body]
        for name, (body, _) in QUARANTINED.items()
    }
    alive = {service.proc.pid: service.alive() for service in (receiver, *workers)}
    rss_receiver = receiver.peak_rss_kib()
    rss_worker = max(worker.peak_rss_kib() for worker in workers)
    report.note_rss("receiver (hostile-input test)", rss_receiver)
    report.note_rss("worker (hostile-input test, larger of two)", rss_worker)
    receiver.proc.terminate()
    for worker in workers:
        worker.proc.terminate()
    logs = cluster.logs()

    outcomes = [
        *(
            (
                name,
                f"{quarantined_answers[name]}, then quarantined",
                "x-error: " + " / ".join(f"“{r}”" for r in reasons[name]),
            )
            for name in QUARANTINED
        ),
        (
            f"body far over the limit ({FAR_OVER // MIB} MiB), with Content-Length",
            str(over_with_length.status),
            f"after {over_with_length.seconds:.2f} s",
        ),
        (
            f"body far over the limit ({FAR_OVER // MIB} MiB), chunked, no Content-Length",
            str(over_chunked.status),
            f"after {over_chunked.seconds:.2f} s",
        ),
        (
            "chunked body that never ends",
            str(never_ends.status),
            f"after {never_ends.seconds:.1f} s",
        ),
        (
            "one byte a second (body)",
            str(slow_body.status),
            f"after {slow_body.seconds:.1f} s",
        ),
        (
            "one byte a second (request head)",
            "connection closed" if slow_head.status is None else str(slow_head.status),
            f"after {slow_head.seconds:.1f} s ({slow_head.detail})",
        ),
        (
            f"{held_count} connections opened at once and held",
            f"{held_closed} closed by the server",
            f"meanwhile {held_ok}/300 valid postbacks answered 200 in {held_took:.1f} s",
        ),
        (
            "wrong basic-auth password",
            str(quarantined_answers["wrong password"]),
            "with WWW-Authenticate"
            if quarantined_answers["wrong password has WWW-Authenticate"]
            else "",
        ),
    ]
    result = tally(valid.shots, downstream)
    report.add(
        Row(
            "hostile input (valid traffic alongside)",
            result,
            "no restart needed",
            f"hostile phase {hostile_seconds:.0f} s; peak RSS receiver "
            f"{rss_receiver / 1024:.0f} MiB, worker {rss_worker / 1024:.0f} MiB",
        )
    )
    report.note(
        "\n".join(
            [
                "## Hostile input",
                "",
                "| input | answer | detail |",
                "|---|---|---|",
                *(f"| {a} | {b} | {c.replace('|', '/')} |" for a, b, c in outcomes),
            ]
        )
    )

    assert all(alive.values()), alive
    for name in QUARANTINED:
        assert quarantined_answers[name] == 200, (name, quarantined_answers[name])
        assert len(reasons[name]) == 1 and reasons[name][0], (name, reasons[name])
    assert quarantined_answers["wrong password"] == 401
    assert quarantined_answers["wrong password has WWW-Authenticate"] == 1
    assert over_with_length.status == 413, over_with_length
    assert over_chunked.status == 413, over_chunked
    assert never_ends.status == 408, never_ends
    assert slow_body.status == 408, slow_body
    assert slow_head.status is None and slow_head.seconds < 35, slow_head
    assert held_count == 2000 and held_ok == 300
    assert held_closed == held_count, "idle connections are held open for ever"
    # Valid traffic went through, exactly once; nothing hostile became an event.
    assert valid.statuses() == {200: len(valid.shots)}
    assert result.lost == 0 and result.duplicates == 0, result
    assert downstream.trackings() <= valid.accepted()
    for message in quarantine:
        assert b"root:x:0:0" not in message.body
        assert "root:x:0:0" not in str(message.headers)
    # Memory: nothing expanded, nothing buffered without bound.
    assert rss_receiver < 512 * 1024, rss_receiver
    assert rss_worker < 1024 * 1024, rss_worker
    # Logs at the default level: no credential, no postback body.
    for secret_text in (secret, auth.split()[1], amqp_password, redis_password):
        assert secret_text not in logs
    for marker in ("lol9", "etc/passwd", "hostile-deep", "hostile-utf8", "1,1,1,1", prefix):
        assert marker not in logs, f"{marker!r} found in the logs"
