"""The link to RabbitMQ: one node of a cluster at a time, the next one when it is lost.

``AMQP_URL`` names one broker or the nodes of one cluster, comma-separated. aio-pika takes one
URL, so the rotation is here: every process starts at a random node of the list (so that
connections spread over the cluster), and on losing its node goes on at once to the next;
only when no node of the list answers does it wait, at most ``RECONNECT_MAX`` seconds,
before going round again. Long-running processes use :class:`Link` (one task owns the
connection, as aio-pika's ``RobustConnection`` does), one-shot commands :func:`session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractConnection

from ingest.settings import mask_url

log = logging.getLogger("postbacks.broker")
# aiormq logs every failed connect at ERROR with no more than what Link and session say
# themselves (one line per outage, naming the node): keep its own lines out of the logs.
logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)

# Seconds to wait once every node of the list failed, doubling from MIN up to MAX: every
# broker link comes back within a second of a node being reachable again.
RECONNECT_MIN, RECONNECT_MAX = 0.2, 1.0
CONNECT_TIMEOUT = 5.0  # seconds per node
CLOSE_TIMEOUT = 1.0  # seconds to wait for a node to take a Connection.Close
AVOID_SECONDS = 30.0  # a node given up is tried last for this long


class Unreachable(ConnectionError):
    """No node of ``AMQP_URL`` took the connection; ``str(exc)`` gives each node's reason."""


def describe(exc: BaseException) -> str:
    """The broker's own reason in one line (aiormq's exceptions hide some of it)."""
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return f"refused: {exc.args[0] if exc.args else 'wrong user or password'}"
    if isinstance(exc, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(exc):
        # The broker closed the connection in answer to Connection.Open: the vhost.
        return "refused: unknown virtual host, or the user has no access to it"
    if isinstance(exc, aiormq.exceptions.AMQPConnectionError) and len(exc.args) == 2:
        return str(exc.args[1])
    if isinstance(exc, TimeoutError):
        return "no answer within the connect timeout"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class Nodes:
    """The nodes of ``AMQP_URL`` in rotation, starting at a random one."""

    def __init__(self, urls: Sequence[str], start: int | None = None) -> None:
        if not urls:
            raise ValueError("no broker URL")
        self.urls = tuple(urls)
        self._next = random.randrange(len(self.urls)) if start is None else start % len(urls)
        self.current: str | None = None  # the node of the open connection
        self._avoided: dict[str, float] = {}  # node -> until when it is tried last

    def round(self) -> list[str]:
        """Every node once, from the next one on; the one after is next time's first. Nodes
        given up lately (:meth:`avoid`) come last: tried only when no other answers."""
        first = self._next
        self._next = (first + 1) % len(self.urls)
        order = [self.urls[(first + i) % len(self.urls)] for i in range(len(self.urls))]
        now = time.monotonic()
        return sorted(order, key=lambda url: self._avoided.get(url, 0.0) > now)

    def avoid(self, url: str | None, seconds: float = AVOID_SECONDS) -> None:
        """Try ``url`` last for ``seconds``: it took a connection but did not serve it (a
        node cut off from its cluster can keep accepting connections and never confirm)."""
        if url is not None:
            self._avoided[url] = time.monotonic() + seconds

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> AbstractConnection:
        """A connection to the first node of this round that takes it."""
        reasons = []
        for url in self.round():
            try:
                connection = await aio_pika.connect(url, timeout=timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = describe(exc)
                if reason.startswith("refused: unknown virtual host"):
                    reason += f" ({_vhost(url)!r})"
                reasons.append(f"{mask_url(url)}: {reason}" if len(self.urls) > 1 else reason)
                continue
            self.current = url
            self._next = (self.urls.index(url) + 1) % len(self.urls)
            return connection
        raise Unreachable("; ".join(reasons))


@contextlib.asynccontextmanager
async def session(urls: Sequence[str], timeout: float = 10) -> AsyncIterator[AbstractConnection]:
    """A connection for a one-shot command; raises :class:`Unreachable` naming the reason."""
    connection = await Nodes(urls).connect(timeout)
    try:
        yield connection
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


class Link:
    """Owns a long-running process's connection: connects to a node, runs ``session`` with
    it until that returns or fails (the connection was lost), then goes on to the next node
    at once, until ``stopping`` is set. ``on_problem`` hears ``None`` once connected and the
    reason whenever the link is down."""

    def __init__(
        self,
        urls: Sequence[str],
        on_problem: Callable[[str | None], None],
        timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.nodes = Nodes(urls)
        self.on_problem = on_problem
        self.timeout = timeout

    async def run(
        self,
        session: Callable[[AbstractConnection], Awaitable[None]],
        stopping: asyncio.Event,
    ) -> None:
        delay = RECONNECT_MIN
        while not stopping.is_set():
            try:
                connection = await self.nodes.connect(self.timeout)
            except Unreachable as exc:
                self.on_problem(f"broker unreachable: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            delay = RECONNECT_MIN
            node = mask_url(self.nodes.current or "")
            log.info("broker connected", extra={"node": node})
            try:
                await session(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the node went away: on to the next one
                self.on_problem(f"broker connection lost: {describe(exc)}")
                log.warning("broker connection lost", extra={"node": node, "error": describe(exc)})
            finally:
                # Bounded: a node that went silent never answers Connection.Close.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)
