"""Lifecycles as a user sees them: ``postbacks run`` with a short ``DLR_TIMEOUT`` and Redis,
postbacks over HTTP, a subscriber queue that gets the out-of-order N101 flagged stale and the
``timed_out`` event of a message whose receipt never came, and ``postbacks status``."""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.integration.test_operator_stats import cli
from tests.support import REDIS_URL, Stack, Subscriber, http_session, post, postback_xml

from ._helpers import start_run


async def test_run_flags_late_receipts_times_out_silent_ones_and_status_shows_them(
    namespace: str, processes: Stack
) -> None:
    env = {"REDIS_URL": REDIS_URL, "DLR_TIMEOUT": "3"}
    async with Subscriber(namespace, "all", ["#"]) as subscriber:
        running = await start_run(processes, **env)
        async with http_session() as session:
            for body in (
                postback_xml("N102", "e2e-late", status="Delivered"),
                postback_xml("N101", "e2e-late", status="Sent"),
                postback_xml("N101", "e2e-silent", status="Sent"),
            ):
                assert (await post(session, running.postbacks, body))[0] == 200
                await asyncio.sleep(0.3)  # in this order
        started = time.monotonic()
        received = await subscriber.take(4, timeout=30, settle=4.0)
        waited = time.monotonic() - started
        code, table, err = await cli(namespace, "status", "e2e-silent", REDIS_URL=REDIS_URL)
        code_json, as_json, _ = await cli(
            namespace, "status", "e2e-late", "--format", "json", REDIS_URL=REDIS_URL
        )
        unknown = await cli(namespace, "status", "e2e-nobody", REDIS_URL=REDIS_URL)
        no_redis = await cli(namespace, "status", "e2e-silent", REDIS_URL="")
    events = {(r.event["tracking_id"], r.event["code"]): r for r in received}
    assert sorted(events) == [
        ("e2e-late", "N101"),
        ("e2e-late", "N102"),
        ("e2e-silent", "N101"),
        ("e2e-silent", "TIMEOUT"),
    ], sorted(events)
    assert events[("e2e-late", "N101")].event["lifecycle"]["stale"] is True
    timeout = events[("e2e-silent", "TIMEOUT")]
    assert timeout.message.routing_key == "mms_mt.delivery.timed_out.timeout"
    assert timeout.event["lifecycle"]["current"] == "timed_out"
    assert waited < 20
    assert code == 0, err
    assert "MMS_MT delivery e2e-silent: current timed_out (final), seq 2" in table
    assert "N101" in table and "TIMEOUT" in table
    assert code_json == 0
    (late,) = orjson.loads(as_json)
    assert (late["current"], late["seq"]) == ("delivered", 2)
    assert [(e["code"], e["stale"]) for e in late["events"]] == [("N102", False), ("N101", True)]
    assert unknown[0] == 1 and len(unknown[2].strip().splitlines()) == 1
    assert "not known" in unknown[2]
    assert no_redis[0] == 1 and "REDIS_URL" in no_redis[2]
    assert len(no_redis[2].strip().splitlines()) == 1
