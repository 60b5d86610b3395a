"""Declare every exchange and queue of the contract. Idempotent; every process runs it."""

from __future__ import annotations

import re

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import Arguments

from ingest.history import History
from ingest.names import DELIVERY_LIMIT, Names
from ingest.settings import BadSetting

QUORUM: Arguments = {"x-queue-type": "quorum"}


async def declare_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    return await channel.declare_queue(name, durable=True, arguments=QUORUM)


async def declare_intake(channel: AbstractChannel, names: Names) -> AbstractQueue:
    """``NS.intake``: a poison message is dead-lettered into quarantine after
    ``DELIVERY_LIMIT`` deliveries, so it can never loop for ever."""
    return await channel.declare_queue(
        names.intake,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.quarantine,
        },
    )


async def declare_events(channel: AbstractChannel, names: Names) -> AbstractExchange:
    """``NS.events`` with its alternate exchange ``NS.unrouted`` and that queue."""
    unrouted = await channel.declare_exchange(
        names.unrouted, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await declare_queue(channel, names.unrouted)
    await queue.bind(unrouted, routing_key="")
    return await channel.declare_exchange(
        names.events,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": names.unrouted},
    )


async def declare(channel: AbstractChannel, names: Names, history: History | None = None) -> None:
    """Every exchange and queue of the contract (quarantine first: intake dead-letters there);
    with ``history`` (``HISTORY_MAX_AGE`` set) the stream ``NS.history`` too."""
    await declare_queue(channel, names.quarantine)
    await declare_intake(channel, names)
    events = await declare_events(channel, names)
    if history is not None:
        await declare_history(channel, names, history, events)


# Which setting gives each stream argument, for the line a changed retention prints.
HISTORY_VARIABLES = {
    "x-max-age": "HISTORY_MAX_AGE",
    "x-max-length-bytes": "HISTORY_MAX_BYTES",
    "x-queue-type": "HISTORY_MAX_AGE",
}


async def declare_history(
    channel: AbstractChannel, names: Names, history: History, events: AbstractExchange
) -> AbstractQueue:
    """``NS.history``: a stream with the retention of ``history``, bound to ``NS.events``
    with ``#``, so every event published is appended, same body and properties.

    RabbitMQ cannot change a stream's arguments: a redeclare with others is answered
    PRECONDITION_FAILED (and the channel closed). That is raised as :class:`BadSetting`
    naming the variable behind the argument that differs."""
    try:
        queue = await channel.declare_queue(
            names.history, durable=True, arguments=history.arguments
        )
    except aio_pika.exceptions.ChannelPreconditionFailed as exc:
        raise history_mismatch(names, history, exc) from None
    await queue.bind(events, routing_key="#")
    return queue


def history_mismatch(names: Names, history: History, exc: BaseException) -> BadSetting:
    text = str(exc)
    argument = next((arg for arg in HISTORY_VARIABLES if f"'{arg}'" in text), "x-max-age")
    variable = HISTORY_VARIABLES[argument]
    wanted = (history.arguments or {})[argument]
    found = re.search(r"current is (?:the value )?('[^']*'|none)", text)
    current = found.group(1) if found else "other arguments"
    return BadSetting(
        variable,
        f"{names.history} exists with {argument} {current}, not {wanted!r}; RabbitMQ cannot "
        f"change a stream's arguments: set {variable} back, or delete {names.history} "
        "(and its events) to start a new history",
    )


async def subscribe(
    channel: AbstractChannel, names: Names, name: str, patterns: list[str]
) -> AbstractQueue:
    """A durable subscriber queue ``NS.sub.NAME`` bound with each pattern; adds, never removes."""
    events = await declare_events(channel, names)
    queue = await declare_queue(channel, names.subscriber(name))
    for pattern in patterns:
        await queue.bind(events, routing_key=pattern)
    return queue


async def declare_timers(channel: AbstractChannel, names: Names, dlr_timeout: int) -> None:
    """Receipt timers: ``NS.waiting-Ns`` holds each timer for ``dlr_timeout`` seconds (one
    TTL for the whole queue, so the oldest timer is always the next one due), then the broker
    dead-letters it, at least once, into ``NS.timers``, which workers consume. No scan of
    the store: the broker keeps the time. At-least-once dead-lettering of a quorum queue
    needs ``x-overflow: reject-publish``."""
    await declare_queue(channel, names.timers)
    if dlr_timeout <= 0:
        return
    await channel.declare_queue(
        names.waiting(dlr_timeout),
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": dlr_timeout * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.timers,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
