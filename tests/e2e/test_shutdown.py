"""SIGTERM stops ``postbacks run`` within 10 s with status 0, and every postback answered 200
before is downstream: already an event, or an event once a worker runs again."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from ingest.names import Names
from tests.integration._helpers import wait_count
from tests.support import Stack, Subscriber, free_port, http_session, post, postback_xml, wait_http

from ._helpers import start_run


async def test_sigterm_stops_run_cleanly_and_loses_no_accepted_postback(
    namespace: str, processes: Stack
) -> None:
    async with Subscriber(namespace, "all", ["#"]) as subscriber:
        running = await start_run(processes)
        accepted: list[str] = []
        refused: list[str] = []
        stop_posting = asyncio.Event()

        async def lane(session: aiohttp.ClientSession, lane_no: int) -> None:
            n = 0
            while not stop_posting.is_set():
                tracking = f"stop-{lane_no}-{n}"
                n += 1
                try:
                    status, _, _ = await post(
                        session, running.postbacks, postback_xml("N101", tracking)
                    )
                except (aiohttp.ClientError, OSError):
                    return  # the receiver is gone
                (accepted if status == 200 else refused).append(tracking)

        async with http_session() as session:
            lanes = [asyncio.create_task(lane(session, i)) for i in range(8)]
            while len(accepted) < 100:
                await asyncio.sleep(0.02)
            running.proc.popen.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = await asyncio.to_thread(running.proc.popen.wait, 15)
            took = time.monotonic() - started
            stop_posting.set()
            await asyncio.gather(*lanes)
        assert code == 0, running.proc.output()[-3000:]
        assert took < 10
        # What the stopped worker had not taken is still in the durable intake queue:
        # a new worker turns it into events. Nothing answered 200 is missing, nothing twice.
        metrics_port = free_port()
        processes.start("work", WORKER_METRICS_PORT=metrics_port)
        await wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 200, timeout=20)
        assert await wait_count(namespace, Names(namespace).intake, 0, timeout=20) == 0
        received = await subscriber.take(len(accepted), timeout=30, settle=1.0)
    got = [item.event["tracking_id"] for item in received]
    assert len(got) == len(set(got)), "an event was published twice"
    missing = set(accepted) - set(got)
    assert not missing, f"{len(missing)} postbacks answered 200 never became events"
    assert set(got) <= set(accepted) | set(refused)


async def test_receive_and_work_as_separate_processes_stop_on_sigint(
    namespace: str, processes: Stack
) -> None:
    """The scaled layout: a receiver and a worker started on their own; Ctrl-C (SIGINT)
    stops each within 10 s with status 0."""
    port, metrics_port = free_port(), free_port()
    receiving = processes.start("receive", INGEST_PORT=port)
    working = processes.start("work", WORKER_METRICS_PORT=metrics_port)
    async with Subscriber(namespace, "all", ["#"]) as subscriber:
        await wait_http(f"http://127.0.0.1:{port}/readyz", 200, timeout=30)
        await wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 200, timeout=30)
        async with http_session() as session:
            url = f"http://127.0.0.1:{port}/postbacks"
            assert (await post(session, url, postback_xml("N102", "scaled")))[0] == 200
        received = await subscriber.take(1, timeout=15)
    assert [item.event["tracking_id"] for item in received] == ["scaled"]
    for proc in (receiving, working):
        proc.popen.send_signal(signal.SIGINT)
    started = time.monotonic()
    codes = [await asyncio.to_thread(proc.popen.wait, 15) for proc in (receiving, working)]
    assert codes == [0, 0], receiving.output()[-2000:] + working.output()[-2000:]
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("command", ["run", "receive", "work", "tail"])
async def test_sigterm_while_still_starting_is_a_clean_stop(
    namespace: str, processes: Stack, command: str
) -> None:
    """An orchestrator may stop a process it has only just started: even then SIGTERM ends
    it within 10 s with status 0 (not killed half-started, status 143)."""
    for delay in (0.1, 0.25, 0.4):
        proc = processes.start(command, INGEST_PORT=free_port(), WORKER_METRICS_PORT=free_port())
        await asyncio.sleep(delay)
        proc.popen.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.to_thread(proc.popen.wait, 15)
        assert (delay, code) == (delay, 0), proc.output()[-2000:]
        assert time.monotonic() - started < 10
