"""The history phase's parts (``python -m bench --only history``, which
``python -m bench.history`` runs): N events appended to ``NS.history`` as a worker publishes
them, and the disk they take in the stream.

The events are published the way a worker does (one body of ~740 bytes, message_id,
timestamp, the four headers) to ``NS.events`` of the phase's namespace with the history on;
the stream's directory on disk is measured under ``/var/lib/rabbitmq/mnesia/*/stream/``
(the broker must run on this machine). ``bench.phases.phase_history`` then times
``postbacks backfill`` of every event into a subscriber made afterwards.
"""

from __future__ import annotations

import asyncio
import glob
import os
import sys
import uuid
from datetime import UTC, datetime

import aio_pika
import orjson
from pamqp.common import FieldValue

from ingest import topology
from ingest.history import History
from ingest.names import Names

MAX_AGE = "1D"  # HISTORY_MAX_AGE of the phase's namespace
WINDOW = 500  # publishes awaiting their confirms at a time


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
    """Bytes of every file of the stream ``queue`` (vhost ``/``) on this machine's broker."""
    mangled = queue.replace(".", "_")
    dirs = glob.glob(f"/var/lib/rabbitmq/mnesia/*/stream/__{mangled}_*")
    if not dirs:
        return None
    return sum(os.path.getsize(p) for d in dirs for p in glob.glob(f"{d}/*"))


async def fill(amqp_url: str, namespace: str, count: int) -> int:
    """Declare the topology of ``namespace`` with the history on and publish ``count``
    events to its ``NS.events``, confirmed; the bytes of their bodies."""
    names = Names(namespace)
    body_bytes = 0
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel, names, History(MAX_AGE))
        events = await channel.get_exchange(names.events)
        for start in range(0, count, WINDOW):
            sends = []
            for n in range(start, min(start + WINDOW, count)):
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
    return body_bytes


if __name__ == "__main__":
    from bench.cli import main

    raise SystemExit(main(["--only", "history", *sys.argv[1:]]))
