"""The benchmark phases. Each returns a JSON-able dict; the report turns them into a table.

Placement on the 2-core machine: everything under test (the ceiling app, the baseline
receiver and worker, ``postbacks receive``/``run``/``work``) runs on ``server_cpu``; wrk,
the Python load generator and this orchestrator run on ``load_cpu``. RabbitMQ and Redis are
system services and float on both cores (as they would share a small host in production).
The drain phase's second worker is the one exception: two workers get one core each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import bodies
from bench import history as history_fill
from bench.broker import Broker, delete_redis_keys, wait_count
from bench.procs import (
    _TCK,
    ManagedProcess,
    NoiseMeter,
    cpu_capped,
    http_get,
    service_ticks,
    taskset_prefix,
    ticks_to_core_pct,
    tree_ticks,
    wait_http_ok,
    wait_port_free,
)
from bench.report import WORKER_VARIANTS, half_rate_detail
from bench.wrk import run_wrk

Result = dict[str, Any]
ROOT = str(Path(__file__).resolve().parent.parent)

# Variables of the contract that would change what is measured: never inherited.
_SCRUB = (
    "INGEST_BASIC_AUTH",
    "INGEST_ALLOW_FROM",
    "INGEST_SPOOL_DIR",
    "POSTBACKS_NAMESPACE",
    "HISTORY_MAX_AGE",
    "HISTORY_MAX_BYTES",
)


@dataclass
class Config:
    postbacks: str
    amqp_url: str
    redis_url: str | None
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 64
    repeat: int = 1
    wrk_threads: int = 1
    server_cpu: int = 0
    load_cpu: int = 1
    drain_postbacks: int = 100_000
    rss_postbacks: int = 1_000_000
    rss_warmup: int = 20_000
    rss_chunk: int = 50_000
    history_events: int = 100_000
    drain_cap: float = 0.5
    worker_postbacks: int = 50_000
    worker_formats: tuple[str, ...] = ("xml", "json")
    profile_dir: str | None = None  # py-spy profiles of postbacks work in the worker phase
    worker_variants: tuple[str, ...] = ("project", "baseline", "baseline_p1")
    e2e_warmup: int = 2_000
    dedup_ttl: int = 3600
    # Receipt timers armed as users run it, with a TTL the bench's DEDUP_TTL allows (the
    # default, 72 h, must stay below DEDUP_TTL); the namespace's queues go afterwards.
    dlr_timeout: int = 1800
    host: str = "127.0.0.1"
    ceiling_port: int = 18080
    baseline_port: int = 18081
    project_port: int = 18082
    metrics_port: int = 19101
    python: str = sys.executable
    verbose: bool = True
    log_prefix: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}/postbacks"


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- helpers


async def loadgen(
    cfg: Config,
    port: int,
    run_id: str,
    *,
    duration: float | None = None,
    requests: int | None = None,
    rate: float | None = None,
    start_n: int = 0,
    fmt: str = "mix",
) -> Result:
    """Run ``python -m bench.loadgen`` pinned to the load core; its JSON result."""
    argv = [
        *taskset_prefix(cfg.load_cpu),
        cfg.python,
        "-m",
        "bench.loadgen",
        "--url",
        cfg.url(port),
        "--run-id",
        run_id,
        "--start-n",
        str(start_n),
        "--connections",
        str(cfg.connections),
    ]
    if duration is not None:
        argv += ["--duration", f"{duration:g}"]
    if requests is not None:
        argv += ["--requests", str(requests)]
    if rate is not None:
        argv += ["--rate", f"{rate:.1f}"]
    if fmt != "mix":
        argv += ["--format", fmt]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.decode()[-2000:]}")
    result: Result = json.loads(out.decode().strip().splitlines()[-1])
    if err.strip():
        result["stderr"] = err.decode()[-1000:]
    return result


class Sampler:
    """Samples a queue's message count every ``interval`` s, as (wall time, count)."""

    def __init__(self, broker: Broker, queue: str, interval: float = 0.25) -> None:
        self.broker, self.queue, self.interval = broker, queue, interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        while not self._stop.is_set():
            count = await self.broker.count(self.queue) or 0
            self.samples.append((time.time(), count))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop between two samples (cancelling an AMQP call would close the channel)."""
        if self._task is not None:
            self._stop.set()
            await self._task

    def at(self, t: float) -> float:
        """Count at wall time ``t``, linearly interpolated between samples."""
        s = self.samples
        if not s:
            return 0.0
        if t <= s[0][0]:
            return float(s[0][1])
        for (t0, c0), (t1, c1) in itertools.pairwise(s):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return float(s[-1][1])


@contextlib.asynccontextmanager
async def namespace(cfg: Config, broker: Broker, phase: str) -> AsyncIterator[str]:
    """A fresh namespace, deleted afterwards (queues, exchanges, Redis dedup keys)."""
    ns = f"bench-{phase}-{secrets.token_hex(3)}"
    say(f"namespace {ns}")
    try:
        yield ns
    finally:
        with contextlib.suppress(Exception):
            # The receipt-timer queues too (lifecycles arm a timer per delivery lifecycle).
            timers = (f"{ns}.timers", f"{ns}.waiting-{cfg.dlr_timeout}s", f"{ns}.history")
            await broker.delete_namespace(ns, timers)
        with contextlib.suppress(Exception):
            await delete_redis_keys(cfg.redis_url, ns)


def project_env(cfg: Config, ns: str, *, metrics_port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(
        AMQP_URL=cfg.amqp_url,
        POSTBACKS_NAMESPACE=ns,
        INGEST_HOST=cfg.host,
        INGEST_PORT=str(cfg.project_port),
        WORKER_METRICS_PORT=str(metrics_port or cfg.metrics_port),
        DEDUP_TTL=str(cfg.dedup_ttl),
        DLR_TIMEOUT=str(cfg.dlr_timeout),
        PYTHONUNBUFFERED="1",
    )
    if cfg.redis_url:
        env["REDIS_URL"] = cfg.redis_url
    else:
        env.pop("REDIS_URL", None)
    return env


async def postbacks_cli(cfg: Config, ns: str, *args: str) -> None:
    """Run a short ``postbacks`` command (topology, subscribe); raise if it fails."""
    proc = await asyncio.create_subprocess_exec(
        cfg.postbacks,
        *args,
        env=project_env(cfg, ns),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"postbacks {' '.join(args)} exited {proc.returncode}: {out.decode()}")


async def project_topology(cfg: Config, broker: Broker, ns: str, subscribe: bool = True) -> str:
    """``postbacks topology`` and ``postbacks subscribe bench '#'``; the events queue name."""
    await postbacks_cli(cfg, ns, "topology")
    sub = f"{ns}.sub.bench"
    if subscribe:
        await postbacks_cli(cfg, ns, "subscribe", "bench", "#")
        if await broker.count(sub) is None:
            raise RuntimeError(f"postbacks subscribe did not declare {sub}")
    return sub


async def start_project(
    cfg: Config,
    command: str,
    ns: str,
    cpu: int,
    *,
    metrics_port: int | None = None,
    tag: str = "",
) -> ManagedProcess:
    """Start ``postbacks COMMAND`` pinned to ``cpu`` and wait until it is ready."""
    mport = metrics_port or cfg.metrics_port
    if command in ("receive", "run"):
        await wait_port_free(cfg.project_port)
    if command in ("work", "run"):
        await wait_port_free(mport)
    proc = ManagedProcess(
        f"postbacks {command}",
        [cfg.postbacks, command],
        cpu=cpu,
        env=project_env(cfg, ns, metrics_port=mport),
        log_name=f"{cfg.log_prefix}-{ns}-{command}{tag}",
    )
    try:
        if command in ("receive", "run"):
            await wait_http_ok(proc, cfg.project_port, "/readyz")
        if command in ("work", "run"):
            await wait_http_ok(proc, mport, "/healthz")
    except BaseException:
        await proc.astop()
        raise
    return proc


async def start_bench_app(cfg: Config, module: str, port: int, *args: str) -> ManagedProcess:
    await wait_port_free(port)
    proc = ManagedProcess(
        module,
        [cfg.python, "-m", module, "--host", cfg.host, "--port", str(port), *args],
        cpu=cfg.server_cpu,
        env={**os.environ, "PYTHONPATH": ROOT},
        log_name=f"{cfg.log_prefix}-{module}",
    )
    try:
        await wait_http_ok(proc, port, "/healthz", timeout=30)
    except BaseException:
        await proc.astop()
        raise
    return proc


def _summary(r: Result) -> Result:
    return {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "others_cpu_pct")}


async def max_rate(cfg: Config, port: int) -> Result:
    """wrk for ``cfg.warmup`` s (discarded), then ``cfg.repeat`` runs of ``cfg.duration`` s;
    the best (highest req/s) is kept: noise from elsewhere only ever makes a run worse."""
    if cfg.warmup > 0:
        await run_wrk(
            cfg.url(port),
            duration=cfg.warmup,
            connections=cfg.connections,
            threads=cfg.wrk_threads,
            cpu=cfg.load_cpu,
            run_id=bodies.new_run_id(),
        )
    runs: list[Result] = []
    for _ in range(max(1, cfg.repeat)):
        noise = NoiseMeter()
        res = await run_wrk(
            cfg.url(port),
            duration=cfg.duration,
            connections=cfg.connections,
            threads=cfg.wrk_threads,
            cpu=cfg.load_cpu,
            run_id=bodies.new_run_id(),
        )
        out = res.as_dict()
        out["others_cpu_pct"] = noise.others_pct()
        say(
            f"  wrk: {res.rps:,.0f} req/s  p50 {res.p50_ms:.2f} ms  p99 {res.p99_ms:.2f} ms"
            f"  (others' CPU {out['others_cpu_pct']:.0f}%)"
        )
        runs.append(out)
    best = dict(max(runs, key=lambda r: float(r["rps"])))
    if len(runs) > 1:
        best["runs"] = [
            {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "others_cpu_pct")} for r in runs
        ]
    return best


_CONFIRM_BUCKET = re.compile(
    rb'^postbacks_intake_confirm_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M
)


async def confirm_buckets(cfg: Config, port: int) -> dict[float, float] | None:
    """The receiver's ``postbacks_intake_confirm_seconds`` histogram (cumulative, by upper
    bound), or None when it cannot be read."""
    got = await http_get(cfg.host, port, "/metrics")
    if got is None or got[0] != 200:
        return None
    return {float(le): float(n) for le, n in _CONFIRM_BUCKET.findall(got[1])}


def confirm_summary(before: dict[float, float], after: dict[float, float]) -> Result:
    """What the broker's confirms looked like between two readings: how many, how many took
    over 10 ms, and the bucket bound the slowest stayed under."""
    delta = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    within_10ms = max((n for le, n in delta.items() if le <= 0.010), default=0.0)
    slowest = next((le for le, n in delta.items() if n >= total), float("inf"))
    return {
        "confirms": int(total),
        "confirms_over_10ms": int(total - within_10ms),
        "slowest_confirm_under_ms": None if slowest == float("inf") else slowest * 1000,
    }


async def half_rate(cfg: Config, port: int, max_rps: float, *, confirms: bool = False) -> Result:
    """Open-loop latency at half the maximum rate (bench.loadgen, fixed rate); with
    ``cfg.repeat`` > 1 the run with the lowest p99 is kept. With ``confirms`` (the project's
    receiver) each run also reports the broker's confirm times, read from its /metrics."""
    rate = max_rps / 2
    runs: list[Result] = []
    for _ in range(max(1, cfg.repeat)):
        before = await confirm_buckets(cfg, port) if confirms else None
        noise = NoiseMeter()
        res = await loadgen(cfg, port, bodies.new_run_id(), duration=cfg.duration, rate=rate)
        res["others_cpu_pct"] = noise.others_pct()
        after = await confirm_buckets(cfg, port) if before is not None else None
        if before is not None and after is not None:
            res["broker_confirms"] = confirm_summary(before, after)
        detail = half_rate_detail(res)
        say(
            f"  fixed {rate:,.0f} req/s: got {res['rps']:,.0f}  p50 {res['p50_ms']:.2f} ms"
            f"  p99 {res['p99_ms']:.2f} ms  (from write: p99 {res.get('service_p99_ms', 0):.2f}"
            f" ms; non-200/unanswered: "
            f"{res['answered'] - res['ok']}/{res['unanswered']}; others' CPU "
            f"{res['others_cpu_pct']:.0f}%{'; ' + detail if detail else ''})"
        )
        runs.append(res)
    best = dict(min(runs, key=lambda r: float(r["p99_ms"])))
    if len(runs) > 1:
        keys = (
            "rps",
            "p50_ms",
            "p99_ms",
            "service_p99_ms",
            "generator_lag_p99_ms",
            "generator_lag_max_ms",
            "connection_wait_p99_ms",
            "connection_wait_max_ms",
            "others_cpu_pct",
            "broker_confirms",
        )
        best["runs"] = [{k: r[k] for k in keys if k in r} for r in runs]
    return best


