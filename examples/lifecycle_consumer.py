"""Keep each message's true state: per lifecycle, the event with the highest ``seq``.

A downstream service in a few lines: it declares its own durable subscriber queue
``NS.sub.NAME`` bound to the events exchange (what ``postbacks subscribe NAME PATTERN...``
does), loads each message into the typed :class:`ingest.event.Event`, keeps per
(``origin``, ``family``, ``tracking_id``) the event with the highest ``lifecycle.seq``, and
prints a line whenever that state changes.

Run it (the package is installed, or run from the repository root)::

    python examples/lifecycle_consumer.py                        # every receipt, until Ctrl-C
    python examples/lifecycle_consumer.py --show-stale           # also say what was stale
    python examples/lifecycle_consumer.py --count 10 'mms_mt.delivery.#'

Why the highest ``seq`` and not the latest message: Sinch's postbacks arrive out of order
(an N101 after its N102), and a subscriber queue may hand over a redelivered message late.
Each event says where it stands in its lifecycle (``lifecycle.seq``, ``previous``,
``current``, ``final``, ``stale``), as the workers applied it; whatever order the events
reach this consumer in, the one with the highest ``seq`` carries the true ``current``. A
*stale* event (an N101 after its N102, a second final status) did not change ``current``: it
is information, not an error. When no receipt comes within ``DLR_TIMEOUT`` the project
publishes one ``timed_out`` event (routing key ``ORIGIN.FAMILY.timed_out.timeout``); a real
receipt that comes after it still becomes ``current``.

The state here lives in memory, for the example; a real service keeps it in its database
with the same rule (``UPDATE ... SET ... WHERE seq < :seq``), so a restart or a second
consumer changes nothing.
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

# The families whose lifecycles wait for a receipt (and can time out).
PATTERNS = ("*.delivery.#", "*.discovery.#")

LifecycleKey = tuple[str, str, str]


class States:
    """Per lifecycle, the event with the highest ``seq`` seen so far."""

    def __init__(self, show_stale: bool = False) -> None:
        self.show_stale = show_stale
        self.latest: dict[LifecycleKey, Event] = {}

    def offer(self, event: Event) -> str | None:
        """Keep ``event`` if it is the lifecycle's newest; a line to print, or ``None``."""
        if event.lifecycle is None or event.tracking_id is None:
            return None  # no tracking id: no lifecycle (an older schema-1 event, too)
        key = (event.origin, event.family, event.tracking_id)
        kept = self.latest.get(key)
        if kept is not None and kept.lifecycle is not None:
            if event.lifecycle.seq <= kept.lifecycle.seq:
                return None  # older than what we hold: it changes nothing
            changed = (event.lifecycle.current, event.lifecycle.final) != (
                kept.lifecycle.current,
                kept.lifecycle.final,
            )
        else:
            changed = True
        self.latest[key] = event
        if changed:
            return describe(event)
        if self.show_stale and event.lifecycle.stale:
            return (
                f"stale    {label(event)}  {event.code} {event.status} ignored: "
                f"still {event.lifecycle.current} (seq {event.lifecycle.seq})"
            )
        return None

    def current(self, origin: str, family: str, tracking_id: str) -> str | None:
        """The lifecycle's ``current`` status as this consumer knows it."""
        kept = self.latest.get((origin, family, tracking_id))
        return None if kept is None or kept.lifecycle is None else kept.lifecycle.current


def label(event: Event) -> str:
    return f"{event.origin}/{event.family} tracking={event.tracking_id}"


def describe(event: Event) -> str:
    """One line for a state change: from what, to what, at which ``seq``."""
    assert event.lifecycle is not None
    life = event.lifecycle
    line = (
        f"{'final' if life.final else 'pending'}  {label(event)}  "
        f"{life.previous or '-'} -> {life.current}  (seq {life.seq}, {event.code})"
    )
    if event.status == "timed_out":
        line += (
            f"  no receipt after {event.extra.get('after_seconds')} s,"
            f" last code {event.extra.get('last_code')}"
        )
    if event.to:
        line += f"  to={event.to}"
    return line


async def consume(
    amqp_url: str,
    namespace: str,
    name: str,
    patterns: Sequence[str],
    count: int | None = None,
    show_stale: bool = False,
    out: TextIO = sys.stdout,
) -> States:
    """Consume until SIGINT/SIGTERM, or until ``count`` lines were printed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    states = States(show_stale)
    printed = 0
    names = Names(namespace)
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await topology.subscribe(channel, names, name, list(patterns))
        print(f"subscribed: {queue.name} <- {names.events} {' '.join(patterns)}", file=sys.stderr)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal printed
            async with message.process(requeue=False):  # acks on success
                try:
                    event = Event.from_json(message.body)
                except ValueError as exc:  # not an event this code reads: say so, go on
                    print(f"skipped message {message.message_id}: {exc}", file=sys.stderr)
                    return
                line = states.offer(event)
                if line is None:
                    return
                out.write(line + "\n")
                out.flush()
                printed += 1
                if count is not None and printed >= count:
                    stop.set()

        tag = await queue.consume(on_message)
        await stop.wait()
        await queue.cancel(tag)
    return states


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--namespace", default=os.environ.get("POSTBACKS_NAMESPACE", "postbacks"))
    parser.add_argument("--name", default="lifecycles", help="subscriber queue NS.sub.NAME")
    parser.add_argument("--count", type=int, default=None, help="stop after this many lines")
    parser.add_argument("--show-stale", action="store_true", help="also print stale events")
    parser.add_argument("patterns", nargs="*", default=list(PATTERNS), metavar="PATTERN")
    args = parser.parse_args(argv)
    asyncio.run(
        consume(
            args.amqp_url,
            args.namespace,
            args.name,
            args.patterns,
            args.count,
            args.show_stale,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
