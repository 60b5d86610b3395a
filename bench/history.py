"""``python -m bench.history``: a backfill of N events (default 100,000) from NS.history,
in events/s, and the disk each event takes in the stream.

Publishes N events the way a worker does (one body of ~600 bytes, message_id, timestamp,
headers) to ``NS.events`` of a fresh namespace with the history on, measures the stream's
directory on disk (``/var/lib/rabbitmq/mnesia/*/stream/``: the broker must run on this
machine), makes a subscriber afterwards and times ``backfill`` of every event into it.
Deletes the namespace at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import orjson
from pamqp.common import FieldValue

from ingest import topology
from ingest.history import History
from ingest.settings import Settings
from worker import history

KEYS = (
    "mms_mt.delivery.sent.n101",
    "mms_mt.delivery.delivered.n102",
    "mms_mt.delivery.failed.e101",
    "mms_mo.inbound.received.n401",
)


def event(n: int) -> tuple[bytes, str, dict[str, FieldValue]]:
    key = KEYS[n % len(KEYS)]
    origin, family, status, code = key.split(".")
    body = {
        "schema": 2,
        "event_id": uuid.uuid4().hex * 2,
        "origin": origin.upper(),
        "code": code.upper(),
        "family": family,
        "status": status,
        "final": True,
        "status_text": "Message Sent/Delivered",
        "status_details": None,
        "sent_as": "MMS",
        "tracking_id": f"BENCH-{n}",
        "client_reference": None,
        "mms_id": str(n),
        "operator_id": "31003",
        "handset": None,
        "from": "28444",
        "to": "12399471613",
        "timestamp": "2014-06-07T12:27:34Z",
        "error_info": None,
        "content_type": None,
        "content_name": None,
        "audio_name": None,
        "video_name": None,
        "keyword": None,
        "message_subject": None,
        "content_files": [],
        "copy_to": [],
        "extra": {},
        "format": "xml",
        "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "lifecycle": {"seq": 1, "previous": None, "current": status, "final": True, "stale": False},
    }
    headers: dict[str, FieldValue] = {
        "code": code.upper(),
        "origin": origin.upper(),
        "status": status,
        "tracking_id": f"BENCH-{n}",
    }
    return orjson.dumps(body), key, headers


def disk_bytes(queue: str) -> int | None:
    mangled = queue.replace(".", "_")
    dirs = glob.glob(f"/var/lib/rabbitmq/mnesia/*/stream/__{mangled}_*")
    if not dirs:
        return None
    return sum(os.path.getsize(p) for d in dirs for p in glob.glob(f"{d}/*"))


async def main(count: int, amqp_url: str) -> None:
    namespace = f"bench-history-{uuid.uuid4().hex[:6]}"
    settings = Settings(amqp_url=amqp_url, namespace=namespace, history_max_age="1D")
    names = settings.names
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel, names, History("1D"))
        events = await channel.get_exchange(names.events)
        since = datetime.now(UTC) - timedelta(seconds=1)
        body_bytes = 0
        started = time.monotonic()
        for start in range(0, count, 500):
            sends = []
            for n in range(start, min(start + 500, count)):
                body, key, headers = event(n)
                body_bytes += len(body)
                sends.append(
                    events.publish(
                        aio_pika.Message(
                            body,
                            content_type="application/json",
                            message_id=f"bench-{n}",
                            timestamp=datetime.now(UTC),
                            headers=headers,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=key,
                    )
                )
            await asyncio.gather(*sends)
        print(f"published {count:,} events in {time.monotonic() - started:.1f} s")
        await asyncio.sleep(2)
        disk = disk_bytes(names.history)
        await topology.subscribe(channel, names, "bench", ["#"])
        started = time.monotonic()
        outcome = await history.backfill(settings, "bench", since, None, ["#"], progress=None)
        seconds = time.monotonic() - started
        print(
            f"backfill: read {outcome.read:,}, delivered {outcome.delivered:,} in "
            f"{seconds:.1f} s = {outcome.delivered / seconds:,.0f} events/s"
        )
        print(f"event bodies: {body_bytes / count:,.0f} bytes on average")
        if disk is None:
            print("disk: the stream's directory is not on this machine")
        else:
            print(f"disk: {disk:,} bytes in the stream = {disk / count:,.0f} bytes per event")
    finally:
        cleanup = await connection.channel()
        for queue in (
            names.subscriber("bench"),
            names.history,
            names.intake,
            names.quarantine,
            names.unrouted,
        ):
            await cleanup.queue_delete(queue)
        await cleanup.exchange_delete(names.events)
        await cleanup.exchange_delete(names.unrouted)
        await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    options = parser.parse_args()
    asyncio.run(main(options.events, options.amqp_url))
