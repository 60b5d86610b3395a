"""deploy/rabbitmq/definitions.json against the real broker: imported as RabbitMQ imports
it at boot (``rabbitmqctl import_definitions``, names moved to a fresh namespace), the
code's own declarations then agree with it (a different argument would fail them with
PRECONDITION_FAILED, as the control shows), and the imported topology works: an event no
subscriber is bound for lands in NS.unrouted."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika

from ingest.names import Names
from tests.integration.test_operator_stats import cli
from tests.support import AMQP_URL, ROOT, delete_namespace, new_namespace, queue_count

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"


def moved_to(namespace: str) -> dict[str, Any]:
    """definitions.json with every name of the namespace ``postbacks`` moved."""
    text = DEFINITIONS.read_text().replace('"postbacks.', f'"{namespace}.')
    data: dict[str, Any] = json.loads(text)
    return data


def readable_file(data: dict[str, Any]) -> Path:
    """``data`` as a JSON file anyone can read (rabbitmqctl may run as the broker's user)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(data, file)
    path = Path(file.name)
    path.chmod(0o644)
    return path


async def import_definitions(data: dict[str, Any]) -> None:
    path = readable_file(data)
    try:
        proc = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            "import_definitions",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        os.unlink(path)
    assert proc.returncode == 0, out.decode()
    # The import is asynchronous: wait until every queue and exchange is there.
    names = [q["name"] for q in data["queues"]]
    exchanges = [e["name"] for e in data["exchanges"]]
    deadline = time.monotonic() + 30
    async with await aio_pika.connect(AMQP_URL) as connection:
        while True:
            missing = []
            for name in names:
                channel = await connection.channel()
                try:
                    await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    missing.append(name)
            for name in exchanges:
                channel = await connection.channel()
                try:
                    await channel.get_exchange(name, ensure=True)
                except aio_pika.exceptions.ChannelClosed:
                    missing.append(name)
            if not missing:
                return
            assert time.monotonic() < deadline, f"not imported: {missing}"
            await asyncio.sleep(0.1)


async def test_imported_definitions_agree_with_the_code_declarations(namespace: str) -> None:
    names = Names(namespace)
    await import_definitions(moved_to(namespace))
    code, out, err = await cli(namespace, "topology")
    assert code == 0, err
    assert f"topology of namespace {namespace!r} declared" in out
    # A worker's own declarations too (quarantine, intake, events with its alternate).
    code, _, err = await cli(namespace, "subscribe", "nobody", "nothing.matches.this.#")
    assert code == 0, err
    # The imported alternate exchange and binding work: an unrouted event is kept.
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        events = await channel.get_exchange(names.events, ensure=True)
        await events.publish(aio_pika.Message(b"{}"), routing_key="mms_mt.delivery.sent.n101")
        await channel.queue_delete(names.subscriber("nobody"))
    deadline = time.monotonic() + 10
    while await queue_count(names.unrouted) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await queue_count(names.unrouted) == 1


async def test_a_definition_that_differs_from_the_code_fails_its_declarations() -> None:
    """The control: with one argument changed, ``postbacks topology`` refuses to start."""
    other = new_namespace()
    try:
        data = moved_to(other)
        (intake,) = [q for q in data["queues"] if q["name"] == Names(other).intake]
        intake["arguments"]["x-delivery-limit"] = 11
        await import_definitions(data)
        code, out, err = await cli(other, "topology")
        assert code != 0
        assert "x-delivery-limit" in out + err and "PRECONDITION_FAILED" in out + err
    finally:
        await delete_namespace(other)