async def pipeline(
    cfg: Config,
    broker: Broker,
    port: int,
    events_queue: str,
    *,
    drain_timeout: float,
    stall_s: float = 20.0,
) -> Result:
    """Closed-loop load for ``cfg.duration`` s while counting events; then wait for the
    backlog. ``events_per_s`` is the rate events arrived while the load ran."""
    c0 = await broker.count(events_queue) or 0
    sampler = Sampler(broker, events_queue)
    sampler.start()
    noise = NoiseMeter()
    try:
        lg = await loadgen(cfg, port, bodies.new_run_id(), duration=cfg.duration)
        lg["others_cpu_pct"] = noise.others_pct()
        expected = c0 + lg["ok"]
        waited = await wait_count(
            broker, events_queue, expected, stall_s=stall_s, poll_s=0.1, timeout_s=drain_timeout
        )
        final = waited.count
        t_done = time.time()
        sampler.samples.append((t_done, final))
    finally:
        await sampler.stop()
    window = lg["t_issue_end"] - lg["t_start"]
    in_window = sampler.at(lg["t_issue_end"]) - sampler.at(lg["t_start"])
    # When did the last event arrive (first sample showing the final count)?
    t_last = next((t for t, c in sampler.samples if c >= final), t_done)
    drained = final >= expected
    res: Result = {
        "http": lg,
        "ok": lg["ok"],
        "non_200": lg["answered"] - lg["ok"],
        "unanswered": lg["unanswered"],
        "events": final - c0,
        # Every event of the burst over the time from its first request to its last event.
        "events_per_s": round((final - c0) / max(1e-9, t_last - lg["t_start"]), 1),
        # Events that came out while the load ran (receiver and worker competing).
        "events_per_s_under_load": round(in_window / window, 1) if window > 0 else 0.0,
        "backlog_drain_s": round(max(0.0, t_last - lg["t_end"]), 2),
        "drained": drained,
        # Lost only when the count stopped moving short of the 200s; a backlog still being
        # worked off when the wait ends is "not drained", not lost.
        "lost": expected - final if waited.reason == "stalled" else (0 if drained else None),
        "extra": max(0, final - expected),
        "wait": waited.reason,
        "others_cpu_pct": noise.others_pct(),
    }
    if not drained and waited.reason != "stalled":
        res["lost_note"] = f"backlog of {expected - final} not drained within {drain_timeout:g} s"
    say(
        f"  http {lg['rps']:,.0f} req/s p50 {lg['p50_ms']:.2f} ms p99 {lg['p99_ms']:.2f} ms;"
        f" events {res['events_per_s']:,.0f}/s ({res['events_per_s_under_load']:,.0f}/s under"
        f" load); {res['events']}/{lg['ok']} events"
        f" for 200s; drained={drained}"
    )
    return res


