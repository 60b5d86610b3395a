"""A consumer in another language (contract section 8): ``examples/node-consumer`` (amqplib
and ajv from the npm registry, installed with ``npm ci`` from its lock file) subscribes to
``postbacks run``, validates every event against the shipped JSON Schema and keeps the
highest ``seq`` per tracking id, which holds the true state whatever order events come in."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from ingest import contract
from ingest.names import Names
from tests.e2e._helpers import start_run
from tests.support import AMQP_URL, ROOT, Stack, http_session, post, postback_json, postback_xml

EXAMPLE = ROOT / "examples" / "node-consumer"
SCHEMA = Path(contract.__file__).with_name(contract.EVENT_SCHEMA)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not on PATH: the Node.js consumer example needs Node.js 18+ and npm "
            "(e.g. apt-get install nodejs npm)",
            pytrace=False,
        )
    return found


async def npm_ci() -> None:
    """``npm ci`` from the lock file; offline when npm's cache has the packages already."""
    process = await asyncio.create_subprocess_exec(
        tool("npm"),
        "ci",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        cwd=EXAMPLE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, f"npm ci failed in {EXAMPLE}:\n{out.decode()}"


async def test_node_consumer_validates_and_keeps_the_highest_seq(
    processes: Stack, namespace: str
) -> None:
    node = tool("node")
    await npm_ci()
    running = await start_run(processes)
    consumer = await asyncio.create_subprocess_exec(
        node,
        "consumer.js",
        cwd=EXAMPLE,
        env={
            **os.environ,
            "AMQP_URL": AMQP_URL,
            "POSTBACKS_NAMESPACE": namespace,
            "SUBSCRIBER": "node",
            "PATTERNS": "mms_mt.delivery.#",
            "EVENT_SCHEMA": str(SCHEMA),
            "EXPECT": "5",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_bound(consumer)
        async with http_session() as session:
            # In order for one tracking id, out of order (N102 before N101) for another.
            for body, media in (
                (postback_xml("N101", "in-order", status="Message Sent"), "application/xml"),
                (postback_xml("N102", "in-order", status="Delivered"), "application/xml"),
                (postback_json("N102", "late-sent", status="Delivered"), "application/json"),
                (postback_json("N101", "late-sent", status="Message Sent"), "application/json"),
            ):
                status, text, _ = await post(session, running.postbacks, body, media)
                assert (status, text) == (200, "OK")
        # And one message on the events exchange that is no event of the contract.
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(Names(namespace).events)
            bogus = aio_pika.Message(b'{"schema": 2, "code": 102}', message_id="bogus")
            await exchange.publish(bogus, routing_key="mms_mt.delivery.sent.n101")
        out, errors = await asyncio.wait_for(consumer.communicate(), 30)
    finally:
        if consumer.returncode is None:
            consumer.kill()
            await consumer.wait()
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.decode().splitlines()]
    assert consumer.returncode == 0, (lines, errors.decode())
    summary = lines[-1]["summary"]
    assert (summary["valid"], summary["invalid"]) == (4, 1), lines
    assert [line["message_id"] for line in lines[:-1] if not line["valid"]] == ["bogus"]
    state = summary["state"]
    assert set(state) == {"in-order", "late-sent"}
    assert {k: (v["seq"], v["current"], v["final"]) for k, v in state.items()} == {
        "in-order": (2, "delivered", True),
        "late-sent": (2, "delivered", True),
    }, state


async def wait_bound(consumer: asyncio.subprocess.Process) -> None:
    """Until the consumer says its queue is bound (it fails the test if it exits first)."""
    assert consumer.stderr is not None
    line = await asyncio.wait_for(consumer.stderr.readline(), 20)
    if not line.startswith(b"ready:"):
        rest = await asyncio.wait_for(consumer.stderr.read(), 5)
        raise AssertionError(f"node consumer did not start: {(line + rest).decode()}")
