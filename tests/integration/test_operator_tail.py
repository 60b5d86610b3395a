"""``postbacks tail [PATTERN]``: events as they fan out, as JSON (each event as sent, which
``ingest.event.Event`` loads) or one readable line each; only what the pattern matches;
stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from ingest.event import EVENT_KEYS, Event
from tests.support import Proc, Stack, free_port, http_session, post, postback_xml, wait_http
from worker.tools import human

READY = "tail: printing events"


async def start(processes: Stack, *tail_args: str) -> tuple[str, Proc]:
    http, metrics = free_port(), free_port()
    processes.start("receive", INGEST_HOST="127.0.0.1", INGEST_PORT=http)
    processes.start("work", INGEST_HOST="127.0.0.1", WORKER_METRICS_PORT=metrics)
    tail = processes.start("tail", *tail_args)
    await wait_http(f"http://127.0.0.1:{http}/readyz")
    await wait_http(f"http://127.0.0.1:{metrics}/readyz")
    deadline = time.monotonic() + 20
    while READY not in tail.output():
        assert time.monotonic() < deadline and tail.alive(), tail.output()
        await asyncio.sleep(0.05)
    return f"http://127.0.0.1:{http}/postbacks", tail


def printed(proc: Proc) -> list[str]:
    """What tail printed on stdout (its log lines, JSON on stderr, share the file)."""
    out = []
    for line in proc.output().splitlines():
        if line.startswith("{") and '"logger"' in line and '"ts"' in line:
            continue
        out.append(line)
    return out


async def wait_lines(proc: Proc, count: int, settle: float = 0.7) -> list[str]:
    deadline = time.monotonic() + 20
    while len(printed(proc)) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(settle)  # anything extra would show now
    return printed(proc)


async def test_tail_human_format_prints_matching_events_one_line_each(processes: Stack) -> None:
    url, tail = await start(processes, "#.failed.#", "--format", "human")
    failed = postback_xml(
        "E101",
        "t-fail",
        to="46700000001",
        status="Failed",
        status_details="Unknown subscriber",
    )
    delivered = postback_xml("N102", "t-ok", to="46700000002", status="Delivered")
    async with http_session() as session:
        assert (await post(session, url, delivered))[0] == 200
        assert (await post(session, url, failed))[0] == 200
    lines = await wait_lines(tail, 1)
    assert tail.terminate() == 0
    assert len(lines) == 1, lines
    (line,) = lines
    assert "MMS_MT E101" in line and "delivery/failed final" in line
    assert "to=46700000001" in line and "tracking=t-fail" in line
    assert "status='Failed'" in line and "details='Unknown subscriber'" in line
    assert line.split()[0].endswith("Z")  # received_at first
    assert "t-ok" not in "\n".join(lines)


async def test_tail_json_format_prints_events_downstream_code_can_load(
    processes: Stack,
) -> None:
    url, tail = await start(processes)  # default: every event, as JSON
    bodies = [
        postback_xml("N102", "j-1", to="0046700000001", status="Delivered"),
        postback_xml("E002", "j-2", status="Transcoding failed"),
    ]
    async with http_session() as session:
        for body in bodies:
            assert (await post(session, url, body))[0] == 200
    lines = await wait_lines(tail, 2)
    assert tail.terminate() == 0
    assert len(lines) == 2, lines
    events: list[dict[str, Any]] = [orjson.loads(line) for line in lines]
    assert {e["tracking_id"] for e in events} == {"j-1", "j-2"}
    for data in events:
        assert tuple(data) == EVENT_KEYS
        event = Event.from_json(orjson.dumps(data))
        assert event.to_dict() == data
        assert event.event_id == data["event_id"]
        assert event.received.tzinfo is not None
    by_tracking = {e["tracking_id"]: Event.from_dict(e) for e in events}
    assert by_tracking["j-1"].to == "0046700000001"  # a string: leading zeros kept
    assert (by_tracking["j-2"].family, by_tracking["j-2"].status) == (
        "template",
        "transcoding_failed",
    )


async def test_tail_stops_on_sigterm_within_ten_seconds(processes: Stack) -> None:
    _, tail = await start(processes, "mms_mt.delivery.#", "--format", "human")
    started = time.monotonic()
    assert tail.terminate(timeout=10) == 0
    assert time.monotonic() - started < 10


def test_human_line_shows_what_a_person_needs_and_tolerates_missing_fields() -> None:
    line = human(
        {
            "received_at": "2024-05-01T10:00:00.000001Z",
            "origin": "MMS_MO",
            "code": "N401",
            "family": "inbound",
            "status": "received",
            "final": True,
            "from": "46700000003",
            "to": "12345",
            "tracking_id": None,
            "client_reference": "order-7",
            "status_text": None,
            "status_details": None,
            "content_files": ["https://x/1.jpg", "https://x/2.jpg"],
        }
    )
    assert line.split("  ") == [
        "2024-05-01T10:00:00.000001Z",
        "MMS_MO N401",
        "inbound/received final",
        "from=46700000003",
        "to=12345",
        "tracking=-",
        "ref=order-7",
        "files=2",
    ]
    assert human({}) == "-  - -  -/-  to=-  tracking=-"