# ---------------------------------------------------------------- phases


async def phase_ceiling(cfg: Config, broker: Broker) -> Result:
    say("ceiling: bare aiohttp app (bench.ceiling)")
    proc = await start_bench_app(cfg, "bench.ceiling", cfg.ceiling_port)
    try:
        res: Result = {"wrk": await max_rate(cfg, cfg.ceiling_port)}
        lg = await loadgen(cfg, cfg.ceiling_port, bodies.new_run_id(), duration=cfg.duration)
        say(f"  loadgen (closed loop, for scale): {lg['rps']:,.0f} req/s")
        res["loadgen_closed"] = lg
        res["half_rate"] = await half_rate(cfg, cfg.ceiling_port, res["wrk"]["rps"])
        return res
    finally:
        await proc.astop()


async def phase_baseline(cfg: Config, broker: Broker) -> Result:
    say("baseline: straightforward receiver + worker (bench.baseline_*)")
    async with namespace(cfg, broker, "base") as ns:
        sub = await broker.declare_baseline(ns)
        recv = await start_bench_app(
            cfg,
            "bench.baseline_receiver",
            cfg.baseline_port,
            "--namespace",
            ns,
            "--amqp-url",
            cfg.amqp_url,
        )
        worker: ManagedProcess | None = None
        try:
            res: Result = {"receiver": await max_rate(cfg, cfg.baseline_port)}
            res["intake_after_wrk"] = await broker.purge(f"{ns}.intake")
            res["receiver_half_rate"] = await half_rate(
                cfg, cfg.baseline_port, res["receiver"]["rps"]
            )
            await broker.purge(f"{ns}.intake")
            await broker.purge(sub)
            worker = ManagedProcess(
                "bench.baseline_worker",
                [
                    cfg.python,
                    "-m",
                    "bench.baseline_worker",
                    "--namespace",
                    ns,
                    "--amqp-url",
                    cfg.amqp_url,
                ],
                cpu=cfg.server_cpu,
                env={**os.environ, "PYTHONPATH": ROOT},
                log_name=f"{cfg.log_prefix}-bench.baseline_worker",
            )
            warm = await loadgen(cfg, cfg.baseline_port, bodies.new_run_id(), requests=500)
            got = (await wait_count(broker, sub, warm["ok"], stall_s=30)).count
            if got < warm["ok"] or not worker.alive():
                raise RuntimeError(
                    f"baseline worker did not process the warm-up ({got}/{warm['ok']}):\n"
                    + worker.log_tail()
                )
            say("  pipeline (baseline receiver + baseline worker, both on the server core)")
            res["pipeline"] = await pipeline(
                cfg, broker, cfg.baseline_port, sub, drain_timeout=max(60.0, 6 * cfg.duration)
            )
            return res
        finally:
            if worker is not None:
                await worker.astop()
            await recv.astop()


