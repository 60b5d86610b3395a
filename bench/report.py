"""The final table and the targets of the issue, evaluated on the figures of one run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Result = dict[str, Any]


def dig(results: Result, *path: str) -> Any:
    cur: Any = results
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ratio(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return x / y if x is not None and y else None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    op: str  # ">=" or "<=" or "=="
    threshold: float
    value: Callable[[Result], float | None]
    unit: str = ""

    def evaluate(self, results: Result) -> dict[str, Any]:
        value = self.value(results)
        if value is None:
            verdict = "n/a"
        elif self.op == ">=":
            verdict = "PASS" if value >= self.threshold else "FAIL"
        elif self.op == "<=":
            verdict = "PASS" if value <= self.threshold else "FAIL"
        else:
            verdict = "PASS" if value == self.threshold else "FAIL"
        return {
            "target": self.name,
            "value": None if value is None else round(value, 3),
            "op": self.op,
            "threshold": self.threshold,
            "unit": self.unit,
            "verdict": verdict,
        }


# The drain phase's results, one per variant (bench.phases.phase_drain).
DRAIN_RUNS = ("one", "two", "one_capped", "two_capped")
# The worker phase's variants (bench.phases.phase_worker), in the order they run.
WORKER_VARIANTS: tuple[tuple[str, str], ...] = (
    ("project", "postbacks work (Redis, lifecycles on)"),
    ("baseline", "baseline worker (prefetch 64, concurrent, confirm each)"),
    ("baseline_p1", "baseline worker, prefetch 1, one at a time"),
)


def _lost(results: Result) -> float | None:
    """Postbacks answered 200 without their event, over every project phase that ran."""
    counts = [
        dig(results, "e2e", "lost"),
        *(dig(results, "drain", key, "lost") for key in DRAIN_RUNS),
        *(dig(results, "worker", f"project_{fmt}", "lost") for fmt in ("xml", "json")),
        dig(results, "rss", "lost"),
    ]
    known = [c for c in counts if isinstance(c, int)]
    if dig(results, "e2e") is not None and dig(results, "e2e", "lost") is None:
        return None
    return float(sum(known)) if known else None


def _growth(results: Result, who: str) -> float | None:
    return _num(dig(results, "rss", f"{who}_growth_mb"))


TARGETS = (
    Target(
        "receiver req/s >= 0.6 x ceiling",
        ">=",
        0.6,
        lambda r: _ratio(dig(r, "receiver", "wrk", "rps"), dig(r, "ceiling", "wrk", "rps")),
        "x",
    ),
    Target(
        "end-to-end events/s >= 3 x baseline pipeline",
        ">=",
        3.0,
        lambda r: _ratio(
            dig(r, "e2e", "events_per_s"), dig(r, "baseline", "pipeline", "events_per_s")
        ),
        "x",
    ),
    Target("postbacks lost (200 without event) == 0", "==", 0, _lost),
    Target(
        "receiver HTTP p99 at half max rate <= 10 ms",
        "<=",
        10.0,
        lambda r: _num(dig(r, "receiver", "half_rate", "p99_ms")),
        "ms",
    ),
    Target(
        "two workers drain >= 1.7 x one worker",
        ">=",
        1.7,
        lambda r: _ratio(
            dig(r, "drain", "two", "events_per_s"), dig(r, "drain", "one", "events_per_s")
        ),
        "x",
    ),
    Target(
        "  the same, each worker capped (broker headroom)",
        ">=",
        1.7,
        lambda r: _ratio(
            dig(r, "drain", "two_capped", "events_per_s"),
            dig(r, "drain", "one_capped", "events_per_s"),
        ),
        "x",
    ),
    Target(
        "worker drain (XML) >= 2.5 x baseline worker",
        ">=",
        2.5,
        lambda r: _ratio(
            dig(r, "worker", "project_xml", "events_per_s"),
            dig(r, "worker", "baseline_xml", "events_per_s"),
        ),
        "x",
    ),
    Target(
        "worker drain (JSON) >= 2.5 x baseline worker",
        ">=",
        2.5,
        lambda r: _ratio(
            dig(r, "worker", "project_json", "events_per_s"),
            dig(r, "worker", "baseline_json", "events_per_s"),
        ),
        "x",
    ),
    Target(
        "worker CPU per XML event <= 50 µs",
        "<=",
        50.0,
        lambda r: _num(dig(r, "worker", "project_xml", "cpu_us_per_event")),
        "µs",
    ),
    Target(
        "worker CPU per JSON event <= 30 µs",
        "<=",
        30.0,
        lambda r: _num(dig(r, "worker", "project_json", "cpu_us_per_event")),
        "µs",
    ),
    Target("receiver RSS growth <= 20 MB", "<=", 20.0, lambda r: _growth(r, "receiver"), "MB"),
    Target("worker RSS growth <= 20 MB", "<=", 20.0, lambda r: _growth(r, "worker"), "MB"),
)


def evaluate(results: Result) -> list[dict[str, Any]]:
    return [t.evaluate(results) for t in TARGETS]


def _f(value: Any, digits: int = 0, suffix: str = "") -> str:
    x = _num(value)
    if x is None:
        return "-" if value is None else str(value)
    return f"{x:,.{digits}f}{suffix}"


def _http_row(label: str, r: Any) -> list[str]:
    if not isinstance(r, dict):
        return [label, "-", "-", "-", "-", "-"]
    tool = str(r.get("tool", ""))
    if r.get("mode") == "open":
        tool += f" @{_f(r.get('target_rate'))}/s"
    return [
        label,
        _f(r.get("rps")),
        _f(r.get("p50_ms"), 2),
        _f(r.get("p99_ms"), 2),
        _f(r.get("others_cpu_pct")),
        tool,
    ]


def half_rate_detail(run: Result) -> str:
    """Where a half-rate run's tail came from: the broker's confirms (when read) and the
    load generator's split into its own lag and the wait for a free connection."""
    parts: list[str] = []
    c = run.get("broker_confirms")
    if isinstance(c, dict):
        bound = c.get("slowest_confirm_under_ms")
        parts.append(
            f"broker confirms: {_f(c.get('confirms'))}, {_f(c.get('confirms_over_10ms'))}"
            f" over 10 ms, slowest under {'?' if bound is None else f'{bound:g}'} ms"
        )
    if run.get("generator_lag_max_ms") is not None:
        parts.append(
            f"generator late: p99 {_f(run.get('generator_lag_p99_ms'), 2)}, max"
            f" {_f(run.get('generator_lag_max_ms'), 2)} ms; waited for a free connection: p99"
            f" {_f(run.get('connection_wait_p99_ms'), 2)}, max"
            f" {_f(run.get('connection_wait_max_ms'), 2)} ms"
        )
    return "; ".join(parts)


