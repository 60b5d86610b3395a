"""``postbacks stats``: queue depths, consumers, rates and the quarantine, as a table.

Depths and consumers come from the broker over AMQP (a passive declare per queue: exact and
current). Rates come from RabbitMQ's management HTTP API when it answers (in/s and out/s,
the broker's own figures, which it refreshes every few seconds); ``net/s`` is always
measured here, by sampling each depth twice ``interval`` seconds apart. When the management
API does not answer, the table says so and shows ``-`` for in/s, out/s and unacked, and
subscriber queues (``NS.sub.*``, only listable through that API) are left out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import aiohttp
from aio_pika.abc import AbstractConnection

from ingest import broker
from ingest.settings import Settings, mask_url

MANAGEMENT_PORT = 15672
MANAGEMENT_TIMEOUT = 3.0
OFF = ("off", "none", "no", "")


@dataclass(slots=True)
class QueueRow:
    name: str
    role: str
    present: bool = True
    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    in_rate: float | None = None
    out_rate: float | None = None
    net_rate: float | None = None
    leader: str | None = None  # the node of a quorum queue's leader (management API)


@dataclass(slots=True)
class Management:
    """What the management API said, or why it could not be asked."""

    url: str | None
    error: str | None = None
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, Any] | None = None

    @property
    def reachable(self) -> bool:
        return self.url is not None and self.error is None


@dataclass(slots=True)
class Report:
    namespace: str
    broker: str
    rows: list[QueueRow]
    management: Management
    interval: float

    def row(self, name: str) -> QueueRow | None:
        return next((row for row in self.rows if row.name == name), None)


def management_url(amqp_url: str, given: str | None = None) -> str | None:
    """The management API's base URL: ``given``, or the AMQP host on port 15672 with the
    AMQP credentials (``None`` when ``given`` is ``off``)."""
    if given is not None:
        if given.strip().lower() in OFF:
            return None
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--management-url must be an http(s) URL or 'off': {given!r}")
        if parts.username is None:
            amqp = urlsplit(amqp_url)
            user = quote(unquote(amqp.username or "guest"), safe="")
            password = quote(unquote(amqp.password or "guest"), safe="")
            host = parts.netloc
            return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))
        return given
    amqp = urlsplit(amqp_url)
    scheme = "https" if amqp.scheme == "amqps" else "http"
    user = amqp.username or "guest"
    password = amqp.password or "guest"
    host = amqp.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{user}:{password}@{host}:{MANAGEMENT_PORT}/"


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _rate(stats: dict[str, Any] | None, key: str) -> float:
    details = (stats or {}).get(f"{key}_details") or {}
    value = details.get("rate", 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


def management_base(url: str) -> tuple[str, dict[str, str]]:
    """The management API's base URL without credentials, and the header that carries them."""
    parts = urlsplit(url)
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)).rstrip("/"), headers


async def _ask_management(url: str | None, vhost: str, namespace: str, events: str) -> Management:
    if url is None:
        return Management(None, "turned off with --management-url off")
    base, headers = management_base(url)
    found = Management(mask_url(url))
    v = quote(vhost, safe="")
    timeout = aiohttp.ClientTimeout(total=MANAGEMENT_TIMEOUT)
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            columns = (
                "name,messages_ready,messages_unacknowledged,consumers,message_stats,leader,node,"
                "messages,arguments"
            )
            async with session.get(f"{base}/api/queues/{v}", params={"columns": columns}) as r:
                if r.status != 200:
                    found.error = f"HTTP {r.status} from {r.url.path}"
                    return found
                queues: list[dict[str, Any]] = await r.json()
            async with session.get(f"{base}/api/exchanges/{v}/{quote(events, safe='')}") as r:
                found.events = await r.json() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        found.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return found
    prefix = f"{namespace}."
    found.queues = {q["name"]: q for q in queues if str(q.get("name", "")).startswith(prefix)}
    return found


