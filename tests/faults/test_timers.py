"""Receipt timers across faults (contract section 6): the timers live on the broker and the
lifecycles in Redis, so every worker killed with SIGKILL, or the broker stopped and started,
while timers are pending changes nothing a subscriber sees: exactly one ``timed_out`` event
for each lifecycle still open when its timer came due, none for one its N102 closed first,
and no event twice. Real ``postbacks receive``/``postbacks work`` processes, the suite's
private RabbitMQ node and Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import http_session, post, postback_xml, queue_count

from .kit import (
    Cluster,
    Downstream,
    Lifecycles,
    Report,
    Row,
    all_ready,
    check_lifecycles,
    copy_timers,
    lifecycle_tally,
    twice,
)

pytestmark = pytest.mark.faults


async def _post(url: str, bodies: list[bytes]) -> list[int]:
    async with http_session() as session:
        answers = await asyncio.gather(*(post(session, url, body) for body in bodies))
    return [status for status, _, _ in answers]


async def _lifecycles(
    url: str, downstream: Downstream, silent: list[str], answered: list[str]
) -> None:
    """N101 for every tracking id; once their events are out, N102 for ``answered``, and
    its events out too (each N102 after its own N101)."""
    sent = [postback_xml("N101", t, status="Sent", to="0049123") for t in silent + answered]
    assert await _post(url, sent) == [200] * len(sent)
    missing = await downstream.wait_for("N101", [*silent, *answered])
    assert not missing, f"no N101 event for {missing[:10]}"
    receipts = [postback_xml("N102", t, status="Delivered", to="0049123") for t in answered]
    assert await _post(url, receipts) == [200] * len(receipts)
    missing = await downstream.wait_for("N102", answered)
    assert not missing, f"no N102 event for {missing[:10]}"


async def _timeouts_out(downstream: Downstream, silent: set[str]) -> None:
    """Until every lifecycle of ``silent`` has its timed_out event (at most 60 s), then
    3 s more for any second one; what is missing is for the caller to find."""
    await downstream.wait_for("TIMEOUT", silent, 60)
    await downstream.collect((), timeout=0, settle=3.0)


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def _assert_once(downstream: Downstream, result: Lifecycles) -> None:
    doubled = twice(downstream.events)
    assert not doubled, f"events published twice: {doubled[:10]}"
    assert not result.problems, f"{len(result.problems)} problems: {result.problems[:10]}"


DLR_KILL = 6  # seconds: the phase before the kill takes well under one on an idle machine


async def test_timers_survive_every_worker_killed_with_sigkill(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    """N101 for 150 tracking ids (50 of them answered by their N102), 50 more N101 just
    before both workers get SIGKILL while their timers wait; a second copy of 30 of those
    timers; one worker started again: one timed_out event per lifecycle left open, none
    for those answered, none twice."""
    receiver = await cluster.receiver()
    workers = [
        await cluster.worker(DLR_TIMEOUT=DLR_KILL),
        await cluster.worker(DLR_TIMEOUT=DLR_KILL),
    ]
    silent, answered, late = _ids("kill-open", 100), _ids("kill-done", 50), _ids("kill-late", 50)
    began = time.monotonic()
    await _lifecycles(receiver.postbacks, downstream, silent, answered)
    # Postbacks still on their way through the workers when they die: their timers are
    # armed by the batch that publishes their events, before or after the kill.
    bodies = [postback_xml("N101", t, status="Sent") for t in late]
    assert await _post(receiver.postbacks, bodies) == [200] * len(bodies)
    for worker in workers:
        worker.proc.kill()  # SIGKILL
    killed = time.monotonic() - began
    waiting = cluster.names.waiting(DLR_KILL)
    pending = await queue_count(waiting, cluster.rabbit.url)
    copies = await copy_timers(
        cluster.rabbit.url, cluster.names, DLR_KILL, downstream.events, silent[:20] + answered[:10]
    )
    restarted = cluster.restart(workers[0])
    recovery = await all_ready([restarted])
    await _timeouts_out(downstream, {*silent, *late})
    assert restarted.alive(), restarted.proc.output()[-3000:]

    trackings = [*silent, *answered, *late]
    result = check_lifecycles(downstream.events, trackings, answered)
    report.add(
        Row(
            "receipt timers: every worker SIGKILLed with timers pending, one restarted",
            lifecycle_tally(downstream, len(trackings) + len(answered), result),
            f"worker ready {recovery:.1f} s after restart",
            f"DLR_TIMEOUT={DLR_KILL}; {len(trackings)} lifecycles, {len(answered)} answered "
            f"by N102 before the kill; killed {killed:.1f} s after the first N101 with "
            f"{pending} timers in `{waiting}`, then {copies} of them copied there; "
            f"{result.timeouts} timed_out events for "
            f'{result.expected_timeouts} lifecycles left open ("lost": lifecycles not as '
            "the contract says)",
        )
    )
    _assert_once(downstream, result)
    assert pending > 0, "no timer was waiting any more when the workers were killed"
    assert result.receipt_first > 0, "no N102 came before its timer: nothing tested there"


DLR_RESTART = 9  # seconds
GAP = 5.0  # seconds between the two waves: about what stop_app and start_app take together


async def test_timers_survive_a_broker_restart(
    cluster: Cluster, downstream: Downstream, report: Report
) -> None:
    """Two waves of lifecycles (N101 for 90 tracking ids each, 30 of them answered by
    their N102) 5 s apart, then ``stop_app``; the broker stays down until the first wave's
    timers are due, then ``start_app``: the first wave's timers come due while the broker is
    down, the second's after it is back; a second copy of 30 of the timers. One timed_out
    event per lifecycle left open, none for those answered, none twice; the processes are
    not restarted."""
    receiver = await cluster.receiver()
    workers = [
        await cluster.worker(DLR_TIMEOUT=DLR_RESTART),
        await cluster.worker(DLR_TIMEOUT=DLR_RESTART),
    ]
    first, first_done = _ids("restart-a-open", 60), _ids("restart-a-done", 30)
    second, second_done = _ids("restart-b-open", 60), _ids("restart-b-done", 30)
    began = time.monotonic()
    await _lifecycles(receiver.postbacks, downstream, first, first_done)
    first_armed = time.monotonic()  # every timer of the first wave was published by now
    await asyncio.sleep(max(0.0, began + GAP - time.monotonic()))
    second_began = time.monotonic()
    await _lifecycles(receiver.postbacks, downstream, second, second_done)
    copies = await copy_timers(
        cluster.rabbit.url,
        cluster.names,
        DLR_RESTART,
        downstream.events,
        [*first[:10], *first_done[:5], *second[:10], *second_done[:5]],
    )

    stopping = time.monotonic()
    await asyncio.to_thread(cluster.rabbit.stop_app)
    stopped = time.monotonic()
    await asyncio.sleep(max(0.5, first_armed + DLR_RESTART + 0.5 - time.monotonic()))
    starting = time.monotonic()
    await asyncio.to_thread(cluster.rabbit.start_app)
    started = time.monotonic()
    recovery = await all_ready([receiver, *workers])
    back = time.monotonic()
    await _timeouts_out(downstream, {*first, *second})
    for service in (receiver, *workers):
        assert service.alive(), f"{service.role} died:\n{service.proc.output()[-3000:]}"

    trackings = [*first, *first_done, *second, *second_done]
    answered = [*first_done, *second_done]
    result = check_lifecycles(downstream.events, trackings, answered)
    # When the timers came due, as far as the test can tell (none before its wave began
    # plus DLR_TIMEOUT), from the end of stop_app; and the second wave's, from when all
    # processes were ready again.
    first_due = (began + DLR_RESTART - stopped, first_armed + DLR_RESTART - stopped)
    second_due = second_began + DLR_RESTART - back
    report.add(
        Row(
            f"receipt timers: broker stopped with timers pending (`stop_app` … `start_app`, "
            f"{started - stopping:.1f} s)",
            lifecycle_tally(downstream, len(trackings) + len(answered), result),
            f"all ready {recovery:.1f} s after `start_app`",
            f"DLR_TIMEOUT={DLR_RESTART}; 2 waves of {len(first) + len(first_done)} lifecycles "
            f"({len(first_done)} answered by N102) {second_began - began:.1f} s apart, "
            f"{copies} timers copied; first wave due {first_due[0]:.1f}–{first_due[1]:.1f} s "
            f"after `stop_app` ended, `start_app` at {starting - stopped:.1f} s; second wave "
            f"due from {second_due:.1f} s after all were ready; {result.timeouts} "
            f"timed_out events for {result.expected_timeouts} lifecycles left open",
        )
    )
    _assert_once(downstream, result)
    assert result.receipt_first > 0, "no N102 came before its timer: nothing tested there"
