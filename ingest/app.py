"""The aiohttp receiver: ``POST /postbacks``, ``/healthz``, ``/readyz``, ``/metrics``.

It decides only what the contract's table needs (route, peer, credentials, size, blank,
format) and never parses a postback: that is the worker's job. A 200 goes out only once
the postback is confirmed into ``NS.intake`` or fsynced into the spool.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMethod, ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest import mediatype
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.metrics import ReceiverMetrics
from ingest.publisher import IntakePublisher, Unavailable
from ingest.settings import Settings
from ingest.spool import Spool

log = logging.getLogger("postbacks.receiver")

BODY_TIMEOUT = 10.0  # a body that does not arrive in full within this gets 408
RETRY_AFTER = "2"


class InFlight:
    """Postback requests being handled, so that a stopping server can let them finish."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.stopping = False  # once set, answers close their connection

    def enter(self) -> None:
        self.count += 1
        self.idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


SETTINGS = web.AppKey("settings", Settings)
IN_FLIGHT = web.AppKey("in_flight", InFlight)
PUBLISHER = web.AppKey("publisher", IntakePublisher)
METRICS = web.AppKey("metrics", ReceiverMetrics)


def _answer(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(
        status=status, body=text.encode(), content_type="text/plain", headers=headers or None
    )


class _Gate:
    """The checks before a body is accepted, in the contract's order: 403, 401."""

    def __init__(self, settings: Settings) -> None:
        self.networks = settings.allow_from
        self.expected: tuple[bytes, bytes] | None = None
        if settings.basic_auth is not None:
            user, password = settings.basic_auth
            self.expected = (user.encode(), password.encode())

    # Each takes the request and returns at once when its check is not configured: on the
    # hot path an unconfigured check costs one call, not a header lookup.
    def allowed(self, request: web.BaseRequest) -> bool:
        if not self.networks:
            return True
        peer = request.remote
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def authorized(self, request: web.BaseRequest) -> bool:
        if self.expected is None:
            return True
        header = request.headers.get("Authorization")
        user, password = b"", b""
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "basic":
                try:
                    user, _, password = base64.b64decode(token.strip(), validate=True).partition(
                        b":"
                    )
                except (binascii.Error, ValueError):
                    user, password = b"", b""
        # Both comparisons always run, each in constant time.
        user_ok = hmac.compare_digest(user, self.expected[0])
        password_ok = hmac.compare_digest(password, self.expected[1])
        return user_ok & password_ok


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it exceeds ``limit`` bytes; ``TimeoutError`` when it
    does not arrive in full within ``BODY_TIMEOUT``."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    content = request.content
    if length is not None and content.is_eof():
        return content.read_nowait()  # all here already: the common case, no timer needed
    body = bytearray()
    async with asyncio.timeout(BODY_TIMEOUT):
        async for chunk in content.iter_any():
            body += chunk
            if len(body) > limit:
                return None
    return bytes(body)


class _Connection(RequestHandler):
    """aiohttp's handler of one connection, with requests it cannot parse answered briefly.

    llhttp (aiohttp's C parser) knows a fixed set of methods and stops at any other token
    before the path is read, so aiohttp answers ``400`` with the parser's diagnostics and
    logs a traceback. The contract says another method is ``405``: this answers an unknown
    method token ``405`` (whatever the path, which the parser never reached), and other
    malformed requests ``400`` with a short text and one warning line, no traceback.
    aiohttp's pure-Python parser would know the path, but at several times the cost per
    request. Errors of a handler (500) stay aiohttp's: a bug deserves its traceback.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:  # as aiohttp's: too late for any answer
            raise ConnectionError("the answer has started, cannot send another")
        if isinstance(exc, BadHttpMethod) and not exc.message.startswith("Received HTTPS"):
            log.debug("request refused: unknown method", extra={"peer": request.remote})
            # The path is unknown here: Allow names the method of the postback path.
            response = _answer(405, "Method Not Allowed", Allow=hdrs.METH_POST)
        elif isinstance(exc, BadHttpMethod):  # TLS on the plain-HTTP port
            log.debug("request refused: not HTTP", extra={"peer": request.remote})
            response = _answer(400, "Bad Request: not HTTP (TLS on a plain-HTTP port?)")
        elif isinstance(exc, ContentEncodingError):  # one aiohttp cannot decode (br, zstd)
            log.warning("request refused: unsupported Content-Encoding")
            response = _answer(400, "Bad Request: unsupported Content-Encoding")
        else:
            reason = str(exc.message).split("\n", 1)[0].rstrip(":")
            log.warning(
                "request refused: malformed", extra={"peer": request.remote, "reason": reason}
            )
            response = _answer(400, f"Bad Request: {reason}")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class ReceiverRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparseable requests as
    :class:`_Connection` does; serve :func:`create_app` with it."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making _Connection handlers
        return server


def create_app(settings: Settings, publisher: IntakePublisher | None = None) -> web.Application:
    """The receiver app; ``publisher`` is made (and started, and stopped) when not given."""
    app = web.Application(client_max_size=settings.max_body)
    metrics = ReceiverMetrics()
    app[SETTINGS] = settings
    app[METRICS] = metrics
    gate = _Gate(settings)
    for code in (200, 400, 401, 403, 408, 413, 415, 503):
        metrics.requests.labels(code=str(code))  # every answer's series exists from the start

    async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
        own = publisher is None
        link = publisher
        if link is None:
            spool = Spool(settings.spool_dir) if settings.spool_dir else None
            link = IntakePublisher(settings, spool, on_batch=_observe_batch)
            await link.start()
        app[PUBLISHER] = link
        yield
        if own:
            await link.stop()

    def _observe_batch(size: int, seconds: float) -> None:
        metrics.batch_postbacks.observe(size)
        metrics.confirm_seconds.observe(seconds)

    def answer(status: int, text: str, **headers: str) -> web.Response:
        metrics.answered(status)
        return _answer(status, text, **headers)

    in_flight = app[IN_FLIGHT] = InFlight()
    max_body = settings.max_body

    async def postback(request: web.Request) -> web.StreamResponse:
        in_flight.enter()
        try:
            response = await accept(request)
        finally:
            in_flight.leave()
        if in_flight.stopping:
            response.force_close()  # no next request on this connection
        return response

    def forbidden() -> web.Response:
        return answer(403, "Forbidden")

    def unauthorized() -> web.Response:
        return answer(401, "Unauthorized", **{"WWW-Authenticate": 'Basic realm="postbacks"'})

    def too_large() -> web.Response:
        response = answer(413, f"Payload Too Large: the limit is {max_body} bytes")
        response.force_close()
        return response

    async def accept(request: web.Request) -> web.StreamResponse:
        if not gate.allowed(request):
            return forbidden()
        if not gate.authorized(request):
            return unauthorized()
        try:
            body = await _read_body(request, max_body)
        except TimeoutError:
            response = answer(408, "Request Timeout: the body did not arrive in time")
            response.force_close()
            return response
        except RequestPayloadError as exc:
            # The body arrived but cannot be read: a Content-Encoding (gzip, deflate) it
            # does not decode as, or broken chunked framing. The client's mistake: 400.
            reason = str(exc).rsplit("\n", 1)[-1].strip()  # "Can not decode content-..."
            log.warning("postback body unreadable", extra={"reason": reason})
            # The parser has stopped on this connection: mark the body read, or aiohttp's
            # lingering read after the answer would raise the same error again.
            request.content.feed_eof()
            response = answer(400, f"Bad Request: the body cannot be read: {reason}")
            response.force_close()
            return response
        except ConnectionError:
            # The client closed the connection before its body was complete: no one is
            # left to answer, nothing was accepted.
            log.info("postback abandoned: the client went away before its body arrived")
            response = _answer(400, "Bad Request: incomplete body")
            response.force_close()
            return response
        if body is None:
            return too_large()
        if mediatype.is_blank(body):
            return answer(400, "Bad Request: empty body")
        fmt, charset = mediatype.detect(request.headers.get("Content-Type"), body)
        if fmt is None:
            return answer(415, "Unsupported Media Type: send XML or JSON")
        started = time.perf_counter()
        link = request.app[PUBLISHER]
        record = Record(link.next_id(), received_at_now(), fmt, charset, body)
        try:
            outcome = await link.submit(record)
        except Unavailable as exc:
            log.warning("postback not accepted", extra={"reason": str(exc)})
            return answer(
                503,
                "Service Unavailable: the broker cannot take postbacks now",
                **{"Retry-After": RETRY_AFTER},
            )
        if outcome == "spooled":
            metrics.spooled.inc()
        metrics.accepted_in(time.perf_counter() - started)
        return answer(200, "OK")

    async def expect(request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: the checks that need no body answer before the client
        sends it (403, 401, then 413 by Content-Length, as :func:`accept` orders them);
        only a request that passes them gets ``100 Continue``. Runs only when the request
        has an ``Expect`` header: the hot path never comes here."""
        if request.version != HttpVersion11:
            return None  # HTTP/1.0 has no 100 Continue: the body follows anyway
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            return answer(417, "Expectation Failed: only 100-continue is known")
        refusal: web.Response | None = None
        if not gate.allowed(request):
            refusal = forbidden()
        elif not gate.authorized(request):
            refusal = unauthorized()
        elif request.content_length is not None and request.content_length > max_body:
            return too_large()
        if refusal is not None:
            refusal.force_close()  # the client may or may not send the body now
            return refusal
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not started yet
        return None

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        link = request.app[PUBLISHER]
        checks = {"broker": "ok" if link.ready else (link.problem or "down")}
        body: dict[str, object] = {"ready": link.ready, "checks": checks}
        if link.spool is not None:
            body["spool_pending"] = link.spool.pending
        return web.json_response(body, status=200 if link.ready else 503)

    async def metrics_view(request: web.Request) -> web.Response:
        link = request.app[PUBLISHER]
        metrics.flush()
        metrics.broker_up.set(1 if link.ready else 0)
        if link.spool is not None:
            metrics.spool_pending.set(link.spool.pending)
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.cleanup_ctx.append(publisher_ctx)
    _route(app, "/postbacks", {hdrs.METH_POST: postback}, expect)
    for path, view in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics_view)):
        _route(app, path, {hdrs.METH_GET: view, hdrs.METH_HEAD: view})
    # Every other path is 404, answered before any body, ``Expect`` or not.
    app.router.add_route(hdrs.METH_ANY, "/{path:.*}", _not_found, expect_handler=_not_found)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(
    app: web.Application,
    path: str,
    views: dict[str, Handler],
    expect: Callable[[web.Request], Awaitable[web.StreamResponse | None]] | None = None,
) -> None:
    """``path`` served by ``views`` (by method); any other method is 405.

    aiohttp's own 404/405 come from a route whose ``Expect`` handler sends ``100 Continue``
    first, inviting a body only to refuse it: these routes refuse at once instead.
    """
    resource = app.router.add_resource(path)
    for method, view in views.items():
        resource.add_route(method, view, expect_handler=expect)
    allow = ",".join(views)

    async def not_allowed(request: web.Request) -> web.StreamResponse:
        response = _answer(405, "Method Not Allowed", Allow=allow)
        if request.headers.get(hdrs.EXPECT):
            response.force_close()  # the client may or may not send the body now
        return response

    resource.add_route(hdrs.METH_ANY, not_allowed, expect_handler=not_allowed)


async def _not_found(request: web.Request) -> web.StreamResponse:
    response = _answer(404, "Not Found")
    if request.headers.get(hdrs.EXPECT):
        response.force_close()  # the client may or may not send the body now
    return response
