"""Lifecycles through the real worker, RabbitMQ and Redis: every event with a tracking id
carries where it stands (seq, previous, current, final, stale); out-of-order receipts are
flagged stale; a lifecycle with no final status gets exactly one ``timed_out`` event after
``DLR_TIMEOUT``, however many workers run, and even when no worker ran at the time."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aio_pika
from prometheus_client import generate_latest

from ingest import lifecycle, topology
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.names import Names
from tests.support import (
    REDIS_URL,
    Subscriber,
    http_session,
    post,
    postback_json,
    postback_xml,
)
from worker.lifecycles import Change
from worker.stores import open_stores
from worker.timers import CONTENT_TYPE as TIMER_CONTENT_TYPE
from worker.timers import armed
from worker.transform import Outgoing, transform

from ._helpers import metric, pipeline, receiver, settings_for, worker


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


async def test_a_timer_back_after_its_commit_did_not_happen_publishes_its_timed_out(
    namespace: str,
) -> None:
    """The state a timer's first delivery leaves when it stepped the lifecycle and claimed
    the ``timed_out`` id, and then its commit did not happen (worker killed, node lost): the
    lifecycle is final by this very timeout, the id holds this timer's pending mark, and no
    ``timed_out`` event is out. The timer, delivered again, must publish it (counted as
    republished), not skip the lifecycle as final."""
    settings = settings_for(namespace, dlr_timeout=2, redis_url=REDIS_URL)
    names = Names(namespace)
    record = Record(uuid.uuid4().hex, received_at_now(), "xml", None, postback_xml("N101", "d"))
    out = transform(record)
    assert isinstance(out, Outgoing)
    event = out.event
    key = lifecycle.key(event)
    assert key is not None
    timer = armed(event, 2)
    stores = open_stores(settings)
    try:
        await stores.lifecycles.step([Change.of(event, key)])
        found = await stores.lifecycles.get(key)
        assert found is not None
        latest = {**found.latest, "origin": key[0], "family": key[1], "tracking_id": key[2]}
        timed_out = lifecycle.timed_out_event(latest, event["event_id"], 2, received_at_now())
        assert await stores.lifecycles.step([Change.of(timed_out, key)], only_open=True)
        assert await stores.dedup.claim([(timed_out["event_id"], f"{timer.message_id}/timer")])
    finally:
        await stores.close()
    async with Subscriber(namespace, "all", ["#"]) as subscriber:
        await topology.declare(subscriber.channel, names)
        await topology.declare_timers(subscriber.channel, names, 2)
        await subscriber.channel.default_exchange.publish(
            aio_pika.Message(
                timer.body,
                content_type=TIMER_CONTENT_TYPE,
                message_id=timer.message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            names.timers,
        )
        async with worker(settings) as running:
            received = await subscriber.take(1, timeout=15, settle=1.0)
            text = generate_latest(running.metrics.registry).decode()
    assert [r.event["event_id"] for r in received] == [timed_out["event_id"]]
    assert received[0].event["status"] == "timed_out"
    assert received[0].event["lifecycle"]["current"] == "timed_out"
    assert metric(text, "postbacks_events_republished_total") == 1
