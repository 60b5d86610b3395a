"""Print every failed delivery, expiry, rejection and transcoding/validation failure.

A downstream service in a few lines: it declares its own durable subscriber queue
``NS.sub.NAME`` bound to the events exchange for the failure statuses (what
``postbacks subscribe NAME PATTERN...`` does), loads each message into the typed
:class:`ingest.event.Event`, prints one line, and acknowledges it.

Run it (the package is installed, or run from the repository root)::

    python examples/failures_consumer.py                  # until Ctrl-C
    python examples/failures_consumer.py --count 10       # stop after 10 events
    AMQP_URL=amqp://user:pw@rabbitmq:5672/ POSTBACKS_NAMESPACE=postbacks \\
        python examples/failures_consumer.py --name billing-failures

Routing keys are ``ORIGIN.FAMILY.STATUS.CODE`` (e.g. ``mms_mt.delivery.failed.e101``), so
one binding per status catches it whatever the origin, family and code: ``*.*.failed.*``
(the same as ``#.failed.#`` for these keys), and its friends ``expired``, ``rejected``,
``error``, ``transcoding_failed`` and ``validation_failed``.

Delivery to a subscriber is at least once: a consumer that dies before its ack sees the
message again (``message.redelivered``); the event id (``message_id``) tells a repeat.
The queue is durable, so failures that happen while this consumer is stopped wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import aio_pika

if importlib.util.find_spec("ingest") is None:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest import topology
from ingest.event import Event
from ingest.names import Names

FAILURE_STATUSES = (
    "failed",
    "expired",
    "rejected",
    "error",
    "transcoding_failed",
    "validation_failed",
)
PATTERNS = tuple(f"*.*.{status}.*" for status in FAILURE_STATUSES)


def describe(event: Event, redelivered: bool = False) -> str:
    """One line per failure: what failed, for whom, and Sinch's own words."""
    parts = [
        event.received_at,
        f"{event.origin} {event.code}",
        f"{event.family}/{event.status}",
        f"to={event.to or '-'}",
        f"tracking={event.tracking_id or '-'}",
    ]
    if event.client_reference:
        parts.append(f"ref={event.client_reference}")
    if event.status_text:
        parts.append(f"status={event.status_text!r}")
    if event.status_details:
        parts.append(f"details={event.status_details!r}")
    if event.error_info:
        parts.append(f"error={event.error_info!r}")
    if redelivered:
        parts.append("(redelivered: may be a repeat)")
    return "FAILURE  " + "  ".join(parts)


async def consume(
    amqp_url: str,
    namespace: str,
    name: str,
    count: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Consume failures until SIGINT/SIGTERM, or until ``count`` were printed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    printed = 0
    names = Names(namespace)
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        queue = await topology.subscribe(channel, names, name, list(PATTERNS))
        print(f"subscribed: {queue.name} <- {names.events} {' '.join(PATTERNS)}", file=sys.stderr)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal printed
            async with message.process(requeue=False):  # acks on success
                try:
                    event = Event.from_json(message.body)
                except ValueError as exc:  # not an event this code reads: say so, do not loop on it
                    print(f"skipped message {message.message_id}: {exc}", file=sys.stderr)
                    return
                out.write(describe(event, message.redelivered or False) + "\n")
                out.flush()
                printed += 1
                if count is not None and printed >= count:
                    stop.set()

        tag = await queue.consume(on_message)
        await stop.wait()
        await queue.cancel(tag)
    return printed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--namespace", default=os.environ.get("POSTBACKS_NAMESPACE", "postbacks"))
    parser.add_argument("--name", default="failures", help="subscriber queue NS.sub.NAME")
    parser.add_argument("--count", type=int, default=None, help="stop after this many")
    args = parser.parse_args(argv)
    asyncio.run(consume(args.amqp_url, args.namespace, args.name, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
