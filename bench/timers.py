"""``python -m bench.timers``: what receipt timers and lifecycles cost.

Two measurements (``--only pending,cpu``), see bench/README.md "Timers and lifecycles":

* ``pending``: a private RabbitMQ node (``tests.faults.services.PrivateRabbit``: its own
  ports, HOME, data dir; the shared broker is never touched), the timer queues declared
  with ``ingest.topology.declare_timers``, N timers built by ``worker.timers.arm`` published
  with confirms in pipelined batches; the node's memory (``memory_breakdown``, the beam's
  VmRSS) and its data dir's disk use before and after, per pending timer.
* ``cpu``: a drain of N queued postbacks (half N101, then N102 of the same tracking ids,
  XML and JSON) by one ``postbacks work`` pinned with taskset, with lifecycles on (the
  default ``DLR_TIMEOUT``, ``REDIS_URL`` set), and the same postbacks without a tracking id
  (lifecycle null: no store step, no timer) as "off"; CPU seconds per event from the
  worker's own /proc/PID/stat (utime+stime) and events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.abc
from pamqp.commands import Basic

from bench.broker import Broker, delete_redis_keys, list_queues_with_prefix
from bench.phases import Config, Sampler, project_env, project_topology, say
from bench.procs import (
    RESULTS_DIR,
    ManagedProcess,
    NoiseMeter,
    machine_busy,
    pin_self,
    rss_kb,
    service_ticks,
    stop_all,
    wait_http_ok,
    wait_port_free,
)
from ingest import envelope, topology
from ingest.event import received_at_now
from ingest.names import Names
from tests.faults.services import PrivateRabbit
from worker.timers import arm

Result = dict[str, Any]
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 259200  # DLR_TIMEOUT's default: three days
TCK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20

# ---------------------------------------------------------------- pending timers


def _disk(path: Path) -> tuple[int, int]:
    """(allocated bytes, apparent bytes) of every file under ``path``."""
    allocated = apparent = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                allocated += st.st_blocks * 512
                apparent += st.st_size
    return allocated, apparent


def _breakdown(node: PrivateRabbit) -> dict[str, int]:
    """``rabbitmq-diagnostics memory_breakdown`` of the node, in bytes per category."""
    done = subprocess.run(
        [
            _diag(),
            *("-q", "-n", node.node, "memory_breakdown", "--unit", "bytes"),
            *("--formatter", "json"),
        ],
        env=node.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=node.base,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory_breakdown failed: {done.stderr}")
    data = json.loads(done.stdout)
    out: dict[str, int] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # {"bytes": N, "percentage": P}
            out[key] = int(value.get("bytes", 0))
        elif isinstance(value, int | float):
            out[key] = int(value)
    return out


def _diag() -> str:
    path = Path("/usr/lib/rabbitmq/bin/rabbitmq-diagnostics")
    return str(path) if path.exists() else (shutil.which("rabbitmq-diagnostics") or "")


def _memory(node: PrivateRabbit) -> Result:
    parts = _breakdown(node)
    total = parts.get("total") or sum(v for k, v in parts.items() if k != "total")
    quorum = parts.get("quorum_queue_procs", 0) + parts.get("quorum_ets", 0)
    return {
        "total": total,
        "quorum": quorum,
        "quorum_queue_procs": parts.get("quorum_queue_procs", 0),
        "quorum_ets": parts.get("quorum_ets", 0),
        "binary": parts.get("binary", 0),
        "beam_rss": rss_kb(node.pid) * 1024 if node.pid else 0,
        "breakdown": parts,
    }


def _snapshot(node: PrivateRabbit) -> Result:
    allocated, apparent = _disk(node.base / "mnesia")
    quorum_alloc, quorum_apparent = _disk(node.base / "mnesia" / node.node / "quorum")
    return {
        "memory": _memory(node),
        "disk_allocated": allocated,
        "disk_apparent": apparent,
        "quorum_dir_allocated": quorum_alloc,
        "quorum_dir_apparent": quorum_apparent,
    }


def _fake_event(run: str, i: int) -> dict[str, Any]:
    tracking = f"{run}-{i}"
    return {
        "origin": "mms_mt",
        "family": "delivery",
        "tracking_id": tracking,
        "event_id": hashlib.sha256(tracking.encode()).hexdigest(),
    }


async def _publish_timers(url: str, ns: str, n: int, window: int) -> Result:
    names = Names(ns)
    queue = names.waiting(TIMEOUT)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_timers(channel, names, TIMEOUT)
        exchange = channel.default_exchange
        run = f"t{os.getpid():x}"
        sample = arm(_fake_event(run, 0), TIMEOUT)
        nacked = 0
        started = time.monotonic()
        for first in range(0, n, window):
            confirms = await asyncio.gather(
                *(
                    exchange.publish(arm(_fake_event(run, i), TIMEOUT), routing_key=queue)
                    for i in range(first, min(n, first + window))
                )
            )
            nacked += sum(1 for c in confirms if not isinstance(c, Basic.Ack))
        seconds = time.monotonic() - started
        declared = await channel.declare_queue(queue, passive=True)
        count = int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()
    return {
        "published": n,
        "nacked": nacked,
        "in_queue": count,
        "seconds": round(seconds, 2),
        "per_s": round(n / seconds, 1) if seconds else 0.0,
        "window": window,
        "body_bytes": len(sample.body),
        "content_type": sample.content_type,
    }


async def _settle(node: PrivateRabbit, quiet_s: float, max_s: float) -> Result:
    """Wait until the memory total and the disk use stay put for ``quiet_s`` (at most
    ``max_s``), then one full-sweep GC (``rabbitmqctl force_gc``) and a last reading."""
    started = time.monotonic()
    last: Result | None = None
    stable_since = time.monotonic()
    while time.monotonic() - started < max_s:
        await asyncio.sleep(2.0)
        now = await asyncio.to_thread(_snapshot, node)
        if last is not None:
            mem_moved = abs(now["memory"]["total"] - last["memory"]["total"]) > 0.01 * max(
                1, last["memory"]["total"]
            )
            disk_moved = now["disk_allocated"] != last["disk_allocated"]
            if mem_moved or disk_moved:
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= quiet_s:
                break
        last = now
    settled = await asyncio.to_thread(_snapshot, node)
    await asyncio.to_thread(node.ctl, "force_gc")
    await asyncio.sleep(2.0)
    after_gc = await asyncio.to_thread(_snapshot, node)
    return {
        "settle_seconds": round(time.monotonic() - started, 1),
        "settled": settled,
        "after_gc": after_gc,
    }


def _per_timer(before: Result, after: Result, n: int) -> Result:
    def per(a: int, b: int) -> float:
        return round((b - a) / n, 1)

    mb, ma = before["memory"], after["memory"]
    return {
        "memory_total": per(mb["total"], ma["total"]),
        "memory_quorum": per(mb["quorum"], ma["quorum"]),
        "memory_quorum_queue_procs": per(mb["quorum_queue_procs"], ma["quorum_queue_procs"]),
        "memory_quorum_ets": per(mb["quorum_ets"], ma["quorum_ets"]),
        "memory_binary": per(mb["binary"], ma["binary"]),
        "beam_rss": per(mb["beam_rss"], ma["beam_rss"]),
        "disk_allocated": per(before["disk_allocated"], after["disk_allocated"]),
        "disk_apparent": per(before["disk_apparent"], after["disk_apparent"]),
    }


async def measure_pending(n: int, window: int, settle_quiet: float, keep: bool) -> Result:
    base = Path(tempfile.mkdtemp(prefix="pbtimers-"))
    node = PrivateRabbit(base)
    say(f"pending: private RabbitMQ node {node.node} on port {node.port}, data in {base}")
    try:
        await asyncio.to_thread(node.start)
        ns = "bench-timers"
        connection = await aio_pika.connect(node.url)
        try:  # the queues exist, empty, in "before"
            await topology.declare_timers(await connection.channel(), Names(ns), TIMEOUT)
        finally:
            await connection.close()
        await asyncio.sleep(5.0)
        before = await asyncio.to_thread(_snapshot, node)
        say(f"  before: memory {before['memory']['total'] / MIB:,.1f} MiB")
        published = await _publish_timers(node.url, ns, n, window)
        say(
            f"  published {n:,} timers in {published['seconds']:.1f} s "
            f"({published['per_s']:,.0f}/s, {published['nacked']} nacked); "
            f"{published['in_queue']:,} in the queue"
        )
        settled = await _settle(node, settle_quiet, 300.0)
        after = settled["settled"]
        res: Result = {
            "timers": n,
            "timeout_seconds": TIMEOUT,
            "queue": Names(ns).waiting(TIMEOUT),
            "rabbitmq": _rabbit_version(node),
            "publish": published,
            "settle_seconds": settled["settle_seconds"],
            "before": before,
            "after": after,
            "after_gc": settled["after_gc"],
            "per_timer": _per_timer(before, after, n),
            "per_timer_after_gc": _per_timer(before, settled["after_gc"], n),
        }
        per = res["per_timer"]
        say(
            f"  per pending timer: memory {per['memory_total']:.0f} B total "
            f"(quorum {per['memory_quorum']:.0f} B: procs {per['memory_quorum_queue_procs']:.0f}, "
            f"ets {per['memory_quorum_ets']:.0f}), disk {per['disk_allocated']:.0f} B"
        )
        return res
    finally:
        await asyncio.to_thread(node.stop)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _rabbit_version(node: PrivateRabbit) -> str:
    done = node.ctl("version")
    return done.stdout.strip()


# ---------------------------------------------------------------- worker CPU per event

_XML = (
    "<postback>\n"
    "    <origin>MMS_MT</origin>\n"
    "    <code>{code}</code>\n"
    "    <sent-as>MMS</sent-as>\n"
    "    <status>{status}</status>\n"
    "    <mms-id>{n}</mms-id>\n"
    "    <from>28444</from>\n"
    "    <to>12399471613</to>\n"
    "{tracking_xml}"
    "    <operator-id>31003</operator-id>\n"
    "    <timestamp>2014-06-07T07:27:34-05:00</timestamp>\n"
    "    <handset>moto17c</handset>\n"
    "</postback>\n"
)
_JSON = (
    '{{"origin": "MMS_MT", "code": "{code}", "sent-as": "MMS", "status": "{status}", '
    '"status-details": "Message {status}", "to": "17745550001", "from": "18885551234", '
    '"timestamp": "2026-04-24T18:31:10Z", {tracking_json}'
    '"client-reference": "send-{n}", "mms-id": "{n}", "handset": "Apple iPhone"}}'
)
_CODES = {"N101": ("Message Sent", "Sent"), "N102": ("Message Sent/Delivered", "Delivered")}


def postback(run: str, i: int, code: str, tracking: bool) -> tuple[str, bytes]:
    """Postback ``code`` of message ``i``: XML for even ``i``, JSON for odd; (format, body)."""
    xml_status, json_status = _CODES[code]
    if i % 2 == 0:
        line = f"    <tracking-id>{run}-{i}</tracking-id>\n" if tracking else ""
        body = _XML.format(code=code, status=xml_status, n=i, tracking_xml=line)
        return "xml", body.encode()
    field = f'"tracking-id": "{run}-{i}", ' if tracking else ""
    return "json", _JSON.format(code=code, status=json_status, n=i, tracking_json=field).encode()


async def prefill_intake(broker: Broker, ns: str, n: int, batch: int, tracking: bool) -> int:
    """``n`` postbacks into ``NS.intake`` as the receiver writes them (envelopes of ``batch``
    records): N101 of messages 0..n/2-1, then N102 of the same; the intake messages."""
    run = f"c{os.getpid():x}{int(time.time()) % 100000}"
    half = n // 2
    order = [("N101", i) for i in range(half)] + [("N102", i) for i in range(n - half)]
    records = []
    for k, (code, i) in enumerate(order):
        fmt, body = postback(run, i, code, tracking)
        records.append(envelope.Record(f"{run}-p{k}", received_at_now(), fmt, None, body))
    channel = await (await broker.connection()).channel(publisher_confirms=True)
    try:
        exchange = channel.default_exchange
        messages = [records[k : k + batch] for k in range(0, len(records), batch)]
        for first in range(0, len(messages), 200):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            envelope.pack(group),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            content_type=envelope.CONTENT_TYPE,
                            message_id=f"{run}-m{first + j}",
                            headers={"x-postbacks": len(group)},
                        ),
                        routing_key=Names(ns).intake,
                        mandatory=True,
                    )
                    for j, group in enumerate(messages[first : first + 200])
                )
            )
    finally:
        await channel.close()
    return len(messages)


def _ticks(pid: int) -> int:
    """utime+stime of ``pid`` itself (the worker is one process)."""
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


@contextlib.asynccontextmanager
async def _namespace(cfg: Config, broker: Broker, label: str) -> AsyncIterator[str]:
    ns = f"bench-{label}-{os.urandom(3).hex()}"
    say(f"namespace {ns}")
    names = Names(ns)
    try:
        yield ns
    finally:
        # Every NS.* queue: `postbacks topology` runs with bench.phases' env (its own
        # DLR_TIMEOUT), so it may declare another NS.waiting-Ns than the worker's.
        extra = [
            names.timers,
            names.waiting(TIMEOUT),
            names.history,
            *list_queues_with_prefix(f"{ns}."),
        ]
        with contextlib.suppress(Exception):
            await broker.delete_namespace(ns, extra_queues=extra)
        with contextlib.suppress(Exception):
            await delete_redis_keys(cfg.redis_url, ns)


async def _quiet(wait_s: float, pct: float = 10.0) -> float:
    """Wait up to ``wait_s`` for the machine to be under ``pct`` % busy; the last reading."""
    deadline = time.monotonic() + wait_s
    busy = await machine_busy(1.0)
    while busy > pct and time.monotonic() < deadline:
        busy = await machine_busy(1.0)
    if busy > pct:
        say(f"  warning: the machine is {busy:.0f}% busy before the drain")
    return busy


async def drain(
    cfg: Config, broker: Broker, lifecycles: bool, batch: int, quiet_s: float
) -> Result:
    n = cfg.drain_postbacks
    label = "life-on" if lifecycles else "life-off"
    async with _namespace(cfg, broker, label) as ns:
        sub = await project_topology(cfg, broker, ns)
        messages = await prefill_intake(broker, ns, n, batch, tracking=lifecycles)
        intake = await broker.count(f"{ns}.intake")
        await wait_port_free(cfg.metrics_port)
        busy = await _quiet(quiet_s)
        proc = ManagedProcess(
            f"postbacks work ({label})",
            [cfg.postbacks, "work"],
            cpu=cfg.server_cpu,
            env=_env(cfg, ns),
            log_name=f"{cfg.log_prefix}-{ns}-work",
        )
        try:
            noise = NoiseMeter()
            services0 = service_ticks()
            t_launch = time.time()
            ticks: list[tuple[float, int]] = []
            sampler = Sampler(broker, sub, interval=0.1)

            async def sample_ticks() -> None:
                while True:
                    with contextlib.suppress(OSError):
                        ticks.append((time.time(), _ticks(proc.pid)))
                    await asyncio.sleep(0.05)

            ticker = asyncio.create_task(sample_ticks())
            sampler.start()
            try:
                deadline = time.monotonic() + 600
                while (await broker.count(sub) or 0) < n and time.monotonic() < deadline:
                    if not proc.alive():
                        raise RuntimeError(f"worker exited:\n{proc.log_tail()}")
                    await asyncio.sleep(0.1)
            finally:
                await sampler.stop()
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            end_ticks = _ticks(proc.pid)
            spent = time.time() - t_launch
            services = service_ticks() - services0
            others = noise.others_pct()
            final = await broker.count(sub) or 0
            waiting = await broker.count(Names(ns).waiting(TIMEOUT)) or 0
            await wait_http_ok(proc, cfg.metrics_port, "/healthz", timeout=10)
        finally:
            await proc.astop()
    samples = sampler.samples
    t_end = next((t for t, c in samples if c >= final), samples[-1][0])
    t0, c0 = next(((t, c) for t, c in samples if c > 0), (t_end, final))
    # Worker CPU at those two moments (the nearest tick reading at or before each).
    tick0 = max((k for t, k in ticks if t <= t0), default=0)
    tick1 = max((k for t, k in ticks if t <= t_end), default=end_ticks)
    events = final - c0
    # The same over the first and the second half of those events: does the cost drift?
    t_mid = next((t for t, c in samples if c >= c0 + events // 2), t_end)
    c_mid = next((c for t, c in samples if t >= t_mid), final)
    tick_mid = max((k for t, k in ticks if t <= t_mid), default=tick0)
    halves = [
        round(1e6 * (b - a) / TCK / (d - c), 1) if d > c else None
        for a, b, c, d in ((tick0, tick_mid, c0, c_mid), (tick_mid, tick1, c_mid, final))
    ]
    seconds = t_end - t0
    cpu = (tick1 - tick0) / TCK
    res: Result = {
        "lifecycles": lifecycles,
        "postbacks": n,
        "intake_messages": intake,
        "records_per_message": batch,
        "prefill_messages": messages,
        "events": final,
        "timers_armed": waiting,
        "events_per_s": round(events / seconds, 1) if seconds > 0 else 0.0,
        "seconds": round(seconds, 3),
        "events_measured": events,
        "worker_cpu_s": round(cpu, 2),
        "worker_cpu_us_per_event": round(1e6 * cpu / events, 1) if events else None,
        "worker_cpu_us_per_event_halves": halves,
        "worker_cpu_pct_of_core": round(100 * cpu / seconds, 1) if seconds > 0 else 0.0,
        "worker_cpu_s_from_launch": round(end_ticks / TCK, 2),
        "worker_startup_cpu_s": round(tick0 / TCK, 2),
        "broker_redis_cpu_us_per_event": round(1e6 * services / TCK / final, 1) if final else None,
        "seconds_from_launch": round(spent, 2),
        "others_cpu_pct": others,
        "machine_busy_pct_before": busy,
    }
    say(
        f"  lifecycles {'on ' if lifecycles else 'off'}: {final:,}/{n:,} events, "
        f"{res['events_per_s']:,.0f} events/s, worker {res['worker_cpu_us_per_event']} µs "
        f"CPU/event (halves {halves}; {res['worker_cpu_pct_of_core']}% of a core), "
        f"timers armed {waiting:,}, "
        f"RabbitMQ+Redis {res['broker_redis_cpu_us_per_event']} µs/event, "
        f"others' {others:.0f}%"
    )
    if final != n:
        raise RuntimeError(f"{label}: {final} events of {n}")
    return res


def _env(cfg: Config, ns: str) -> dict[str, str]:
    env = project_env(cfg, ns)
    for variable in ("DLR_TIMEOUT", "HISTORY_MAX_AGE", "HISTORY_MAX_BYTES", "LOG_LEVEL"):
        env.pop(variable, None)
    return env


async def measure_cpu(cfg: Config, repeat: int, batch: int, quiet_s: float) -> Result:
    say(
        f"cpu: {cfg.drain_postbacks:,} queued postbacks drained by one postbacks work on "
        f"core {cfg.server_cpu}, lifecycles on and off, {repeat} run(s) each, alternating"
    )
    broker = Broker(cfg.amqp_url)
    runs: dict[str, list[Result]] = {"on": [], "off": []}
    try:
        for _ in range(repeat):
            for key in ("on", "off"):
                runs[key].append(await drain(cfg, broker, key == "on", batch, quiet_s))
    finally:
        await broker.close()

    def best(done: list[Result]) -> Result:
        return min(done, key=lambda r: float(r["worker_cpu_us_per_event"] or 1e9))

    on, off = best(runs["on"]), best(runs["off"])
    extra = float(on["worker_cpu_us_per_event"]) - float(off["worker_cpu_us_per_event"])
    return {
        "on": on,
        "off": off,
        "runs": runs,
        "lifecycle_cpu_us_per_event": round(extra, 1),
        "ratio_on_off": round(
            float(on["worker_cpu_us_per_event"]) / float(off["worker_cpu_us_per_event"]), 2
        ),
    }


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.timers", description=__doc__)
    ap.add_argument("--only", default="pending,cpu", help="comma-separated: pending,cpu")
    ap.add_argument("--timers", type=int, default=1_000_000, help="pending timers published")
    ap.add_argument("--window", type=int, default=2000, help="publishes awaited together")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds memory/disk stay put")
    ap.add_argument("--keep", action="store_true", help="keep the private node's directory")
    ap.add_argument("--drain-postbacks", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=32, help="postbacks per intake message")
    ap.add_argument("--repeat", type=int, default=2, help="drains of each kind, best kept")
    ap.add_argument(
        "--wait-quiet", type=float, default=60.0, help="seconds to wait for a quiet machine"
    )
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--postbacks", default=str(ROOT / ".venv" / "bin" / "postbacks"))
    ap.add_argument("--json", default=str(RESULTS_DIR / "timers.json"))
    return ap.parse_args(argv)


async def amain(args: argparse.Namespace) -> Result:
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    out: Result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count()}
    if "pending" in only:
        out["pending"] = await measure_pending(args.timers, args.window, args.settle, args.keep)
    if "cpu" in only:
        cfg = Config(
            postbacks=args.postbacks,
            amqp_url=args.amqp_url,
            redis_url=args.redis_url,
            drain_postbacks=args.drain_postbacks,
            server_cpu=args.server_cpu,
            load_cpu=args.load_cpu,
            dedup_ttl=604800,  # DEDUP_TTL's default: DLR_TIMEOUT's default must be below it
        )
        out["cpu"] = await measure_cpu(cfg, args.repeat, args.batch, args.wait_quiet)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_self(args.load_cpu)
    try:
        result = asyncio.run(amain(args))
    finally:
        stop_all()
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    say(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
