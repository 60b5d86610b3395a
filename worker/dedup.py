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

from worker.redis_link import RedisLink, guarded
from worker.scripts import Lua


class Verdict(int):
    """A claim's answer: true to publish, false for a duplicate. ``again`` tells a claim
    that found its own mark: an earlier delivery of this very intake message claimed the id,
    and may have committed its event before the link died (the commit in doubt), so
    publishing again may give subscribers a second copy; the worker counts those."""

    again: bool

    def __new__(cls, publish: bool, again: bool = False) -> Verdict:
        verdict = super().__new__(cls, int(publish))
        verdict.again = again
        return verdict

    def __repr__(self) -> str:
        return "AGAIN" if self.again else ("FRESH" if self else "DUPLICATE")


FRESH, AGAIN, DUPLICATE = Verdict(True), Verdict(True, again=True), Verdict(False)


class DedupStore(Protocol):
    async def claim(self, claims: Sequence[tuple[str, str]]) -> list[Verdict]:
        """For each ``(event_id, mark)``: true to publish (:data:`FRESH`, or :data:`AGAIN`
        when the id already held this mark), :data:`DUPLICATE` (false) for a duplicate."""

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

    async def claim(self, claims: Sequence[tuple[str, str]]) -> list[Verdict]:
        now = self._monotonic()
        self._sweep(now)
        out = []
        for event_id, mark in claims:
            held = self._marks.get(event_id)
            if held is None or held[1] <= now:
                self._marks[event_id] = (mark, now + self.ttl)
                out.append(FRESH)
            else:
                out.append(AGAIN if held[0] == mark else DUPLICATE)
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

# One key each, so a cluster routes every call to the master of its key's slot. Settle and
# release compare before they write; Redis runs a script without interleaving. Run by SHA
# (worker.scripts.Lua): a node without the script (a replica promoted by a failover) makes
# the batch run again with EVAL, which is safe since both are idempotent.
_SETTLE = """
local mark = redis.call('GET', KEYS[1])
if mark == ARGV[1] then
  redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'KEEPTTL')
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SETTLE_LUA, _RELEASE_LUA = Lua(_SETTLE), Lua(_RELEASE)

# Standalone Redis has no slots: a chunk of a batch goes as one script call, and its answer
# is one string (a claim's verdict per character) rather than a reply per id to parse.
# ARGV[1] is the TTL, ARGV[1 + i] the mark for KEYS[i].
_CLAIM_MANY = Lua("""
local ttl, out = ARGV[1], {}
for i, key in ipairs(KEYS) do
  local mark = ARGV[i + 1]
  local before = redis.call('SET', key, mark, 'NX', 'EX', ttl, 'GET')
  if not before then out[i] = 'F' elseif before == mark then out[i] = 'A' else out[i] = 'D' end
end
return table.concat(out)
""")
_SETTLE_MANY = Lua("""
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    redis.call('SET', key, 'done:' .. ARGV[i], 'KEEPTTL')
  end
end
return 0
""")
_RELEASE_MANY = Lua("""
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then redis.call('DEL', key) end
end
return 0
""")
CHUNK = 256  # ids per script call: bounds how long one call holds the server
_VERDICTS = {ord("F"): FRESH, ord("A"): AGAIN, ord("D"): DUPLICATE}


class RedisDedup:
    """Shared store: any number of workers on any machines, one Redis or one Redis Cluster.

    Every call is one non-transactional pipeline of single-key commands: one round trip on
    standalone Redis, one per master holding the batch's keys (in parallel) on a cluster.
    A claim is ``SET key mark NX EX ttl GET`` per id (Redis 7): it was fresh when the reply
    is nil (the key was free, now marked) or ``mark`` itself (its own mark). Each command is
    atomic on its own, and a batch needs no more: ids are independent. A pipeline the
    cluster client sends again after a connection error or ``CLUSTERDOWN`` gives the same
    answers, since a claim of one's own mark, a settle and a release are all idempotent.
    """

    def __init__(self, link: RedisLink, ttl: int, prefix: str, *, owns_link: bool = False) -> None:
        self.link = link
        self.ttl = ttl
        self.prefix = f"{prefix}:dedup:"
        self.owns_link = owns_link

    def key(self, event_id: str) -> str:
        return self.prefix + event_id

    async def claim(self, claims: Sequence[tuple[str, str]]) -> list[Verdict]:
        if not claims:
            return []
        client = await self.link.client()
        if not self.link.cluster:
            key, ttl = self.key, str(self.ttl)
            calls = [
                ([key(i) for i, _ in chunk], [ttl, *(m for _, m in chunk)])
                for chunk in _chunks(claims)
            ]
            answers = await _CLAIM_MANY.run(client, calls)
            return [_VERDICTS[c] for answer in answers for c in answer]
        async with guarded():
            pipe = client.pipeline(transaction=False)
            for event_id, mark in claims:
                pipe.set(self.key(event_id), mark, ex=self.ttl, nx=True, get=True)
            held = await pipe.execute()
        return [
            FRESH if before is None else AGAIN if before == mark.encode() else DUPLICATE
            for before, (_, mark) in zip(held, claims, strict=True)
        ]

    async def release(self, claims: Sequence[tuple[str, str]]) -> None:
        await self._each(_RELEASE_LUA, _RELEASE_MANY, claims)

    async def settle(self, claims: Sequence[tuple[str, str]]) -> None:
        await self._each(_SETTLE_LUA, _SETTLE_MANY, claims)

    async def _each(self, script: Lua, many: Lua, claims: Sequence[tuple[str, str]]) -> None:
        if not claims:
            return
        client = await self.link.client()
        key = self.key
        if not self.link.cluster:
            calls = [
                ([key(i) for i, _ in chunk], [m for _, m in chunk]) for chunk in _chunks(claims)
            ]
            await many.run(client, calls)
            return
        async with guarded():
            await script.run(client, [((key(event_id),), (mark,)) for event_id, mark in claims])

    async def ping(self) -> None:
        await self.link.ping()

    async def close(self) -> None:
        if self.owns_link:
            await self.link.aclose()


def _chunks(claims: Sequence[tuple[str, str]]) -> list[Sequence[tuple[str, str]]]:
    return [claims[i : i + CHUNK] for i in range(0, len(claims), CHUNK)]


def open_store(redis_url: str | None, ttl: int, namespace: str) -> DedupStore:
    """The store for ``REDIS_URL``: Redis (standalone or cluster, noticed on first use)
    through a link of its own, else the in-process one."""
    if redis_url:
        return RedisDedup(RedisLink(redis_url), ttl, namespace, owns_link=True)
    return MemoryDedup(ttl)


async def verdicts(store: DedupStore, claims: Sequence[tuple[str, str]]) -> list[bool]:
    """``store.claim(claims)`` as plain booleans (publish or not), for callers that do not
    care whether a claim found its own mark."""
    return [bool(verdict) for verdict in await store.claim(claims)]