async def phase_receiver(cfg: Config, broker: Broker) -> Result:
    say("receiver: postbacks receive alone")
    async with namespace(cfg, broker, "recv") as ns:
        await project_topology(cfg, broker, ns, subscribe=False)
        proc = await start_project(cfg, "receive", ns, cfg.server_cpu)
        try:
            res: Result = {"wrk": await max_rate(cfg, cfg.project_port)}
            res["intake_after_wrk"] = await broker.purge(f"{ns}.intake")
            res["half_rate"] = await half_rate(
                cfg, cfg.project_port, res["wrk"]["rps"], confirms=True
            )
            res["rss_kb"] = proc.rss_kb()
            return res
        finally:
            await proc.astop()


async def phase_e2e(cfg: Config, broker: Broker) -> Result:
    say("e2e: postbacks run (receiver + worker), events counted in NS.sub.bench ('#')")
    async with namespace(cfg, broker, "e2e") as ns:
        sub = await project_topology(cfg, broker, ns)
        proc = await start_project(cfg, "run", ns, cfg.server_cpu)
        try:
            warm = await loadgen(
                cfg, cfg.project_port, bodies.new_run_id(), requests=cfg.e2e_warmup
            )
            got = (await wait_count(broker, sub, warm["ok"], stall_s=30)).count
            if got != warm["ok"]:
                say(f"  warm-up: {got} events for {warm['ok']} postbacks answered 200")
            res: Result = await pipeline(cfg, broker, cfg.project_port, sub, drain_timeout=600.0)
            res["warmup"] = {"ok": warm["ok"], "events": got}
            if res["lost"] is not None:
                res["lost"] += max(0, warm["ok"] - got)
            res["quarantine"] = await broker.count(f"{ns}.quarantine")
            res["unrouted"] = await broker.count(f"{ns}.unrouted")
            res["intake_left"] = await broker.count(f"{ns}.intake")
            res["rss_kb"] = proc.rss_kb()
            return res
        finally:
            await proc.astop()


