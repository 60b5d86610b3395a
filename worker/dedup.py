"""Dedup stores: remember which event ids were published, atomically across workers.

A claim marks an event id with the identity of the intake delivery that carries it
(``intake message id / postback id``). It succeeds when the id was free, or when the mark is
already this very delivery's: that happens only when the same intake message comes back
after its transaction did not commit (worker killed, broker restarted), and then publishing
again is right. Any other mark means another postback already carries this event: drop it.
Since the event and the intake ack commit in one AMQP transaction, a committed delivery is
never redelivered, so an event is published at most once however the worker dies. Once a
commit is confirmed the worker also *settles* its marks (``done:`` + mark): should the
broker still hand the delivery out again (acks lost when a connection closes right after a
commit have been seen on RabbitMQ 3.10 quorum queues), the copy finds a settled mark and is
dropped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis


class DedupStore(Protocol):
    async def claim(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """For each ``(event_id, mark)``: ``True`` to publish, ``False`` for a duplicate."""

    async def release(self, claims: Sequence[tuple[str, str]]) -> None:
        """Forget ids still marked with exactly these marks (their delivery is given up)."""

    async def settle(self, claims: Sequence[tuple[str, str]]) -> None:
        """Mark these ids' events as committed: no delivery can claim them any more."""

    async def ping(self) -> None:
        """Raise when the store cannot answer."""

    async def close(self) -> None: ...


class MemoryDedup:
    """In-process store with a TTL: one worker only."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self._marks: dict[str, tuple[str, float]] = {}
        self._monotonic = time.monotonic
        self._next_sweep = 0.0

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(60.0, self.ttl / 2)
        expired = [key for key, (_, until) in self._marks.items() if until <= now]
        for key in expired:
            del self._marks[key]

    async def claim(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        now = self._monotonic()
        self._sweep(now)
        out = []
        for event_id, mark in claims:
            held = self._marks.get(event_id)
            if held is None or held[1] <= now:
                self._marks[event_id] = (mark, now + self.ttl)
                out.append(True)
            else:
                out.append(held[0] == mark)
        return out

    async def release(self, claims: Sequence[tuple[str, str]]) -> None:
        for event_id, mark in claims:
            held = self._marks.get(event_id)
            if held is not None and held[0] == mark:
                del self._marks[event_id]

    async def settle(self, claims: Sequence[tuple[str, str]]) -> None:
        for event_id, mark in claims:
            held = self._marks.get(event_id)
            if held is not None and held[0] == mark:
                self._marks[event_id] = (SETTLED + mark, held[1])

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._marks)


SETTLED = "done:"  # a settled mark: the event is committed

# One round trip per batch; atomic because Redis runs a script without interleaving.
_CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  local mark = ARGV[i + 1]
  if redis.call('SET', key, mark, 'NX', 'EX', ARGV[1]) then
    out[i] = 1
  elseif redis.call('GET', key) == mark then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
_SETTLE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    redis.call('SET', key, 'done:' .. ARGV[i], 'KEEPTTL')
  end
end
return 0
"""
_RELEASE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then redis.call('DEL', key) end
end
return 0
"""


class RedisDedup:
    """Shared store: any number of workers on any machines, one Redis."""

    def __init__(self, url: str, ttl: int, prefix: str) -> None:
        self.ttl = ttl
        self.prefix = f"{prefix}:dedup:"
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
        )
        self._claim = self.client.register_script(_CLAIM)
        self._release = self.client.register_script(_RELEASE)
        self._settle = self.client.register_script(_SETTLE)

    async def claim(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        if not claims:
            return []
        keys = [self.prefix + event_id for event_id, _ in claims]
        result = await self._claim(keys=keys, args=[self.ttl, *(mark for _, mark in claims)])
        return [bool(flag) for flag in result]

    async def release(self, claims: Sequence[tuple[str, str]]) -> None:
        if claims:
            keys = [self.prefix + event_id for event_id, _ in claims]
            await self._release(keys=keys, args=[mark for _, mark in claims])

    async def settle(self, claims: Sequence[tuple[str, str]]) -> None:
        if claims:
            keys = [self.prefix + event_id for event_id, _ in claims]
            await self._settle(keys=keys, args=[mark for _, mark in claims])

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()


def open_store(redis_url: str | None, ttl: int, namespace: str) -> DedupStore:
    if redis_url:
        return RedisDedup(redis_url, ttl, namespace)
    return MemoryDedup(ttl)
