"""The baseline worker: the straightforward way to do what ``postbacks work`` does.

``python -m bench.baseline_worker --namespace NS``. Consumes ``NS.intake`` with prefetch 64
and handles the delivered messages concurrently (aio-pika runs each consumer callback as a
task of its own), each one: parse the postback (xmltodict or orjson), build a flat event,
publish it persistent to the topic exchange ``NS.events`` with routing key
``origin.family.status.code`` on a channel with publisher confirms, await that publish's
confirm, then ack the intake message. That is how a competent engineer writes it with
aio-pika without batching by hand.

``--prefetch 1 --serial`` gives the naive variant (one message at a time, prefetch 1),
kept as a second, labelled row of the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
from typing import Any

import aio_pika
import orjson
import xmltodict
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

_TABLE = {
    "N101": ("delivery", "sent"),
    "N102": ("delivery", "delivered"),
    "N103": ("delivery", "expired"),
    "E101": ("delivery", "failed"),
    "E102": ("delivery", "rejected"),
    "N401": ("inbound", "received"),
}


def parse(body: bytes, content_type: str | None) -> dict[str, Any]:
    if body.lstrip()[:1] == b"<" or (content_type or "").endswith("xml"):
        doc = xmltodict.parse(body)["postback"]
    else:
        doc = orjson.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("not a postback")
    return {str(k): v for k, v in doc.items()}


def event_of(doc: dict[str, Any]) -> dict[str, Any]:
    code = str(doc.get("code", "")).upper()
    family, status = _TABLE.get(code, ("unknown", "unknown"))
    event: dict[str, Any] = {
        k.replace("-", "_"): (None if v is None else str(v)) for k, v in doc.items()
    }
    event.update(schema=1, code=code, family=family, status=status)
    event["event_id"] = hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return event


async def handle(events: AbstractExchange, message: AbstractIncomingMessage) -> None:
    try:
        event = event_of(parse(message.body, message.content_type))
    except Exception:
        await message.reject(requeue=False)
        return
    key = f"{event.get('origin')}.{event['family']}.{event['status']}.{event['code']}"
    await events.publish(
        aio_pika.Message(
            orjson.dumps(event),
            content_type="application/json",
            message_id=event["event_id"],
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=key.lower(),
    )
    await message.ack()


async def work(amqp_url: str, namespace: str, prefetch: int = 64, serial: bool = False) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        intake = await channel.declare_queue(
            f"{namespace}.intake", durable=True, arguments={"x-queue-type": "quorum"}
        )
        events = await channel.declare_exchange(
            f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        if serial:
            async with intake.iterator() as messages:
                async for message in messages:
                    await handle(events, message)
            return

        async def on_message(message: AbstractIncomingMessage) -> None:
            # The channel gone: the delivery comes back, to this worker or another.
            with contextlib.suppress(Exception):
                await handle(events, message)

        await intake.consume(on_message)
        await asyncio.Future()  # until the process is stopped
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.baseline_worker")
    ap.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--prefetch", type=int, default=64, help="unacked messages in flight")
    ap.add_argument("--serial", action="store_true", help="one message at a time")
    args = ap.parse_args(argv)
    import uvloop

    uvloop.run(work(args.amqp_url, args.namespace, args.prefetch, args.serial))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