async def prefill(cfg: Config, broker: Broker, ns: str, n: int) -> Result:
    """POST ``n`` postbacks through ``postbacks receive`` with no worker running."""
    recv = await start_project(cfg, "receive", ns, cfg.server_cpu)
    try:
        lg = await loadgen(cfg, cfg.project_port, bodies.new_run_id(), requests=n)
    finally:
        await recv.astop()
    say(f"  prefilled: {lg['ok']}/{n} answered 200 at {lg['rps']:,.0f} req/s")
    if lg["ok"] != n:
        raise RuntimeError(f"prefill: only {lg['ok']} of {n} postbacks answered 200: {lg}")
    return lg


async def drain_once(cfg: Config, broker: Broker, workers: int, cap: float | None = None) -> Result:
    """Pre-fill ``cfg.drain_postbacks`` postbacks, then time ``workers`` workers draining
    them. With ``cap``, each worker is held to that share of a core (its own cgroup), which
    leaves the broker CPU to spare on this small machine."""
    n = cfg.drain_postbacks
    label = f"drain{workers}" + ("c" if cap else "")
    async with namespace(cfg, broker, label) as ns:
        sub = await project_topology(cfg, broker, ns)
        lg = await prefill(cfg, broker, ns, n)
        intake_msgs = await broker.count(f"{ns}.intake")
        cpus = [cfg.server_cpu, cfg.load_cpu]
        procs: list[ManagedProcess] = []
        with contextlib.ExitStack() as groups:
            try:
                noise = NoiseMeter()
                services0 = service_ticks()
                t_launch = time.time()
                for i in range(workers):
                    group = None
                    if cap:
                        group = groups.enter_context(cpu_capped(f"pbbench-{ns}-{i}", cap))
                        if group is None:
                            raise RuntimeError("no cpu cgroup here: run with --drain-cap 0")
                    procs.append(
                        ManagedProcess(
                            f"postbacks work #{i + 1}",
                            [cfg.postbacks, "work"],
                            cpu=cpus[i % len(cpus)],
                            env=project_env(cfg, ns, metrics_port=cfg.metrics_port + i),
                            log_name=f"{cfg.log_prefix}-{ns}-work{i + 1}",
                            cgroup=group,
                        )
                    )
                sampler = Sampler(broker, sub, interval=0.1)
                sampler.start()
                try:
                    final = (await wait_count(broker, sub, n, stall_s=30, poll_s=0.1)).count
                finally:
                    await sampler.stop()
                t_end = next((t for t, c in sampler.samples if c >= final), time.time())
                first = next(((t, c) for t, c in sampler.samples if c > 0), (t_end, final))
                dead = [p.name for p in procs if not p.alive()]
                others = noise.others_pct()
                # Where the CPU went, in % of one core over the time from launch.
                spent = time.time() - t_launch
                worker_cpu = [ticks_to_core_pct(tree_ticks(p.pid), spent) for p in procs]
                services_cpu = ticks_to_core_pct(service_ticks() - services0, spent)
            finally:
                for p in procs:
                    await p.astop()
        rate = (final - first[1]) / (t_end - first[0]) if t_end > first[0] else 0.0
        res: Result = {
            "workers": workers,
            "cpus": [cpus[i % len(cpus)] for i in range(workers)],
            "cap_cores_per_worker": cap,
            "postbacks": n,
            "prefill_rps": lg["rps"],
            "intake_messages": intake_msgs,
            "events": final,
            "lost": n - final,
            "events_per_s": round(rate, 1),
            "seconds_from_first_event": round(t_end - first[0], 3),
            "seconds_from_launch": round(t_end - t_launch, 3),
            "workers_died": dead,
            "others_cpu_pct": others,
            "worker_cpu_pct_of_core": worker_cpu,
            "broker_redis_cpu_pct_of_core": services_cpu,
        }
        capped = f", each capped to {cap:g} core" if cap else ""
        say(
            f"  {workers} worker(s){capped}: {final}/{n} events, {rate:,.0f} events/s "
            f"({res['seconds_from_launch']:.1f} s from launch; CPU % of a core: workers "
            f"{worker_cpu}, RabbitMQ+Redis {services_cpu}, others' {others:.0f}% of all)"
        )
        return res