async def _depth(connection: AbstractConnection, queue: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of ``queue``, or ``None`` when it does not exist."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return None
    result = declared.declaration_result
    with contextlib.suppress(Exception):
        await channel.close()
    return result.message_count or 0, result.consumer_count or 0


async def collect(
    settings: Settings, management: str | None = None, interval: float = 1.0
) -> Report:
    """Everything ``postbacks stats`` shows, as data."""
    names = settings.names
    first_node = settings.amqp_urls[0]  # the management API of a cluster's first node
    url = management_url(first_node, management)
    asked = asyncio.create_task(
        _ask_management(url, vhost_of(first_node), names.namespace, names.events)
    )
    rows = [
        QueueRow(names.intake, "intake"),
        QueueRow(names.quarantine, "quarantine"),
        QueueRow(names.unrouted, "unrouted"),
        QueueRow(names.timers, "timers-due"),
    ]
    if settings.dlr_timeout > 0:  # receipt timers waiting out DLR_TIMEOUT
        rows.append(QueueRow(names.waiting(settings.dlr_timeout), "timers"))
    async with broker.session(settings.amqp_urls) as connection:
        first = {row.name: await _depth(connection, row.name) for row in rows}
        started = time.monotonic()
        found = await asked
        prefix = names.subscriber("")
        for name in sorted(found.queues):
            if name.startswith(prefix):
                rows.append(QueueRow(name, "subscriber"))
                first[name] = await _depth(connection, name)
        if interval > 0:
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
            elapsed = max(time.monotonic() - started, 1e-6)
            second = {row.name: await _depth(connection, row.name) for row in rows}
        else:
            elapsed, second = 0.0, first
    for row in rows:
        before, after = first[row.name], second[row.name]
        if after is None:
            row.present = False
            continue
        row.ready, row.consumers = after
        if before is not None and elapsed > 0:
            row.net_rate = (after[0] - before[0]) / elapsed
        seen = found.queues.get(row.name)
        if seen is not None:
            row.unacked = int(seen.get("messages_unacknowledged") or 0)
            stats = seen.get("message_stats")
            row.in_rate = _rate(stats, "publish")
            row.out_rate = _rate(stats, "deliver_get")
            leader = seen.get("leader") or seen.get("node")
            row.leader = str(leader) if leader else None
        elif found.reachable:
            row.unacked, row.in_rate, row.out_rate = 0, 0.0, 0.0
    shown = ",".join(mask_url(node) for node in settings.amqp_urls)
    return Report(names.namespace, shown, rows, found, interval)


def _number(value: float | None, rate: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if rate else f"{int(value):,}"


def render(report: Report) -> str:
    """The report as the table an operator reads."""
    header: tuple[str, ...] = (
        "queue",
        "role",
        "ready",
        "unacked",
        "consumers",
        "in/s",
        "out/s",
        "net/s",
    )
    table: list[tuple[str, ...]] = [header]
    for row in report.rows:
        if not row.present:
            table.append((row.name, row.role, "absent", "-", "-", "-", "-", "-"))
            continue
        table.append(
            (
                row.name,
                row.role,
                _number(row.ready),
                _number(row.unacked),
                _number(row.consumers),
                _number(row.in_rate, True),
                _number(row.out_rate, True),
                _number(row.net_rate, True),
            )
        )
    if any(row.leader for row in report.rows):  # where each queue's leader is (clusters)
        table = [(*cells, "leader") if n == 0 else cells for n, cells in enumerate(table)]
        table = [table[0]] + [
            (*cells, row.leader or "-") for cells, row in zip(table[1:], report.rows, strict=True)
        ]
        header = table[0]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        left = [f"{cells[i]:<{widths[i]}}" for i in range(2)]
        numbers = min(len(cells), 8)
        right = [f"{cells[i]:>{widths[i]}}" for i in range(2, numbers)]
        right += [f"  {cells[i]:<{widths[i]}}" for i in range(numbers, len(cells))]
        return "  ".join(left + right).rstrip()

    management = report.management
    out = [f"postbacks stats: namespace {report.namespace}, broker {report.broker}"]
    sampled = (
        f"net/s: change of ready messages over {report.interval:g} s, measured here"
        if report.interval > 0
        else "net/s: not sampled (--interval 0)"
    )
    if management.reachable:
        out.append(f"rates: in/s, out/s from the RabbitMQ management API {management.url}")
        out.append(f"       (the broker's latest sample); {sampled}")
    else:
        if management.url is None:
            out.append("rates: management API not asked (--management-url off)")
        else:
            out.append(f"rates: management API not reachable at {management.url}")
            out.append(f"       ({management.error})")
        out.append(f"       fallback: {sampled};")
        out.append("       in/s, out/s, unacked and subscriber queues need the management")
        out.append("       plugin (rabbitmq-plugins enable rabbitmq_management)")
    out.append("")
    out.append(line(table[0]))
    out += [line(cells) for cells in table[1:]]
    if management.reachable and management.events is not None:
        stats = management.events.get("message_stats")
        out.append("")
        out.append(
            f"events exchange {report.namespace}.events: in {_rate(stats, 'publish_in'):,.1f}/s, "
            f"routed out {_rate(stats, 'publish_out'):,.1f}/s"
        )
    quarantine = report.rows[1]
    out.append("")
    if not quarantine.present:
        out.append("quarantine: absent (run `postbacks topology`)")
    elif quarantine.ready:
        out.append(
            f"quarantine: {quarantine.ready:,} message(s) held: see why with "
            "`postbacks replay --dry-run`;\n            after the fix, `postbacks replay` "
            "moves them back to the intake"
        )
    else:
        out.append("quarantine: empty")
    intake = report.rows[0]
    if intake.present and not intake.consumers:
        out.append("intake: no worker is consuming (start `postbacks work`)")
    return "\n".join(out)


async def report(settings: Settings, management: str | None = None, interval: float = 1.0) -> str:
    from worker import history  # it uses this module's management helpers

    found = await collect(settings, management, interval)
    lines = await history.stats_lines(settings, found.management.queues, found.management.reachable)
    return render(found) + "\n" + "\n".join(lines)
