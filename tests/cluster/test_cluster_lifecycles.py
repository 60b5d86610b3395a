"""Lifecycles and receipt timers on the clusters (contract sections 6 and 7): a receiver and
two workers given every node of the private RabbitMQ cluster in ``AMQP_URL``, each worker
naming another node of the private Redis Cluster in ``REDIS_URL`` (the first and the fifth:
a master and a replica when the suite starts), so the lifecycles of one message are stepped
by either worker through whichever master holds its slot. N101/N102 pairs posted in both
orders for the same tracking ids at once, and N101s no receipt follows: on a subscriber
queue, by tracking id and message id, the event with the highest seq says delivered, a late
N101 is stale, one ``timed_out`` event for each lifecycle left open and none for the
others, no event twice."""

from __future__ import annotations

import asyncio

import aiohttp
import redis

from tests.faults.kit import (
    Downstream,
    check_lifecycles,
    copy_timers,
    lifecycle_tally,
    twice,
)
from tests.support import http_session, post, postback_xml

from .kit import REPUBLISHED, ClusterReport, ClusterRow, Processes, metric_sum

DLR = 5  # seconds: an N102 follows its N101 within a second even on a busy machine
PAIRS = 40  # tracking ids in each order
SILENT = 60  # tracking ids with an N101 only


async def _in_turn(session: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> list[int]:
    """Post ``bodies`` one after the other, each once the one before was answered."""
    return [(await post(session, url, body))[0] for body in bodies]


async def _at_once(session: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> list[int]:
    """Post ``bodies`` all at the same time."""
    return [answer[0] for answer in await asyncio.gather(*(post(session, url, b) for b in bodies))]


def _lifecycle_masters(procs: Processes) -> set[int]:
    """The Redis Cluster masters holding lifecycle keys of this test's namespace."""
    holding = set()
    for port in procs.redis.masters():
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        try:
            if next(client.scan_iter(match=f"{procs.namespace}:life:*", count=1000), None):
                holding.add(port)
        finally:
            client.close()
    return holding


async def test_lifecycles_and_timers_across_both_clusters(
    procs: Processes, downstream: Downstream, cluster_report: ClusterReport
) -> None:
    receiver = await procs.receiver()
    workers = list(
        await asyncio.gather(
            procs.worker(procs.redis.urls[0], DLR_TIMEOUT=DLR),
            procs.worker(procs.redis.urls[4], DLR_TIMEOUT=DLR),
        )
    )
    sent_first = [f"pair-sent-first-{i}" for i in range(PAIRS)]
    receipt_first = [f"pair-receipt-first-{i}" for i in range(PAIRS)]
    racing = [f"pair-racing-{i}" for i in range(PAIRS)]  # N101 and N102 at the same time
    silent = [f"silent-{i}" for i in range(SILENT)]

    def body(code: str, tracking: str) -> bytes:
        status = "Sent" if code == "N101" else "Delivered"
        return postback_xml(code, tracking, status=status, to="0049123")

    async with http_session() as session:
        answers = await asyncio.gather(
            *(
                _in_turn(session, receiver.postbacks, [body(c, t) for c in ("N101", "N102")])
                for t in sent_first
            ),
            *(
                _in_turn(session, receiver.postbacks, [body(c, t) for c in ("N102", "N101")])
                for t in receipt_first
            ),
            *(
                _at_once(session, receiver.postbacks, [body(c, t) for c in ("N101", "N102")])
                for t in racing
            ),
            *(_in_turn(session, receiver.postbacks, [body("N101", t)]) for t in silent),
        )
    assert {status for statuses in answers for status in statuses} == {200}
    pairs = [*sent_first, *receipt_first, *racing]
    for code, trackings in (("N101", [*pairs, *silent]), ("N102", pairs)):
        missing = await downstream.wait_for(code, trackings)
        assert not missing, f"no {code} event for {missing[:10]}\n{procs.logs()}"
    # A second timer for some lifecycles, as the broker's at-least-once dead-lettering may
    # hand one out twice: the two may well go to different workers.
    copies = await copy_timers(
        procs.live_amqp_url(), procs.names, DLR, downstream.events, [*silent[:20], *pairs[:20]]
    )
    await downstream.wait_for("TIMEOUT", silent, 60)
    await downstream.collect((), timeout=0, settle=3.0)  # any second one
    for service in (receiver, *workers):
        assert service.alive(), f"{service.role} died:\n{service.proc.output()[-3000:]}"

    result = check_lifecycles(downstream.events, [*pairs, *silent], pairs)
    doubled = twice(downstream.events)
    republished = sum([await metric_sum(worker, REPUBLISHED) for worker in workers])
    masters = await asyncio.to_thread(_lifecycle_masters, procs)
    cluster_report.add(
        ClusterRow(
            f"none: N101/N102 in both orders and receipt timers (DLR_TIMEOUT={DLR})",
            lifecycle_tally(downstream, 2 * len(pairs) + len(silent), result),
            "",
            f"{len(pairs)} pairs ({len(receipt_first)} posted N102 first, {len(racing)} both "
            f"at once), {len(silent)} "
            f"without N102, {copies} timers copied; {result.late_sent} N101 applied after "
            f"their N102 (stale), {result.receipt_first} N102 before their timer; "
            f"{result.timeouts} timed_out events for {result.expected_timeouts} lifecycles "
            f"left open; lifecycles on {len(masters)} Redis masters",
            republished=republished,
        )
    )
    assert not doubled, f"events published twice: {doubled[:10]}"
    assert not result.problems, f"{len(result.problems)} problems: {result.problems[:10]}"
    assert result.late_sent > 0, "no N101 came after its N102: nothing stale was tested"
    assert result.receipt_first > 0, "no N102 came before its timer: nothing tested there"
    assert len(masters) == 3, masters  # the tracking ids' slots are on every master