async def phase_drain(cfg: Config, broker: Broker) -> Result:
    say(f"drain: {cfg.drain_postbacks:,} postbacks pre-filled, then 1 and 2 workers")
    variants: list[tuple[str, int, float | None]] = [("one", 1, None), ("two", 2, None)]
    if cfg.drain_cap > 0:
        variants += [("one_capped", 1, cfg.drain_cap), ("two_capped", 2, cfg.drain_cap)]
    runs: dict[str, list[Result]] = {key: [] for key, _, _ in variants}
    for _ in range(max(1, cfg.repeat)):  # alternate, so slow drifts hit both alike
        for key, workers, cap in variants:
            runs[key].append(await drain_once(cfg, broker, workers, cap))
    res: Result = {}
    for key, done in runs.items():
        res[key] = dict(max(done, key=lambda r: float(r["events_per_s"])))
        if len(done) > 1:
            res[key]["runs"] = [
                {k: r[k] for k in ("events_per_s", "lost", "others_cpu_pct")} for r in done
            ]
            # Lost counts in every run, not only in the best one.
            res[key]["lost"] = sum(int(r["lost"]) for r in done)
    return res


def worker_postbacks(cfg: Config, variant: str) -> int:
    """Postbacks queued for ``variant``: a fifth for the prefetch-1 baseline, which drains
    ten times slower than the others (its rate does not depend on the backlog's size)."""
    return (
        max(1000, cfg.worker_postbacks // 5) if variant == "baseline_p1" else cfg.worker_postbacks
    )


async def _worker_prefill(cfg: Config, broker: Broker, ns: str, variant: str, fmt: str) -> str:
    """Fill ``NS.intake`` with ``cfg.worker_postbacks`` postbacks of one format through the
    variant's own receiver (the project's envelopes, or one message per postback); the
    events queue the worker's output is counted in."""
    n = worker_postbacks(cfg, variant)
    if variant == "project":
        sub = await project_topology(cfg, broker, ns)
        recv = await start_project(cfg, "receive", ns, cfg.server_cpu)
        port = cfg.project_port
    else:
        sub = await broker.declare_baseline(ns)
        recv = await start_bench_app(
            cfg, "bench.baseline_receiver", cfg.baseline_port, "--namespace", ns,
            "--amqp-url", cfg.amqp_url,
        )  # fmt: skip
        port = cfg.baseline_port
    try:
        lg = await loadgen(cfg, port, bodies.new_run_id(), requests=n, fmt=fmt)
    finally:
        await recv.astop()
    if lg["ok"] != n:
        raise RuntimeError(f"prefill: only {lg['ok']} of {n} postbacks answered 200")
    return sub


async def worker_drain(cfg: Config, broker: Broker, variant: str, fmt: str) -> Result:
    """One worker of ``variant`` pinned to the server core drains ``cfg.worker_postbacks``
    queued postbacks of format ``fmt``. Events/s and the worker's CPU per event, both over
    the window from the first sample showing an event to the one showing the last (so
    neither start-up nor imports count); CPU from the worker's /proc/PID/stat."""
    n = worker_postbacks(cfg, variant)
    async with namespace(cfg, broker, f"w{fmt}-{variant.replace('_', '')}") as ns:
        sub = await _worker_prefill(cfg, broker, ns, variant, fmt)
        if variant == "project":
            argv = [cfg.postbacks, "work"]
            env = project_env(cfg, ns)
        else:
            argv = [cfg.python, "-m", "bench.baseline_worker", "--namespace", ns,
                    "--amqp-url", cfg.amqp_url]  # fmt: skip
            if variant == "baseline_p1":
                argv += ["--prefetch", "1", "--serial"]
            env = {**os.environ, "PYTHONPATH": ROOT}
        profile = None
        if cfg.profile_dir and variant == "project":
            profile = Path(cfg.profile_dir) / f"{cfg.log_prefix}-worker-{fmt}.txt"
            spy = str(Path(cfg.python).with_name("py-spy"))
            argv = [spy, "record", "-r", "200", "--nonblocking", "-f", "raw",
                    "-o", str(profile), "--", *argv]  # fmt: skip
        noise = NoiseMeter()
        proc = ManagedProcess(
            f"{variant} worker", argv, cpu=cfg.server_cpu, env=env,
            log_name=f"{cfg.log_prefix}-{ns}-worker",
        )  # fmt: skip
        samples: list[tuple[float, int, int]] = []  # (wall time, events, worker ticks)
        try:
            deadline = time.monotonic() + max(120.0, n / 200)
            last_move = time.monotonic()
            while time.monotonic() < deadline and proc.alive():
                count = await broker.count(sub) or 0
                samples.append((time.time(), count, tree_ticks(proc.pid)))
                if len(samples) > 1 and count != samples[-2][1]:
                    last_move = time.monotonic()
                if count >= n or (count > 0 and time.monotonic() - last_move > 20):
                    break
                await asyncio.sleep(0.1)
            others = noise.others_pct()
            alive = proc.alive()
            if not alive and (not samples or samples[-1][1] < n):
                raise RuntimeError(f"{variant} worker died:\n{proc.log_tail()}")
        finally:
            if profile is not None and proc.alive():
                # py-spy writes its file when interrupted, then stops the worker.
                proc.popen.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.popen.wait, 30)
            await proc.astop()
    final = samples[-1][1] if samples else 0
    t_end, c_end, k_end = next((s for s in samples if s[1] >= final), samples[-1])
    # The sample before the first event: its ticks are the worker's before it drained.
    i0 = next((i for i, s in enumerate(samples) if s[1] > 0), len(samples) - 1)
    t0, c0, k0 = samples[max(0, i0 - 1)]
    events = c_end - c0
    seconds = t_end - t0
    cpu_s = (k_end - k0) / _TCK
    res: Result = {
        "variant": variant,
        "format": fmt,
        "postbacks": n,
        "events": final,
        "lost": n - final,
        "events_per_s": round(events / seconds, 1) if seconds > 0 else 0.0,
        "cpu_us_per_event": round(1e6 * cpu_s / events, 1) if events else None,
        "cpu_pct_of_core": round(100 * cpu_s / seconds, 1) if seconds > 0 else None,
        "worker_alive": alive,
        "others_cpu_pct": others,
    }
    if profile is not None:
        res["profile"] = str(profile)  # python -m bench.profile FILE
    say(
        f"  {variant} {fmt}: {final}/{n} events, {res['events_per_s']:,.0f} events/s, "
        f"{res['cpu_us_per_event']} µs CPU/event ({res['cpu_pct_of_core']}% of a core; "
        f"others' {others:.0f}% of all)"
    )
    return res


