"""The downstream example, examples/failures_consumer.py, run as a user runs it, and the
typed ``ingest.event.Event`` downstream Python code loads a message into."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import aio_pika
import orjson
import pytest

from ingest.event import EVENT_KEYS, SCHEMA, Event, normalize, received_at_now
from ingest.names import Names
from tests.support import (
    AMQP_URL,
    ROOT,
    Stack,
    env_for,
    free_port,
    http_session,
    post,
    postback_json,
    postback_xml,
    wait_http,
)

EXAMPLE = ROOT / "examples" / "failures_consumer.py"


async def test_failures_consumer_prints_failures_and_nothing_else(
    namespace: str, processes: Stack, tmp_path: Path
) -> None:
    http, metrics = free_port(), free_port()
    processes.start("receive", INGEST_HOST="127.0.0.1", INGEST_PORT=http)
    processes.start("work", INGEST_HOST="127.0.0.1", WORKER_METRICS_PORT=metrics)
    await wait_http(f"http://127.0.0.1:{http}/readyz")
    await wait_http(f"http://127.0.0.1:{metrics}/readyz")
    env = env_for(namespace)
    env.pop("PYTHONPATH", None)  # the example finds the package by itself
    consumer = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--count",
        "4",
        "--name",
        "ops-failures",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    queue = Names(namespace).subscriber("ops-failures")
    try:
        assert consumer.stderr is not None
        first = await asyncio.wait_for(consumer.stderr.readline(), 20)
        assert first.decode().startswith(f"subscribed: {queue} <- ")
        url = f"http://127.0.0.1:{http}/postbacks"
        async with http_session() as session:
            for body in (
                postback_xml("N102", "ok-1", status="Delivered"),  # not a failure
                postback_xml("E101", "f-1", to="46700000001", status="Failed"),
                postback_xml("E002", "f-2", status="Transcoding failed"),
                postback_xml("N101", "ok-2", status="Sent"),  # not a failure
                postback_json("E102", "f-3", status="Expired message"),
                postback_xml("E011", "f-4", status="Validation failed"),
            ):
                kind = "application/json" if body.startswith(b"{") else "application/xml"
                assert (await post(session, url, body, kind))[0] == 200
        out, err = await asyncio.wait_for(consumer.communicate(), 30)
    finally:
        if consumer.returncode is None:
            consumer.kill()
            await consumer.wait()
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
    assert consumer.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 4, lines
    assert all(line.startswith("FAILURE  ") for line in lines)
    text = "\n".join(lines)
    assert "ok-1" not in text and "ok-2" not in text
    assert "MMS_MT E101  delivery/failed  to=46700000001  tracking=f-1" in text
    assert "MMS_MT E002  template/transcoding_failed" in text
    assert "MMS_MT E102  delivery/expired" in text and "status='Expired message'" in text
    assert "MMS_MT E011  send/validation_failed" in text


def event_dict(**fields: str) -> dict[str, object]:
    base = {"origin": "MMS_MT", "code": "n102", "tracking-id": "t-1", "to": "0046700000001"}
    base.update(fields)
    return normalize(base, "xml", received_at_now())


def test_event_from_json_round_trips_every_key() -> None:
    data = event_dict(status="Delivered", **{"content": [{"file": "https://x/a.jpg"}]})  # type: ignore[arg-type]
    for body in (orjson.dumps(data), orjson.dumps(data).decode()):
        event = Event.from_json(body)
        assert event.to_dict() == data
        assert tuple(event.to_dict()) == EVENT_KEYS
    assert event.schema == SCHEMA
    assert event.code == "N102" and event.final is True
    assert event.to == "0046700000001" and event.from_ is None
    assert event.content_files == ["https://x/a.jpg"] and event.copy_to == []
    assert event.extra == {}
    assert event.received.isoformat().endswith("+00:00")


def test_event_from_json_ignores_keys_a_later_schema_2_adds() -> None:
    data = {**event_dict(), "added_later": 1}
    assert "added_later" not in Event.from_json(orjson.dumps(data)).to_dict()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[1, 2]", "an event is a JSON object"),
        (orjson.dumps({**event_dict(), "schema": 3}), "unsupported event schema 3"),
        (orjson.dumps({k: v for k, v in event_dict().items() if k != "to"}), "event lacks to"),
    ],
)
def test_event_from_json_refuses_what_is_not_a_schema_2_event(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Event.from_json(body)


def test_event_from_json_refuses_bytes_that_are_no_json() -> None:
    with pytest.raises(ValueError):
        Event.from_json(b"<postback/>")
