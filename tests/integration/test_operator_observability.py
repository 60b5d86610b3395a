"""What an operator watches, against real processes and the real broker and Redis: the
metrics each role exports (and that the dashboard and alert rules only use those),
readiness naming the dependency that fails, and the structured start-up log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from ingest.settings import OPTIONS
from tests.support import (
    REDIS_URL,
    Proc,
    Stack,
    free_port,
    http_session,
    post,
    postback_xml,
    wait_http,
)
from tests.unit.test_deploy_artifacts import METRIC, alert_rules, dashboard_exprs

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def start_receiver(processes: Stack, **env: str | int | None) -> tuple[Proc, int]:
    port = free_port()
    proc = processes.start("receive", INGEST_HOST="127.0.0.1", INGEST_PORT=port, **env)
    return proc, port


def start_worker(processes: Stack, **env: str | int | None) -> tuple[Proc, int]:
    port = free_port()
    proc = processes.start("work", INGEST_HOST="127.0.0.1", WORKER_METRICS_PORT=port, **env)
    return proc, port


async def test_metrics_of_both_roles_count_what_happened(processes: Stack) -> None:
    _, http_port = start_receiver(processes)
    _, metrics_port = start_worker(processes, REDIS_URL=REDIS_URL)
    receiver = f"http://127.0.0.1:{http_port}"
    worker = f"http://127.0.0.1:{metrics_port}"
    await wait_http(f"{receiver}/readyz")
    await wait_http(f"{worker}/readyz")
    delivered = postback_xml("N102", "obs-1", status="Delivered")
    failed = postback_xml("E101", "obs-2", status="Failed")
    async with http_session() as session:
        for body in (delivered, delivered, failed, b"<postback><origin>MMS_MT</origin>"):
            assert (await post(session, f"{receiver}/postbacks", body))[0] == 200
        assert (await post(session, f"{receiver}/postbacks", b"  "))[0] == 400
    deadline = time.monotonic() + 30
    while True:
        seen = await scrape(f"{worker}/metrics")
        done = (
            value(seen, "postbacks_events_total") == 2
            and value(seen, "postbacks_duplicates_dropped_total") == 1
            and value(seen, "postbacks_quarantined_total", kind="invalid") == 1
            and value(seen, "postbacks_quarantine_queue_messages") == 1
        )
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert value(seen, "postbacks_events_total", origin="MMS_MT", status="delivered") == 1
    assert value(seen, "postbacks_events_total", family="delivery", status="failed") == 1
    assert value(seen, "postbacks_duplicates_dropped_total") == 1
    assert value(seen, "postbacks_quarantined_total", kind="invalid") == 1
    assert value(seen, "postbacks_quarantine_queue_messages") == 1
    assert value(seen, "postbacks_intake_queue_messages") == 0
    assert value(seen, "postbacks_processing_seconds_count") == 2
    assert value(seen, "postbacks_dedup_seconds_count") >= 1
    assert value(seen, "postbacks_event_commit_seconds_count") >= 1
    assert value(seen, "postbacks_worker_batch_postbacks_sum") == 4
    assert value(seen, "postbacks_dependency_up", dependency="broker") == 1
    assert value(seen, "postbacks_dependency_up", dependency="redis") == 1

    got = await scrape(f"{receiver}/metrics")
    assert value(got, "postbacks_http_requests_total", code="200") == 4
    assert value(got, "postbacks_http_requests_total", code="400") == 1
    assert value(got, "postbacks_intake_confirm_seconds_count") >= 1
    assert value(got, "postbacks_intake_batch_postbacks_sum") == 4
    assert value(got, "postbacks_http_request_seconds_count") == 4
    assert value(got, "postbacks_broker_up") == 1

    # Every series the dashboard and the alert rules read is in a live scrape.
    live = {name for name, _ in [*seen, *got]}
    wanted = {name for _, expr in dashboard_exprs() for name, _ in METRIC.findall(expr)}
    wanted |= {name for rule in alert_rules() for name, _ in METRIC.findall(rule["expr"])}
    assert wanted <= live, wanted - live


async def test_readiness_names_the_dependency_that_fails(processes: Stack) -> None:
    closed = free_port()
    _, no_redis = start_worker(processes, REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    _, no_broker = start_worker(processes, AMQP_URL=f"amqp://guest:guest@127.0.0.1:{closed}/")
    _, receiver = start_receiver(processes, AMQP_URL=f"amqp://guest:guest@127.0.0.1:{closed}/")
    _, healthy = start_worker(processes, REDIS_URL=REDIS_URL)

    # 503 at once ("not connected yet"); then the broker answers and Redis does not.
    deadline = time.monotonic() + 20
    while True:
        body = await wait_http(f"http://127.0.0.1:{no_redis}/readyz", 503)
        if body["checks"]["broker"] == "ok" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert body["ready"] is False
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["redis"] != "ok" and "redis" in body["checks"]["redis"]

    body = await wait_http(f"http://127.0.0.1:{no_broker}/readyz", 503)
    assert body["ready"] is False and body["checks"]["broker"] != "ok"

    body = await wait_http(f"http://127.0.0.1:{receiver}/readyz", 503)
    assert body["ready"] is False and body["checks"]["broker"] != "ok"

    body = await wait_http(f"http://127.0.0.1:{healthy}/readyz", 200)
    assert body == {"ready": True, "checks": {"broker": "ok", "redis": "ok"}}

    for port in (no_redis, no_broker, receiver):  # alive, though not ready
        assert await wait_http(f"http://127.0.0.1:{port}/healthz") == {"status": "ok"}


def json_lines(output: str) -> list[dict[str, object]]:
    lines = [line for line in output.splitlines() if line.strip()]
    entries = [orjson.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= set(entry), entry
    return entries


async def test_logs_are_json_lines_with_the_configuration_masked(
    processes: Stack, tmp_path: Path
) -> None:
    secret = "s3cr3t-Pw"
    receiver, port = start_receiver(
        processes,
        INGEST_BASIC_AUTH=f"ops:{secret}",
        AMQP_URL="amqp://guest:guest@127.0.0.1:5672/",
    )
    worker, _ = start_worker(processes, REDIS_URL=f"redis://:{secret}@127.0.0.1:6379/0")
    await wait_http(f"http://127.0.0.1:{port}/readyz")
    deadline = time.monotonic() + 20
    while "work: configuration" not in worker.output() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert receiver.terminate() == 0
    assert worker.terminate() == 0
    for proc, command in ((receiver, "receive"), (worker, "work")):
        output = proc.output()
        assert secret not in output and "guest:guest" not in output
        entries = json_lines(output)
        (config_line,) = [e for e in entries if e["msg"] == f"{command}: configuration"]
        config = config_line["config"]
        assert isinstance(config, dict)
        assert set(config) == {option.variable for option in OPTIONS}
        assert config["AMQP_URL"] == "amqp://guest:***@127.0.0.1:5672/"
        assert config["LOG_LEVEL"] == "INFO"
        if command == "receive":
            assert config["INGEST_BASIC_AUTH"] == "ops:***"
        else:
            assert config["REDIS_URL"] == "redis://:***@127.0.0.1:6379/0"


async def test_log_level_comes_from_log_level(processes: Stack) -> None:
    quiet, port = start_receiver(processes, LOG_LEVEL="WARNING")
    chatty, chatty_port = start_receiver(processes, LOG_LEVEL="DEBUG")
    await wait_http(f"http://127.0.0.1:{port}/readyz")
    await wait_http(f"http://127.0.0.1:{chatty_port}/readyz")
    assert quiet.terminate() == 0
    assert chatty.terminate() == 0
    assert all(e["level"] in ("warning", "error", "critical") for e in json_lines(quiet.output()))
    levels = {e["level"] for e in json_lines(chatty.output())}
    assert "info" in levels
