"""A batch's publishes as AMQP frames, built by hand and written to the socket together.

aio-pika's ``exchange.publish`` costs one ``Message``, one properties object, pamqp's
encoding of the same header table, a channel lock, a timeout scope and a socket send with
an event-loop turn, per message. The worker waits for a whole batch at once (its commit,
or its publisher confirms), so none of that is needed per message: :class:`Frames` encodes
each publish (``basic.publish``, its content header and body frames) straight into one
buffer, and :func:`write` queues the whole buffer on the channel's connection as one write,
ahead of the acks (and commit) that aiormq writes after it in order. On a channel in
confirm mode it also registers one confirmation per publish with aiormq, exactly as its
``basic_publish`` does (the next delivery tags of the channel, in order), so the broker's
``basic.ack`` / ``basic.nack`` frames resolve them; :func:`confirmed` waits for them. The
bytes are those aio-pika would send for the same message (``tests/unit/test_wire.py``
holds the two to each other).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import cast

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq.abc import ChannelFrame
from aiormq.exceptions import DeliveryError

_FRAME_END = b"\xce"
_METHOD, _HEADER, _BODY = 1, 2, 3
_PUBLISH = struct.pack(">HHH", 60, 40, 0)  # basic.publish, reserved-1
_FRAME = struct.Struct(">BHI")
_HEAD = struct.Struct(">HHQH")  # class basic, weight, body size, property flags
_LONG = struct.Struct(">I")
_TIMESTAMP = struct.Struct(">Q")
_PERSISTENT_PRIORITY_0 = b"\x02\x00"  # delivery_mode 2, priority 0 (aio-pika's default)

# Property flags of basic (AMQP 0-9-1), in the order the values follow.
_CONTENT_TYPE = 0x8000
_HEADERS = 0x2000
_DELIVERY_MODE = 0x1000
_PRIORITY = 0x0800
_MESSAGE_ID = 0x0080
_TIMESTAMP_FLAG = 0x0040


def _short(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"short string over 255 bytes: {len(data)}")
    return bytes((len(data),)) + data


def table(headers: dict[str, str]) -> bytes:
    """A field table of string values (type ``S``), keys sorted, as pamqp writes it."""
    parts = []
    for key in sorted(headers):
        value = headers[key].encode()
        parts.append(_short(key) + b"S" + _LONG.pack(len(value)) + value)
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


class Frames:
    """Publishes for one channel, encoded as they come; :meth:`take` gives the bytes."""

    def __init__(self, channel_number: int, max_content_size: int) -> None:
        self.channel = channel_number
        self.max_content_size = max_content_size
        self.parts: list[bytes] = []
        self.count = 0
        self._exchanges: dict[str, bytes] = {}
        self._content_types: dict[str, bytes] = {}

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        content_type: str,
        message_id: str,
        timestamp: datetime | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """A persistent publish (priority 0, not mandatory) with these properties."""
        ex = self._exchanges.get(exchange)
        if ex is None:
            ex = self._exchanges[exchange] = _short(exchange)
        method = _PUBLISH + ex + _short(routing_key) + b"\x00"
        ct = self._content_types.get(content_type)
        if ct is None:
            ct = self._content_types[content_type] = _short(content_type)
        flags = _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE | _PRIORITY | _MESSAGE_ID
        props = [ct, table(headers) if headers else b"\x00\x00\x00\x00"]
        props.append(_PERSISTENT_PRIORITY_0)
        props.append(_short(message_id))
        if timestamp is not None:
            flags |= _TIMESTAMP_FLAG
            props.append(_TIMESTAMP.pack(int(timestamp.timestamp())))
        header = _HEAD.pack(60, 0, len(body), flags) + b"".join(props)
        channel = self.channel
        parts = self.parts
        parts.append(_FRAME.pack(_METHOD, channel, len(method)))
        parts.append(method)
        parts.append(_FRAME_END)
        parts.append(_FRAME.pack(_HEADER, channel, len(header)))
        parts.append(header)
        parts.append(_FRAME_END)
        size = self.max_content_size
        for start in range(0, len(body), size):
            chunk = body[start : start + size]
            parts.append(_FRAME.pack(_BODY, channel, len(chunk)))
            parts.append(chunk)
            parts.append(_FRAME_END)
        self.count += 1

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.count = 0
        return data


async def _raw(channel: AbstractChannel) -> aiormq.Channel:
    """aiormq's channel under aio-pika's; raises when the channel is closed."""
    return cast(aiormq.Channel, await channel.get_underlay_channel())


async def frames_for(channel: AbstractChannel) -> Frames:
    """A :class:`Frames` for the open ``channel`` (its number and its connection's
    frame size)."""
    raw = await _raw(channel)
    return Frames(raw.number, raw.max_content_size)


async def write(channel: AbstractChannel, frames: Frames) -> list[asyncio.Future[object]]:
    """Queue ``frames`` on the channel's connection as one write and wait until it went to
    the socket; one confirmation per publish, in order, when the channel is in confirm mode
    (each resolves with the broker's ``basic.ack``, fails on its ``basic.nack`` or when the
    channel closes). Raises when the channel is closed."""
    if not frames.count:
        return []
    raw = await _raw(channel)
    drained = raw.create_future()
    confirmations: list[asyncio.Future[object]] = []
    async with raw.lock:  # as basic_publish and rpc: nothing else between its frames
        count = frames.count
        if raw.publisher_confirms:
            first = raw.delivery_tag + 1
            for tag in range(first, first + count):
                future = raw.create_future()
                raw.confirmations[tag] = future
                confirmations.append(future)
        raw.delivery_tag += count
        try:
            await raw.write_queue.put(
                ChannelFrame(payload=frames.take(), should_close=False, drain_future=drained)
            )
        except BaseException:  # not queued: the broker never sees these tags
            raw.delivery_tag -= count
            for tag in range(raw.delivery_tag + 1, raw.delivery_tag + 1 + len(confirmations)):
                raw.confirmations.pop(tag, None)
            for future in confirmations:
                future.cancel()
            raise
    await drained
    return confirmations


# A batch not confirmed within this is taken as a lost node (one cut off from its cluster
# may keep the connection open and never answer): the session ends and the link goes on to
# the next node; the batch, not acked, comes back and is published again, counted as
# republished.
CONFIRM_TIMEOUT = 10.0


class Refused(ConnectionError):
    """The broker refused (``basic.nack``) a publish: e.g. a queue it routes to is full and
    has ``overflow: reject-publish``."""


async def confirmed(confirmations: Sequence[Awaitable[object]]) -> None:
    """Wait until the broker has confirmed every publish: :class:`Refused` when it refuses
    one, a ``ConnectionError`` (the node is taken as lost) when they take over
    :data:`CONFIRM_TIMEOUT`."""

    async def every() -> None:
        for confirmation in confirmations:
            await confirmation

    try:
        await asyncio.wait_for(every(), CONFIRM_TIMEOUT)
    except TimeoutError:
        raise ConnectionError(f"publishes not confirmed within {CONFIRM_TIMEOUT:g} s") from None
    except DeliveryError as exc:
        raise Refused("a publish was refused (basic.nack): a queue it goes to refuses it") from exc
    finally:
        for confirmation in confirmations:
            if isinstance(confirmation, asyncio.Future) and not confirmation.done():
                confirmation.cancel()