async def phase_worker(cfg: Config, broker: Broker) -> Result:
    """The project's worker next to the baseline workers: a drain of queued postbacks of
    one format by one worker on the server core, XML and JSON apart."""
    say(f"worker: {cfg.worker_postbacks:,} queued postbacks, one worker, XML and JSON apart")
    # Ports of their own: another bench (bench.timers, say) may hold the usual ones.
    cfg = dataclasses.replace(cfg, project_port=18092, baseline_port=18091, metrics_port=19191)
    res: Result = {}
    for fmt in cfg.worker_formats:
        for key, _label in WORKER_VARIANTS:
            if key not in cfg.worker_variants:
                continue
            runs = [await worker_drain(cfg, broker, key, fmt) for _ in range(max(1, cfg.repeat))]
            best = dict(max(runs, key=lambda r: float(r["events_per_s"])))
            if len(runs) > 1:
                best["runs"] = [
                    {k: r[k] for k in ("events_per_s", "cpu_us_per_event", "lost")} for r in runs
                ]
                best["lost"] = sum(int(r["lost"]) for r in runs)
            res[f"{key}_{fmt}"] = best
    return res


async def phase_rss(cfg: Config, broker: Broker) -> Result:
    total = cfg.rss_postbacks
    say(f"rss: postbacks receive + postbacks work, {total:,} postbacks in chunks")
    async with namespace(cfg, broker, "rss") as ns:
        sub = await project_topology(cfg, broker, ns)
        recv = await start_project(cfg, "receive", ns, cfg.server_cpu)
        work: ManagedProcess | None = None
        try:
            work = await start_project(cfg, "work", ns, cfg.server_cpu)
            idle = {"receiver_kb": recv.rss_kb(), "worker_kb": work.rss_kb()}
            run_id = bodies.new_run_id()
            sent = events = lost = 0

            async def chunk(n: int) -> None:
                nonlocal sent, events, lost
                lg = await loadgen(cfg, cfg.project_port, run_id, requests=n, start_n=sent)
                sent += n
                await wait_count(broker, sub, lg["ok"], stall_s=30, poll_s=0.2)
                got = await broker.purge(sub)
                events += got
                lost += max(0, lg["ok"] - got)
                if lg["ok"] != n:
                    say(f"  chunk: only {lg['ok']} of {n} answered 200")

            await chunk(cfg.rss_warmup)
            before = {"receiver_kb": recv.rss_kb(), "worker_kb": work.rss_kb()}
            series: list[Result] = []
            done = 0
            t0 = time.time()
            noise = NoiseMeter()
            while done < total:
                n = min(cfg.rss_chunk, total - done)
                await chunk(n)
                done += n
                point = {
                    "postbacks": done,
                    "receiver_kb": recv.rss_kb(),
                    "worker_kb": work.rss_kb(),
                }
                series.append(point)
                say(
                    f"  {done:,}/{total:,}: receiver {point['receiver_kb'] / 1024:.1f} MB, "
                    f"worker {point['worker_kb'] / 1024:.1f} MB"
                )
                if not (recv.alive() and work.alive()):
                    raise RuntimeError("a project process died during the RSS run")
            elapsed = time.time() - t0
            others = noise.others_pct()
            after = {"receiver_kb": recv.rss_kb(), "worker_kb": work.rss_kb()}
        finally:
            if work is not None:
                await work.astop()
            await recv.astop()

    def mb(kb: int) -> float:
        return round(kb / 1024, 2)

    return {
        "postbacks": total,
        "warmup_postbacks": cfg.rss_warmup,
        "sent_including_warmup": sent,
        "events": events,
        "lost": lost,
        "seconds": round(elapsed, 1),
        "postbacks_per_s": round(total / elapsed, 1) if elapsed else 0.0,
        "idle_mb": {k: mb(v) for k, v in idle.items()},
        "before_mb": {k: mb(v) for k, v in before.items()},
        "after_mb": {k: mb(v) for k, v in after.items()},
        "receiver_growth_mb": mb(after["receiver_kb"] - before["receiver_kb"]),
        "worker_growth_mb": mb(after["worker_kb"] - before["worker_kb"]),
        "receiver_growth_from_idle_mb": mb(after["receiver_kb"] - idle["receiver_kb"]),
        "worker_growth_from_idle_mb": mb(after["worker_kb"] - idle["worker_kb"]),
        "others_cpu_pct": others,
        "series": series,
    }


