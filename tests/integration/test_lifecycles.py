"""Lifecycles through the real worker, RabbitMQ and Redis: every event with a tracking id
carries where it stands (seq, previous, current, final, stale); out-of-order receipts are
flagged stale; a lifecycle with no final status gets exactly one ``timed_out`` event after
``DLR_TIMEOUT``, however many workers run, and even when no worker ran at the time."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tests.support import Subscriber, http_session, post, postback_json, postback_xml

from ._helpers import pipeline, receiver, settings_for, worker


async def _send(url: str, *bodies: bytes) -> list[int]:
    async with http_session() as session:
        return [(await post(session, f"{url}/postbacks", body, _media(body)))[0] for body in bodies]


def _media(body: bytes) -> str:
    return "application/json" if body.startswith(b"{") else "application/xml"


def _by_code(received: list[Any]) -> dict[str, dict[str, Any]]:
    return {r.event["code"]: r.event for r in received}


async def test_in_order_and_out_of_order_receipts(namespace: str) -> None:
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        pipeline(namespace, dlr_timeout=0) as running,
    ):
        assert await _send(running.url, postback_xml("N101", "in-order")) == [200]
        await subscriber.take(1, timeout=15)
        assert await _send(running.url, postback_xml("N102", "in-order")) == [200]
        in_order = await subscriber.take(1, timeout=15)
        assert await _send(running.url, postback_json("N102", "late")) == [200]
        await subscriber.take(1, timeout=15)
        assert await _send(running.url, postback_xml("N101", "late")) == [200]
        late = await subscriber.take(1, timeout=15, settle=0.3)
        assert await _send(running.url, b'{"origin":"MMS_MT","code":"N102"}') == [200]
        untracked = await subscriber.take(1, timeout=15)
    assert in_order[0].event["lifecycle"] == {
        "seq": 2,
        "previous": "sent",
        "current": "delivered",
        "final": True,
        "stale": False,
    }
    assert late[0].event["lifecycle"] == {
        "seq": 2,
        "previous": "delivered",
        "current": "delivered",
        "final": True,
        "stale": True,
    }
    assert late[0].message.routing_key == "mms_mt.delivery.sent.n101"  # still published
    assert untracked[0].event["lifecycle"] is None


async def test_two_workers_racing_on_one_lifecycle_give_distinct_seqs(namespace: str) -> None:
    trackings = [f"race-{n}" for n in range(40)]
    settings = settings_for(namespace, dlr_timeout=0)
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        receiver(settings) as url,
        worker(settings),
        worker(settings),
    ):
        bodies = [postback_xml(code, t) for t in trackings for code in ("N101", "N102")]
        async with http_session() as session:
            statuses = await asyncio.gather(
                *(post(session, f"{url}/postbacks", body) for body in bodies)
            )
        received = await subscriber.take(len(bodies), timeout=30, settle=0.5)
    assert [s[0] for s in statuses] == [200] * len(bodies)
    assert len(received) == len(bodies)
    for tracking in trackings:
        mine = [r.event for r in received if r.event["tracking_id"] == tracking]
        seqs = sorted(e["lifecycle"]["seq"] for e in mine)
        assert seqs == [1, 2], (tracking, seqs)
        highest = max(mine, key=lambda e: e["lifecycle"]["seq"])
        assert highest["lifecycle"]["current"] == "delivered"


async def test_a_lifecycle_without_receipt_times_out_once(namespace: str) -> None:
    tracking = f"silent-{uuid.uuid4().hex[:6]}"
    settings = settings_for(namespace, dlr_timeout=2)
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        receiver(settings) as url,
        worker(settings),
        worker(settings),
    ):
        sent = time.monotonic()
        assert await _send(
            url,
            postback_xml("N101", tracking, to="0049123", **{"client_reference": "ref-1"}),
            postback_xml("N101", "answered"),
        ) == [200, 200]
        await subscriber.take(2, timeout=15)
        assert await _send(url, postback_xml("N102", "answered")) == [200]
        received = await subscriber.take(2, timeout=30, settle=3.0)
        after = time.monotonic() - sent
    codes = sorted((r.event["tracking_id"], r.event["code"]) for r in received)
    assert codes == [("answered", "N102"), (tracking, "TIMEOUT")], codes
    timeout = next(r for r in received if r.event["code"] == "TIMEOUT")
    event = timeout.event
    assert timeout.message.routing_key == "mms_mt.delivery.timed_out.timeout"
    assert (event["status"], event["final"], event["format"]) == ("timed_out", True, "timer")
    assert (event["to"], event["client_reference"]) == ("0049123", "ref-1")
    assert event["extra"]["after_seconds"] == "2" and event["extra"]["last_code"] == "N101"
    assert event["lifecycle"] == {
        "seq": 2,
        "previous": "sent",
        "current": "timed_out",
        "final": True,
        "stale": False,
    }
    assert 2.0 <= after < 20, after


async def test_a_timer_that_came_due_while_no_worker_ran_fires_once_one_is_back(
    namespace: str,
) -> None:
    settings = settings_for(namespace, dlr_timeout=2)
    async with Subscriber(namespace, "all", ["#"]) as subscriber, receiver(settings) as url:
        async with worker(settings):
            assert await _send(url, postback_xml("N101", "while-away")) == [200]
            await subscriber.take(1, timeout=15)
        await asyncio.sleep(3.5)  # due while no worker runs
        nothing = await subscriber.take(0, settle=0.3)
        async with worker(settings):
            received = await subscriber.take(1, timeout=20, settle=2.0)
    assert nothing == []
    assert [r.event["code"] for r in received] == ["TIMEOUT"]
