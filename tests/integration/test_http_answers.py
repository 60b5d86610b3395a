"""What Sinch (or anyone else) gets back from the receiver, and in which order the checks
apply: 404/405, 403, 401, 413, 400, 415."""

from __future__ import annotations

import base64
import codecs
import ipaddress
from collections.abc import AsyncIterator

import aiohttp

from ingest.names import Names
from ingest.settings import IPNetwork
from tests.support import http_session, post, postback_json, postback_xml, queue_count

from ._helpers import intake_records, receiver, settings_for

GOOD = postback_xml("N102", "http-1")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def chunks(part: bytes, count: int) -> AsyncIterator[bytes]:
    """A body sent with chunked transfer encoding (no Content-Length)."""
    for _ in range(count):
        yield part


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | AsyncIterator[bytes] = b"",
    content_type: str | None = None,
    authorization: str | None = None,
) -> tuple[int, dict[str, str]]:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if authorization is not None:
        headers["Authorization"] = authorization
    async with session.request(method, url, data=body, headers=headers) as response:
        await response.read()
        return response.status, dict(response.headers)


async def test_unknown_path_is_404_and_other_method_is_405(namespace: str) -> None:
    async with receiver(settings_for(namespace)) as url, http_session() as session:
        assert (await send(session, "POST", f"{url}/postback", GOOD, "application/xml"))[0] == 404
        assert (await send(session, "POST", f"{url}/", GOOD, "application/xml"))[0] == 404
        assert (await send(session, "GET", f"{url}/nothing-here"))[0] == 404
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            status, _ = await send(session, method, f"{url}/postbacks", GOOD, "application/xml")
            assert (method, status) == (method, 405)
    assert await queue_count(Names(namespace).intake) == 0


async def test_empty_or_blank_body_is_400(namespace: str) -> None:
    async with receiver(settings_for(namespace)) as url, http_session() as session:
        for body in (b"", b"   ", b"\r\n\t \n", codecs.BOM_UTF8 + b" \n"):
            for content_type in ("application/xml", "application/json", None):
                status, _, _ = await post(session, f"{url}/postbacks", body, content_type)
                assert (body, content_type, status) == (body, content_type, 400)
    assert await queue_count(Names(namespace).intake) == 0


async def test_body_over_the_limit_is_413_and_at_the_limit_is_accepted(namespace: str) -> None:
    limit = 300
    at_limit = postback_xml("N101", "limit").ljust(limit, b" ")
    async with (
        receiver(settings_for(namespace, max_body=limit)) as url,
        http_session() as session,
    ):
        over = await post(session, f"{url}/postbacks", at_limit + b" ")
        far_over = await post(session, f"{url}/postbacks", at_limit * 100)
        chunked_over = await send(session, "POST", f"{url}/postbacks", chunks(at_limit, 3))
        exact = await post(session, f"{url}/postbacks", at_limit)
    assert over[0] == 413
    assert far_over[0] == 413
    assert chunked_over[0] == 413  # no Content-Length: the limit holds as the body streams
    assert exact[0] == 200
    assert [record.body for record in await intake_records(namespace)] == [at_limit]


async def test_body_that_is_neither_xml_nor_json_is_415(namespace: str) -> None:
    async with receiver(settings_for(namespace)) as url, http_session() as session:
        for body, content_type in (
            (b"origin=MMS_MT&code=N101", "application/x-www-form-urlencoded"),
            (b"hello", "text/plain"),
            (b"hello", None),
            (b'  ["origin", "code"]', "text/plain"),
            (codecs.BOM_UTF8 + b"\n MMS_MT N101", "application/octet-stream"),
        ):
            status, _, _ = await post(session, f"{url}/postbacks", body, content_type)
            assert (body, status) == (body, 415)
    assert await queue_count(Names(namespace).intake) == 0


async def test_basic_auth_missing_or_wrong_is_401_with_www_authenticate(namespace: str) -> None:
    settings = settings_for(namespace, basic_auth=("sinch", "s3cret"))
    async with receiver(settings) as url, http_session() as session:
        target = f"{url}/postbacks"
        for authorization in (
            None,
            basic("sinch", "wrong"),
            basic("other", "s3cret"),
            basic("sinch", "s3cret").replace("Basic", "Bearer"),
            "Basic not-base64!",
        ):
            status, headers = await send(
                session, "POST", target, GOOD, "application/xml", authorization
            )
            assert (authorization, status) == (authorization, 401)
            assert headers["WWW-Authenticate"].lower().startswith("basic")
        status, _ = await send(
            session, "POST", target, GOOD, "application/xml", basic("sinch", "s3cret")
        )
    assert status == 200
    assert [record.body for record in await intake_records(namespace)] == [GOOD]


async def test_peer_outside_allow_from_is_403_inside_is_accepted(namespace: str) -> None:
    outside = settings_for(namespace, allow_from=_networks("10.0.0.0/8", "192.168.0.0/16"))
    async with receiver(outside) as url, http_session() as session:
        refused, _, _ = await post(session, f"{url}/postbacks", GOOD)
    inside = settings_for(namespace, allow_from=_networks("10.0.0.0/8", "127.0.0.1/32"))
    async with receiver(inside) as url, http_session() as session:
        accepted, _, _ = await post(session, f"{url}/postbacks", GOOD)
    assert (refused, accepted) == (403, 200)
    assert [record.body for record in await intake_records(namespace)] == [GOOD]


async def test_when_several_apply_the_first_in_contract_order_answers(namespace: str) -> None:
    """404/405 before 403 before 401 before 413 before 400 before 415."""
    right = basic("sinch", "s3cret")
    too_big = b" " * 2000  # blank and too large and of no known media type
    refused_peer = settings_for(
        namespace, basic_auth=("sinch", "s3cret"), allow_from=_networks("10.0.0.0/8"), max_body=1000
    )
    async with receiver(refused_peer) as url, http_session() as session:
        target = f"{url}/postbacks"
        assert (await send(session, "POST", f"{url}/elsewhere", too_big, "text/plain"))[0] == 404
        assert (await send(session, "GET", target))[0] == 405
        assert (await send(session, "PUT", target, too_big, "text/plain", right))[0] == 405
        assert (await send(session, "POST", target, too_big, "text/plain"))[0] == 403
        assert (await send(session, "POST", target, GOOD, "application/xml", right))[0] == 403
    allowed_peer = settings_for(
        namespace,
        basic_auth=("sinch", "s3cret"),
        allow_from=_networks("127.0.0.0/8"),
        max_body=1000,
    )
    async with receiver(allowed_peer) as url, http_session() as session:
        target = f"{url}/postbacks"
        status, headers = await send(session, "POST", target, too_big, "text/plain")
        assert status == 401
        assert "WWW-Authenticate" in headers
        assert (await send(session, "POST", target, too_big, "text/plain", right))[0] == 413
        assert (await send(session, "POST", target, b" \n ", "text/plain", right))[0] == 400
        assert (await send(session, "POST", target, b"", "image/png", right))[0] == 400
        assert (await send(session, "POST", target, b"hello", "text/plain", right))[0] == 415
        accepted = await send(session, "POST", target, postback_json(), "text/plain", right)
        assert accepted[0] == 200
    assert await queue_count(Names(namespace).intake) == 1


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)