def _half_rate_runs(half: Any) -> list[dict[str, Any]]:
    """The half-rate runs of the project's receiver that carry broker-confirm figures."""
    if not isinstance(half, dict):
        return []
    runs = half.get("runs") or [half]
    return [r for r in runs if isinstance(r, dict) and isinstance(r.get("broker_confirms"), dict)]


def table(results: Result, targets: list[dict[str, Any]]) -> str:
    lines: list[str] = []

    def grid(header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
        fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        lines.append(fmt.format(*header))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(fmt.format(*row) for row in rows)
        lines.append("")

    http_rows = [
        _http_row("ceiling (bare aiohttp)", dig(results, "ceiling", "wrk")),
        _http_row("ceiling, loadgen closed loop", dig(results, "ceiling", "loadgen_closed")),
        _http_row("ceiling, half rate", dig(results, "ceiling", "half_rate")),
        _http_row("baseline receiver", dig(results, "baseline", "receiver")),
        _http_row("baseline receiver, half rate", dig(results, "baseline", "receiver_half_rate")),
        _http_row("baseline pipeline (HTTP side)", dig(results, "baseline", "pipeline", "http")),
        _http_row("postbacks receive", dig(results, "receiver", "wrk")),
        _http_row("postbacks receive, half rate", dig(results, "receiver", "half_rate")),
        _http_row("postbacks run (HTTP side)", dig(results, "e2e", "http")),
    ]
    http_rows = [r for r in http_rows if r[1] != "-"]
    if http_rows:
        lines.append("HTTP (64 connections; server on one core, load generator on the other)")
        grid(["", "req/s", "p50 ms", "p99 ms", "others %", "tool"], http_rows)
    for run in _half_rate_runs(dig(results, "receiver", "half_rate")):
        lines.append(
            f"postbacks receive, half rate, run with p99 {_f(run.get('p99_ms'), 2)} ms (from"
            f" write {_f(run.get('service_p99_ms'), 2)} ms): {half_rate_detail(run)}"
        )
    if lines and lines[-1] != "":
        lines.append("")

    pipe_rows: list[list[str]] = []
    for label, r in (
        ("baseline pipeline", dig(results, "baseline", "pipeline")),
        ("postbacks run", dig(results, "e2e")),
    ):
        if isinstance(r, dict) and "events_per_s" in r:
            pipe_rows.append(
                [
                    label,
                    _f(r.get("events_per_s")),
                    _f(r.get("events_per_s_under_load")),
                    _f(r.get("ok")),
                    _f(r.get("events")),
                    _f(r.get("lost")),
                    _f(r.get("backlog_drain_s"), 1),
                    _f(r.get("others_cpu_pct")),
                ]
            )
    if pipe_rows:
        lines.append("End to end (events counted in NS.sub.bench bound with '#')")
        grid(
            ["", "events/s", "under load/s", "200s", "events", "lost", "backlog s", "others %"],
            pipe_rows,
        )

    drain_rows: list[list[str]] = []
    for key in DRAIN_RUNS:
        r = dig(results, "drain", key)
        if isinstance(r, dict):
            cap = r.get("cap_cores_per_worker")
            drain_rows.append(
                [
                    f"{r.get('workers')} worker(s) on cpu {r.get('cpus')}"
                    + (f", {cap:g} core each" if cap else ""),
                    _f(r.get("events_per_s")),
                    _f(r.get("events")),
                    _f(r.get("lost")),
                    _f(r.get("seconds_from_launch"), 1),
                    _f(r.get("others_cpu_pct")),
                ]
            )
    if drain_rows:
        lines.append(
            f"Drain of {_f(dig(results, 'drain', 'one', 'postbacks'))} pre-filled postbacks"
        )
        grid(["", "events/s", "events", "lost", "s from launch", "others %"], drain_rows)

    worker_rows: list[list[str]] = []
    base: dict[str, Any] = {}
    for fmt in ("xml", "json"):
        for key, label in WORKER_VARIANTS:
            r = dig(results, "worker", f"{key}_{fmt}")
            if not isinstance(r, dict):
                continue
            if key == "baseline":
                base[fmt] = r.get("events_per_s")
            ratio = _ratio(r.get("events_per_s"), base.get(fmt)) if key == "project" else None
            worker_rows.append(
                [
                    f"{fmt.upper()}: {label}",
                    _f(r.get("events_per_s")),
                    _f(r.get("cpu_us_per_event"), 1),
                    _f(r.get("cpu_pct_of_core")),
                    _f(r.get("lost")),
                    _f(r.get("others_cpu_pct")),
                ]
            )
            if ratio is not None:
                worker_rows[-1][0] += f" = {ratio:.2f} x baseline"
    # The project row comes first; its ratio needs the baseline row below it.
    for row in worker_rows:
        fmt = row[0].split(":", 1)[0].lower()
        if "postbacks work" in row[0] and " x baseline" not in row[0]:
            ratio = _ratio(dig(results, "worker", f"project_{fmt}", "events_per_s"), base.get(fmt))
            if ratio is not None:
                row[0] += f" = {ratio:.2f} x baseline"
    if worker_rows:
        lines.append(
            f"One worker draining {_f(dig(results, 'worker', 'project_xml', 'postbacks'))}"
            " queued postbacks of one format (cpu 0; CPU from /proc/PID/stat over the drain)"
        )
        grid(["", "events/s", "CPU µs/event", "CPU % core", "lost", "others %"], worker_rows)

    rss = dig(results, "rss")
    if isinstance(rss, dict) and "after_mb" in rss:
        rows = []
        for who in ("receiver", "worker"):
            rows.append(
                [
                    who,
                    _f(dig(rss, "idle_mb", f"{who}_kb"), 1),
                    _f(dig(rss, "before_mb", f"{who}_kb"), 1),
                    _f(dig(rss, "after_mb", f"{who}_kb"), 1),
                    _f(rss.get(f"{who}_growth_mb"), 1),
                ]
            )
        lines.append(
            f"RSS over {_f(rss.get('postbacks'))} postbacks (after a warm-up of "
            f"{_f(rss.get('warmup_postbacks'))}; {_f(rss.get('postbacks_per_s'))} postbacks/s, "
            f"lost {_f(rss.get('lost'))})"
        )
        grid(["", "idle MB", "before MB", "after MB", "growth MB"], rows)

    hist = dig(results, "history")
    if isinstance(hist, dict) and "events_per_s" in hist:
        lines.append(
            f"History: postbacks backfill of {_f(hist.get('events'))} events from NS.history"
            " (cpu 0; disk: the stream's files once appended)"
        )
        grid(
            ["", "events/s", "command s", "lost", "body B/event", "disk B/event", "others %"],
            [
                [
                    "backfill into a new subscriber",
                    _f(hist.get("events_per_s")),
                    _f(hist.get("command_seconds"), 1),
                    _f(hist.get("lost")),
                    _f(hist.get("body_bytes_per_event")),
                    _f(hist.get("disk_bytes_per_event")),
                    _f(hist.get("others_cpu_pct")),
                ]
            ],
        )

    lines.append(
        "others % = CPU used during the measurement by everything but the bench's own"
        " processes, RabbitMQ and Redis, in % of all cores: above a few %, the figures"
        " (p99 first) are disturbed by other work on the machine."
    )
    lines.append("")
    errors = [(k, v["error"]) for k, v in results.items() if isinstance(v, dict) and "error" in v]
    for name, err in errors:
        lines.append(f"phase {name}: ERROR {err}")
    if errors:
        lines.append("")

    lines.append("Targets (ratios within this run)")
    grid(
        ["target", "value", "verdict"],
        [
            [
                t["target"],
                "-" if t["value"] is None else f"{t['value']:g} {t['unit']}",
                t["verdict"],
            ]
            for t in targets
        ],
    )
    return "\n".join(lines)


def _value(t: dict[str, Any]) -> str:
    return "-" if t["value"] is None else f"{t['value']:g} {t['unit']}".strip()
