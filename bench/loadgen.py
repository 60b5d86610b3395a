"""A small HTTP/1.1 load generator for distinct postbacks (``python -m bench.loadgen``).

Why not only wrk: wrk cannot send a fixed rate, and when its time is up it drops the
requests in flight without counting their answers, so it cannot say exactly how many
postbacks were accepted. This generator can:

* closed loop (default): ``--connections`` keep-alive connections, each sending its next
  postback as soon as the previous one is answered, for ``--duration`` seconds or until
  ``--requests`` postbacks were sent. When it stops issuing it waits for every request in
  flight, so ``ok`` is exactly the number of postbacks answered 200;
* open loop (``--rate R``): postbacks are scheduled every 1/R s and sent on the first free
  connection; latency is measured from the *scheduled* time, so a server that falls behind
  shows its queueing delay (no coordinated omission).

It prints one JSON object on stdout. It uses raw asyncio protocols on uvloop: on one core it
sends far more than any of the Python servers under test can answer (see the ceiling phase).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import gc
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from bench.bodies import FORMATS, http_request

_CL = b"\r\ncontent-length:"


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))
        self.waiter = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            try:
                status = int(head[9:12])
            except ValueError:
                status = 0
            i = head.find(_CL)
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                clen = int(head[i + len(_CL) : j if j >= 0 else len(head)])
                total = end + 4 + clen
                if len(buf) < total:
                    return
            elif b"transfer-encoding: chunked" in head:
                k = buf.find(b"\r\n0\r\n\r\n", end + 2)
                if k < 0:
                    return
                total = k + 7
            else:
                total = end + 4
            del buf[:total]
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(status)
            if b"\r\nconnection: close" in head and self.transport is not None:
                self.transport.close()

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiter = fut
        self.transport.write(data)
        return fut


@dataclass
class _State:
    run: str
    start_n: int
    max_requests: int | None
    host: str
    port: int
    fmt: str = "mix"
    next_n: int = 0
    sent: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: int = 0
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    service: array.array[float] = field(default_factory=lambda: array.array("d"))
    # Open loop: how late this generator queued each request behind its schedule, and how
    # long a queued request then waited for a free connection.
    lag: array.array[float] = field(default_factory=lambda: array.array("d"))
    conn_wait: array.array[float] = field(default_factory=lambda: array.array("d"))
    stop: bool = False
    first_send: float = 0.0
    last_answer: float = 0.0
    inflight: int = 0

    def take(self) -> int | None:
        if self.stop or (self.max_requests is not None and self.sent >= self.max_requests):
            return None
        n = self.start_n + self.sent
        self.sent += 1
        return n


async def _connect(st: _State) -> _Conn:
    loop = asyncio.get_running_loop()
    for _ in range(100):
        try:
            _, proto = await loop.create_connection(_Conn, st.host, st.port)
            return proto
        except OSError:
            st.errors += 1
            await asyncio.sleep(0.05)
    raise ConnectionError(f"cannot connect to {st.host}:{st.port}")


async def _send(
    st: _State, conn: _Conn, n: int, since: float, queued: float | None = None
) -> tuple[_Conn, bool]:
    """Send postback ``n`` on ``conn``; latency counted from ``since``."""
    if conn.closed:
        conn = await _connect(st)
    host = st.host.encode()
    st.inflight += 1
    sent_at = time.perf_counter()
    if queued is not None:
        st.lag.append(max(0.0, queued - since))
        st.conn_wait.append(sent_at - queued)
    try:
        status = await conn.request(http_request(st.run, n, host, st.fmt))
    except ConnectionError:
        st.errors += 1
        return await _connect(st), False
    finally:
        st.inflight -= 1
    now = time.perf_counter()
    st.last_answer = now
    st.statuses[status] += 1
    st.latencies.append(now - since)
    st.service.append(now - sent_at)
    return conn, True


async def _closed_worker(st: _State) -> None:
    conn = await _connect(st)
    try:
        while (n := st.take()) is not None:
            conn, _ = await _send(st, conn, n, time.perf_counter())
    finally:
        if conn.transport is not None:
            conn.transport.close()


async def _open_worker(st: _State, queue: asyncio.Queue[tuple[int, float, float] | None]) -> None:
    conn = await _connect(st)
    try:
        while (item := await queue.get()) is not None:
            n, scheduled, queued = item
            conn, _ = await _send(st, conn, n, scheduled, queued)
    finally:
        if conn.transport is not None:
            conn.transport.close()


async def _scheduler(
    st: _State,
    queue: asyncio.Queue[tuple[int, float, float] | None],
    rate: float,
    duration: float | None,
    workers: int,
) -> None:
    t0 = st.first_send
    total = st.max_requests
    if duration is not None:
        by_time = int(rate * duration)
        total = by_time if total is None else min(total, by_time)
    assert total is not None
    i = 0
    while i < total:
        now = time.perf_counter()
        due = min(total, int((now - t0) * rate) + 1)
        while i < due:
            queue.put_nowait((st.start_n + i, t0 + i / rate, now))
            i += 1
        st.sent = i
        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    for _ in range(workers):
        queue.put_nowait(None)


def _pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, round(p / 100 * len(sorted_vals)) - 1))
    return sorted_vals[k]


async def run(
    url: str,
    *,
    run_id: str,
    connections: int = 64,
    duration: float | None = None,
    requests: int | None = None,
    rate: float | None = None,
    start_n: int = 0,
    grace: float = 60.0,
    fmt: str = "mix",
) -> dict[str, Any]:
    if duration is None and requests is None:
        raise ValueError("give a duration or a number of requests")
    parts = urlsplit(url)
    st = _State(
        run=run_id,
        start_n=start_n,
        max_requests=requests,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 80,
        fmt=fmt,
    )
    gc.disable()
    wall_start = time.time()
    st.first_send = time.perf_counter()
    tasks: list[asyncio.Task[None]]
    if rate is None:
        tasks = [asyncio.create_task(_closed_worker(st)) for _ in range(connections)]
    else:
        queue: asyncio.Queue[tuple[int, float, float] | None] = asyncio.Queue()
        tasks = [asyncio.create_task(_open_worker(st, queue)) for _ in range(connections)]
        tasks.append(asyncio.create_task(_scheduler(st, queue, rate, duration, connections)))
    pending: set[asyncio.Task[None]] = set(tasks)
    if duration is not None:
        _, pending = await asyncio.wait(pending, timeout=duration)
        st.stop = True
    else:
        # Requests mode: run until all were sent; give up only when nothing moves.
        while pending and not st.stop:
            progress = (st.sent, st.last_answer)
            _, pending = await asyncio.wait(pending, timeout=grace)
            if pending and (st.sent, st.last_answer) == progress:
                st.stop = True
    issue_end = time.perf_counter()
    wall_issue_end = time.time()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            print(f"loadgen: {task.exception()!r}", file=sys.stderr)
    answered = sum(st.statuses.values())
    elapsed = (st.last_answer or issue_end) - st.first_send
    lat = sorted(st.latencies)
    svc = sorted(st.service)
    lag = sorted(st.lag)
    conn_wait = sorted(st.conn_wait)
    ms = 1000.0
    return {
        "tool": "loadgen",
        "mode": "closed" if rate is None else "open",
        "connections": connections,
        "target_rate": rate,
        "sent": st.sent,
        "answered": answered,
        "ok": st.statuses.get(200, 0),
        "statuses": {str(k): v for k, v in sorted(st.statuses.items())},
        "errors": st.errors,
        "unanswered": st.sent - answered,
        "duration_s": round(elapsed, 3),
        "issue_s": round(issue_end - st.first_send, 3),
        "rps": round(answered / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(_pct(lat, 50) * ms, 3),
        "p90_ms": round(_pct(lat, 90) * ms, 3),
        "p99_ms": round(_pct(lat, 99) * ms, 3),
        "p999_ms": round(_pct(lat, 99.9) * ms, 3),
        "max_ms": round((lat[-1] if lat else 0.0) * ms, 3),
        # Open loop: from the moment the request was written (no queueing for a free
        # connection, no lag of this generator behind its schedule).
        "service_p50_ms": round(_pct(svc, 50) * ms, 3),
        "service_p99_ms": round(_pct(svc, 99) * ms, 3),
        # Open loop, what makes up the rest: this generator queuing requests late (its own
        # core busy; not the server's doing) and requests waiting for a free connection
        # (all of them busy with slower answers: the server's doing).
        "generator_lag_p99_ms": round(_pct(lag, 99) * ms, 3) if lag else None,
        "generator_lag_max_ms": round(lag[-1] * ms, 3) if lag else None,
        "connection_wait_p99_ms": round(_pct(conn_wait, 99) * ms, 3) if conn_wait else None,
        "connection_wait_max_ms": round(conn_wait[-1] * ms, 3) if conn_wait else None,
        "t_start": wall_start,
        "t_issue_end": wall_issue_end,
        "t_end": wall_start + elapsed,
        "run_id": run_id,
        "start_n": start_n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8080/postbacks")
    ap.add_argument("--run-id", required=True, help="prefix that keeps postbacks distinct")
    ap.add_argument("--start-n", type=int, default=0, help="first postback counter")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=float, help="seconds to send for")
    ap.add_argument("--requests", type=int, help="postbacks to send")
    ap.add_argument("--rate", type=float, help="open loop: requests per second")
    ap.add_argument("--grace", type=float, default=60.0, help="seconds to wait for answers")
    ap.add_argument("--format", default="mix", choices=FORMATS, help="postback shapes to send")
    args = ap.parse_args(argv)
    import uvloop

    result = uvloop.run(
        run(
            args.url,
            run_id=args.run_id,
            connections=args.connections,
            duration=args.duration,
            requests=args.requests,
            rate=args.rate,
            start_n=args.start_n,
            grace=args.grace,
            fmt=args.format,
        )
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
