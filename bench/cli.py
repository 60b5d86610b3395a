"""``python -m bench``: run the selected phases, print the table, write results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import phases
from bench.broker import Broker
from bench.procs import EXITS, RESULTS_DIR, machine_busy, pin_self, services_pinned, stop_all
from bench.report import evaluate, table
from bench.wrk import ensure_wrk

ROOT = Path(__file__).resolve().parent.parent
ALL = ("ceiling", "baseline", "receiver", "e2e", "drain", "worker", "rss", "history")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the postbacks intake against a ceiling and a baseline.",
    )
    ap.add_argument("--only", default=",".join(ALL), help=f"comma-separated phases of {ALL}")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up")
    ap.add_argument("--quick", action="store_true", help="smaller everything: a smoke test")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each max-rate and half-rate measurement; the best is kept",
    )
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument(
        "--broker-cpu",
        default="float",
        help="where RabbitMQ and Redis run outside the drain phase: 'float' (both cores, "
        "untouched: the default), 'load' (the load generator's core), or a core number",
    )
    ap.add_argument(
        "--drain-cap",
        type=float,
        default=0.5,
        help="CPU share of each worker in the capped drain (0 = no capped drain)",
    )
    ap.add_argument("--drain-postbacks", type=int, default=100_000)
    ap.add_argument(
        "--worker-postbacks",
        type=int,
        default=50_000,
        help="postbacks of each format queued for each worker in the worker phase",
    )
    ap.add_argument(
        "--worker-variants",
        default="project,baseline,baseline_p1",
        help="workers of the worker phase, comma-separated",
    )
    ap.add_argument("--worker-formats", default="xml,json", help="formats of the worker phase")
    ap.add_argument(
        "--profile",
        metavar="DIR",
        help="worker phase: record postbacks work with py-spy (raw stacks) into DIR; "
        "the CPU figures of a profiled run are not comparable",
    )
    ap.add_argument("--rss-postbacks", type=int, default=1_000_000)
    ap.add_argument("--rss-warmup", type=int, default=20_000, help="postbacks before 'before'")
    ap.add_argument("--rss-chunk", type=int, default=50_000)
    ap.add_argument(
        "--history-events",
        type=int,
        default=100_000,
        help="events appended to NS.history, then backfilled, in the history phase",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="seconds to wait, before each phase, for the machine to be under --quiet-pct busy",
    )
    ap.add_argument("--quiet-pct", type=float, default=10.0, help="see --wait-quiet")
    ap.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", phases_default_amqp()))
    ap.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="given to every project process ('' = unset: in-process dedup, one worker)",
    )
    ap.add_argument("--postbacks", default=str(ROOT / ".venv" / "bin" / "postbacks"))
    ap.add_argument("--json", default=str(RESULTS_DIR / "latest.json"), help="results file")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.warmup = min(args.warmup, 1.0)
        args.drain_postbacks = min(args.drain_postbacks, 10_000)
        args.worker_postbacks = min(args.worker_postbacks, 10_000)
        args.rss_postbacks = min(args.rss_postbacks, 40_000)
        args.rss_warmup = min(args.rss_warmup, 5_000)
        args.rss_chunk = min(args.rss_chunk, 10_000)
        args.history_events = min(args.history_events, 10_000)
    selected = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in selected if p not in ALL]
    if unknown:
        ap.error(f"unknown phase(s) {unknown}; choose from {ALL}")
    args.phases = [p for p in ALL if p in selected]
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.broker_cpu == "load":
        args.broker_cpu_core = args.load_cpu
    elif args.broker_cpu == "float":
        args.broker_cpu_core = None
    elif args.broker_cpu.isdigit():
        args.broker_cpu_core = int(args.broker_cpu)
    else:
        ap.error("--broker-cpu: 'load', 'float' or a core number")
    return args


def phases_default_amqp() -> str:
    return "amqp://guest:guest@127.0.0.1:5672/"


def _git_rev() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = phases.Config(
        postbacks=args.postbacks,
        amqp_url=args.amqp_url,
        redis_url=args.redis_url or None,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        repeat=args.repeat,
        wrk_threads=args.wrk_threads,
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        drain_postbacks=args.drain_postbacks,
        rss_postbacks=args.rss_postbacks,
        rss_warmup=args.rss_warmup,
        rss_chunk=args.rss_chunk,
        history_events=args.history_events,
        drain_cap=args.drain_cap,
        worker_postbacks=args.worker_postbacks,
        worker_formats=tuple(f for f in args.worker_formats.split(",") if f),
        worker_variants=tuple(v for v in args.worker_variants.split(",") if v),
        profile_dir=args.profile,
    )
    broker = Broker(cfg.amqp_url)
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM: cancel, so every finally (cleanup) runs
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    results: dict[str, Any] = {}
    try:
        await broker.channel()
        for name in args.phases:
            if name in phases.PROJECT_PHASES and not os.access(cfg.postbacks, os.X_OK):
                results[name] = {"error": f"{cfg.postbacks} not found: project phase skipped"}
                phases.say(f"{name}: skipped ({cfg.postbacks} not found)")
                continue
            busy = await machine_busy(1.0)
            waited = 0.0
            while busy > args.quiet_pct and waited < args.wait_quiet:
                phases.say(f"machine {busy:.0f}% busy: waiting for it to quieten")
                await asyncio.sleep(4.0)
                busy = await machine_busy(1.0)
                waited += 5.0
            if busy > args.quiet_pct:
                phases.say(f"warning: the machine is {busy:.0f}% busy before {name}: noisy figures")
            started = time.time()
            # The drain's two workers take both cores: the broker floats there.
            pin = None if name == "drain" else args.broker_cpu_core
            try:
                with services_pinned(pin) as moved:
                    if moved:
                        phases.say(f"{name}: RabbitMQ and Redis ({moved} threads) on core {pin}")
                    results[name] = await phases.PHASES[name](cfg, broker)
                results[name]["broker_cpu"] = "float" if pin is None else pin
            except Exception as exc:
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            results[name]["phase_seconds"] = round(time.time() - started, 1)
            results[name]["machine_busy_pct_before"] = busy
    finally:
        await broker.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    pin_self(args.load_cpu)
    if phases.WRK_PHASES.intersection(args.phases):
        ensure_wrk()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        import uvloop

        results = uvloop.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        stop_all()
    targets = evaluate(results)
    report = {
        "meta": {
            "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git": _git_rev(),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "args": {k: v for k, v in vars(args).items() if k != "phases"},
            "phases": args.phases,
        },
        "results": results,
        "targets": targets,
        "process_exits": [
            {"process": name, "log": log, "exit_status": rc, "stop_seconds": round(secs, 2)}
            for name, log, rc, secs in EXITS
        ],
    }
    print()
    print(table(results, targets))
    for name, log, rc, secs in EXITS:
        # The bench's own apps die on SIGTERM (-15); the project should exit 0 within 10 s.
        if name.startswith("postbacks") and (rc != 0 or secs > 10):
            print(f"note: {name} exited {rc} {secs:.1f} s after SIGTERM (log: {log})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {out}")
    return 0
