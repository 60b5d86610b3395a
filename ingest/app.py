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
from collections.abc import AsyncIterator

from aiohttp import web
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

    async def accept(request: web.Request) -> web.StreamResponse:
        if not gate.allowed(request):
            return answer(403, "Forbidden")
        if not gate.authorized(request):
            return answer(401, "Unauthorized", **{"WWW-Authenticate": 'Basic realm="postbacks"'})
        try:
            body = await _read_body(request, max_body)
        except TimeoutError:
            response = answer(408, "Request Timeout: the body did not arrive in time")
            response.force_close()
            return response
        if body is None:
            response = answer(413, f"Payload Too Large: the limit is {max_body} bytes")
            response.force_close()
            return response
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
    app.router.add_post("/postbacks", postback)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
