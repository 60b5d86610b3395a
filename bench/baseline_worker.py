"""The baseline worker: the straightforward way to do what ``postbacks work`` does.

``python -m bench.baseline_worker --namespace NS``. Consumes ``NS.intake`` with prefetch 1
and, one message at a time: parses the postback (xmltodict or orjson), builds a flat event,
publishes it persistent to the topic exchange ``NS.events`` with routing key
``origin.family.status.code``, awaits the confirm, then acks the intake message.
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any

import aio_pika
import orjson
import xmltodict

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


async def work(amqp_url: str, namespace: str) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=1)
        intake = await channel.declare_queue(
            f"{namespace}.intake", durable=True, arguments={"x-queue-type": "quorum"}
        )
        events = await channel.declare_exchange(
            f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        async with intake.iterator() as messages:
            async for message in messages:
                try:
                    event = event_of(parse(message.body, message.content_type))
                except Exception:
                    await message.reject(requeue=False)
                    continue
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
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.baseline_worker")
    ap.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    ap.add_argument("--namespace", required=True)
    args = ap.parse_args(argv)
    import uvloop

    uvloop.run(work(args.amqp_url, args.namespace))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