async def phase_history(cfg: Config, broker: Broker) -> Result:
    """``cfg.history_events`` events appended to ``NS.history`` (published by this process as
    a worker publishes them), the stream's disk per event, then ``postbacks backfill bench
    --since T '#'`` on the server core into ``NS.sub.bench``, made afterwards. Events/s over
    the window from the first sample of ``NS.sub.bench`` showing an event to the one showing
    the last; the command's own time (start-up and its 1.5 s wait for the stream's end
    included) besides."""
    n = cfg.history_events
    say(f"history: {n:,} events appended to NS.history, then postbacks backfill of them all")
    async with namespace(cfg, broker, "history") as ns:
        history = f"{ns}.history"
        since = datetime.now(UTC) - timedelta(seconds=1)
        t0 = time.time()
        body_bytes = await history_fill.fill(cfg.amqp_url, ns, n)
        fill_s = time.time() - t0
        await asyncio.sleep(2)  # the last chunk written
        disk = history_fill.disk_bytes(history)
        sub = await project_topology(cfg, broker, ns)
        env = {**project_env(cfg, ns), "HISTORY_MAX_AGE": history_fill.MAX_AGE}
        argv = [cfg.postbacks, "backfill", "bench", "--since", since.isoformat(), "#"]
        noise = NoiseMeter()
        sampler = Sampler(broker, sub, interval=0.1)
        sampler.start()
        t_launch = time.time()
        proc = ManagedProcess(
            "postbacks backfill", argv, cpu=cfg.server_cpu, env=env,
            log_name=f"{cfg.log_prefix}-{ns}-backfill",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + max(120.0, n / 100)
            while proc.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            command_s = time.time() - t_launch
            others = noise.others_pct()
        finally:
            await sampler.stop()
            status = await proc.astop()
        output = proc.log_tail()
        if status != 0:
            raise RuntimeError(f"postbacks backfill exited {status}:\n{output}")
        final = await broker.count(sub) or 0
    found = re.search(r"read (\d+) event\(s\) of the history, delivered (\d+)", output)
    read, delivered = (int(found[1]), int(found[2])) if found else (None, None)
    t_end = next((t for t, c in sampler.samples if c >= final), time.time())
    first = next(((t, c) for t, c in sampler.samples if c > 0), (t_end, final))
    rate = (final - first[1]) / (t_end - first[0]) if t_end > first[0] else 0.0
    res: Result = {
        "events": n,
        "fill_events_per_s": round(n / fill_s, 1) if fill_s else None,
        "read": read,
        "delivered": delivered,
        "in_subscriber": final,
        "lost": n - final,
        "events_per_s": round(rate, 1),
        "command_seconds": round(command_s, 2),
        "command_events_per_s": round(final / command_s, 1) if command_s else None,
        "body_bytes_per_event": round(body_bytes / n, 1) if n else None,
        "disk_bytes": disk,
        "disk_bytes_per_event": round(disk / n, 1) if disk is not None and n else None,
        "disk_per_body_byte": round(disk / body_bytes, 3) if disk and body_bytes else None,
        "others_cpu_pct": others,
    }
    where = "not on this machine" if disk is None else f"{res['disk_bytes_per_event']:,} B/event"
    say(
        f"  backfill: {final:,}/{n:,} events in NS.sub.bench, {rate:,.0f} events/s "
        f"({command_s:.1f} s for the command); disk {where} for "
        f"{res['body_bytes_per_event']:,} B bodies; others' {others:.0f}% of all"
    )
    return res


PhaseFn = Callable[[Config, Broker], Awaitable[Result]]
PHASES: dict[str, PhaseFn] = {
    "ceiling": phase_ceiling,
    "baseline": phase_baseline,
    "receiver": phase_receiver,
    "e2e": phase_e2e,
    "drain": phase_drain,
    "worker": phase_worker,
    "rss": phase_rss,
    "history": phase_history,
}
PROJECT_PHASES = frozenset({"receiver", "e2e", "drain", "worker", "rss", "history"})
WRK_PHASES = frozenset({"ceiling", "baseline", "receiver"})  # the others need no wrk
