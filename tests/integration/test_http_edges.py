"""Requests at the edge of HTTP, sent byte by byte the way a broken or hostile client sends
them: a body that does not decode as its ``Content-Encoding``, a client that goes away
mid-body, ``Expect: 100-continue``, a method token the parser does not know. Each gets a
short answer (or none, when no one is left to read it), at most one log line, never a
traceback, and nothing reaches the intake queue."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ingest.app import ReceiverRunner, create_app
from ingest.names import Names
from ingest.settings import Settings
from tests.support import http_session, post, postback_xml, queue_count, wait_http

from ._helpers import settings_for

GOOD = postback_xml("N102", "edge-1")


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[int]:
    """The receiver served the way ``postbacks receive`` serves it; yields its port."""
    runner = ReceiverRunner(create_app(settings), access_log=None, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        await wait_http(f"http://127.0.0.1:{port}/readyz", 200, timeout=15)
        yield port
    finally:
        await runner.cleanup()


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: receiver\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode() + b"\r\n" + body


async def exchange(port: int, data: bytes, wait: float = 3.0) -> bytes:
    """Send ``data`` on a fresh connection; everything answered until the server closes
    the connection or ``wait`` seconds pass without a byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), wait):
            answer += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return answer


def status_lines(answer: bytes) -> list[str]:
    """The status line of each response in ``answer`` (a 100 Continue counts as one)."""
    return [
        line.decode()
        for line in answer.split(b"\r\n")
        if line.startswith(b"HTTP/1.") and line[8:9] == b" "
    ]


def body_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[1]


def loud(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records a reader of the receiver's log would notice: warnings and worse."""
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_as_its_content_encoding_is_400(
    namespace: str, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served(settings_for(namespace)) as port:
        for framing in ({"Content-Length": str(len(GOOD))}, {"Transfer-Encoding": "chunked"}):
            body = GOOD
            if "Transfer-Encoding" in framing:
                body = f"{len(GOOD):x}\r\n".encode() + GOOD + b"\r\n0\r\n\r\n"
            caplog.clear()
            headers = {"Content-Type": "application/xml", "Content-Encoding": encoding}
            answer = await exchange(port, request("POST", "/postbacks", headers | framing, body))
            assert status_lines(answer) == ["HTTP/1.1 400 Bad Request"], answer
            assert body_of(answer).startswith(b"Bad Request: ")
            assert len(body_of(answer)) < 200
            await asyncio.sleep(0.3)  # whatever the server logs after the answer
            assert len(loud(caplog)) <= 1, [r.getMessage() for r in loud(caplog)]
            assert tracebacks(caplog) == []
        # A body that does decode is a postback like any other.
        compressed = zlib.compress(GOOD, wbits=31 if encoding == "gzip" else 15)
        headers = {"Content-Encoding": encoding, "Content-Length": str(len(compressed))}
        answer = await exchange(port, request("POST", "/postbacks", headers, compressed), 1)
        assert status_lines(answer) == ["HTTP/1.1 200 OK"], answer
    assert await queue_count(Names(namespace).intake) == 1


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_a_content_encoding_aiohttp_cannot_decode_gets_a_short_400(
    namespace: str, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served(settings_for(namespace)) as port:
        caplog.clear()
        headers = {"Content-Encoding": encoding, "Content-Length": str(len(GOOD))}
        answer = await exchange(port, request("POST", "/postbacks", headers, GOOD))
        await asyncio.sleep(0.3)
    assert [line.split(" ", 1)[1] for line in status_lines(answer)] == ["400 Bad Request"]
    assert b"install" not in answer  # no advice about the server's own packages
    assert len(loud(caplog)) <= 1
    assert tracebacks(caplog) == []


async def test_a_client_that_goes_away_mid_body_leaves_no_traceback_and_nothing_queued(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served(settings_for(namespace)) as port:
        caplog.clear()
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        headers = {"Content-Type": "application/xml", "Content-Length": "1000"}
        writer.write(request("POST", "/postbacks", headers, GOOD[:10]))
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.5)
        noticed = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert len(noticed) <= 1, [r.getMessage() for r in noticed]
        assert tracebacks(caplog) == []
        async with http_session() as session:  # the receiver carries on
            assert (await post(session, f"http://127.0.0.1:{port}/postbacks", GOOD))[0] == 200
    assert await queue_count(Names(namespace).intake) == 1


async def test_expect_100_continue_is_refused_at_once_by_checks_that_need_no_body(
    namespace: str,
) -> None:
    settings = settings_for(namespace, max_body=300, basic_auth=("sinch", "secret"))
    good_auth = basic_auth_header("sinch", "secret")
    expect = {"Expect": "100-continue", "Content-Type": "application/xml"}
    async with served(settings) as port:

        async def head_only(method: str, path: str, **headers: str) -> list[str]:
            sent = expect | {"Content-Length": "200"} | headers
            return status_lines(await exchange(port, request(method, path, sent), wait=1.0))

        assert await head_only("POST", "/postbacks", **{"Content-Length": "301"}) == [
            "HTTP/1.1 401 Unauthorized"
        ]
        assert await head_only(
            "POST", "/postbacks", Authorization=good_auth, **{"Content-Length": "301"}
        ) == ["HTTP/1.1 413 Request Entity Too Large"]
        assert await head_only("POST", "/postbacks", Authorization="Basic eDp5") == [
            "HTTP/1.1 401 Unauthorized"
        ]
        assert await head_only("POST", "/nowhere", Authorization=good_auth) == [
            "HTTP/1.1 404 Not Found"
        ]
        assert await head_only("PUT", "/postbacks", Authorization=good_auth) == [
            "HTTP/1.1 405 Method Not Allowed"
        ]
        assert await head_only("POST", "/healthz") == ["HTTP/1.1 405 Method Not Allowed"]

        # Only a request that passes them is invited to send its body, and then accepted.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = expect | {"Content-Length": str(len(GOOD)), "Authorization": good_auth}
        writer.write(request("POST", "/postbacks", sent))
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(GOOD)
        await writer.drain()
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert await queue_count(Names(namespace).intake) == 1


async def test_expect_100_continue_from_a_peer_not_allowed_is_403_at_once(
    namespace: str,
) -> None:
    settings = settings_for(namespace, allow_from=(ipaddress.ip_network("192.0.2.0/24"),))
    async with served(settings) as port:
        sent = {"Expect": "100-continue", "Content-Length": "200"}
        answer = await exchange(port, request("POST", "/postbacks", sent), wait=1.0)
    assert status_lines(answer) == ["HTTP/1.1 403 Forbidden"]
    assert await queue_count(Names(namespace).intake) == 0


@pytest.mark.parametrize("method", ["FOO", "BREW", "X-CUSTOM"])
async def test_an_unknown_method_token_is_405(
    namespace: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served(settings_for(namespace)) as port:
        caplog.clear()
        headers = {"Content-Type": "application/xml", "Content-Length": str(len(GOOD))}
        answer = await exchange(port, request(method, "/postbacks", headers, GOOD))
        await asyncio.sleep(0.2)
    assert [line.split(" ", 1)[1] for line in status_lines(answer)] == ["405 Method Not Allowed"]
    assert b"\r\nAllow: POST\r\n" in answer
    assert loud(caplog) == [] and tracebacks(caplog) == []
    assert await queue_count(Names(namespace).intake) == 0
