"""Lifecycle stores: apply each published event to its lifecycle, atomically across workers.

One record per lifecycle (``origin``, ``family``, ``tracking_id``) holds its state (current
status, final, latest seq), its first event's id and time, the fields a ``timed_out`` event
takes from its latest event, and the steps already applied, by event id. Applying an event
that is already there (the same delivery again, after a commit that did not happen) gives
the same step: idempotent across redeliveries.

Redis (standalone or Cluster) keeps a lifecycle under ``NS:life:{TRACKING}:ORIGIN|FAMILY``
and the list of a tracking id's lifecycles under ``NS:life:{TRACKING}``: the ``{...}`` hash
tag puts both in one slot, so one single-key-slot script applies a step atomically on a
cluster, and a batch's steps go in one pipeline of ``EVALSHA`` (one round trip per node;
see :mod:`worker.scripts`). The script runs
the rules of :mod:`ingest.lifecycle`; tests hold the two to each other. Everything expires
``DEDUP_TTL`` after a lifecycle's last step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ingest.lifecycle import TIMED_OUT, State, Step, apply
from worker.redis_link import RedisLink, guarded
from worker.scripts import Lua

# What a timed_out event takes from the lifecycle's latest event.
LATEST_FIELDS = ("code", "sent_as", "client_reference", "mms_id", "operator_id", "from", "to")


@dataclass(frozen=True, slots=True)
class Change:
    """One event to apply: its lifecycle, id and status, and (not for timers) its fields."""

    key: tuple[str, str, str]  # origin, family, tracking id
    event_id: str
    code: str
    status: str
    final: bool
    received_at: str
    latest: dict[str, Any] | None  # None for a timed_out event: it is no "latest event"

    @classmethod
    def of(cls, event: dict[str, Any], key: tuple[str, str, str]) -> Change:
        timer = event["status"] == TIMED_OUT and event["format"] == "timer"
        return cls(
            key,
            str(event["event_id"]),
            str(event["code"]),
            str(event["status"]),
            bool(event["final"]),
            str(event["received_at"]),
            None if timer else {name: event.get(name) for name in LATEST_FIELDS},
        )


@dataclass(slots=True)
class Lifecycle:
    """A lifecycle as the store holds it (what ``postbacks status`` and timers read)."""

    origin: str
    family: str
    tracking_id: str
    current: str
    final: bool
    seq: int
    first_event_id: str
    first_received_at: str
    latest: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)  # in seq order

    @classmethod
    def from_record(cls, key: tuple[str, str, str], record: dict[str, Any]) -> Lifecycle:
        events = sorted(record.get("ev") or [], key=lambda e: int(e["seq"]))
        return cls(
            *key,
            current=str(record["c"]),
            final=bool(record["f"]),
            seq=int(record["q"]),
            first_event_id=str(record["first"]),
            first_received_at=str(record["at"]),
            latest=dict(record.get("latest") or {}),
            events=events,
        )


class LifecycleStore(Protocol):
    async def step(self, changes: Sequence[Change], only_open: bool = False) -> list[Step | None]:
        """Apply each change in order; its step. With ``only_open`` (timers) a change whose
        lifecycle is final, unknown, or already past it is not applied: ``None``."""

    async def lifecycles(self, tracking_id: str) -> list[Lifecycle]:
        """Every lifecycle of ``tracking_id`` the store knows."""

    async def get(self, key: tuple[str, str, str]) -> Lifecycle | None: ...

    async def close(self) -> None: ...


def _step_of(entry: dict[str, Any]) -> Step:
    return Step(
        int(entry["seq"]),
        entry["prev"],
        str(entry["cur"]),
        bool(entry["fin"]),
        bool(entry["stale"]),
    )


def _entry(change: Change, step: Step) -> dict[str, Any]:
    return {
        "id": change.event_id,
        "seq": step.seq,
        "prev": step.previous,
        "cur": step.current,
        "fin": step.final,
        "stale": step.stale,
        "code": change.code,
        "status": change.status,
        "at": change.received_at,
    }


class MemoryLifecycles:
    """In-process lifecycles, for one worker without ``REDIS_URL`` (a restart forgets them)."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self._records: dict[tuple[str, str, str], tuple[dict[str, Any], float]] = {}
        self._monotonic = time.monotonic
        self._next_sweep = 0.0

    def _live(self, key: tuple[str, str, str], now: float) -> dict[str, Any] | None:
        held = self._records.get(key)
        if held is None or held[1] <= now:
            return None
        return held[0]

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(60.0, self.ttl / 2)
        for key in [k for k, (_, until) in self._records.items() if until <= now]:
            del self._records[key]

    async def step(self, changes: Sequence[Change], only_open: bool = False) -> list[Step | None]:
        now = self._monotonic()
        self._sweep(now)
        out: list[Step | None] = []
        for change in changes:
            record = self._live(change.key, now)
            known = next(
                (e for e in (record or {}).get("ev", []) if e["id"] == change.event_id), None
            )
            if known is not None:
                out.append(_step_of(known))
                continue
            if only_open and (record is None or record["f"]):
                out.append(None)
                continue
            state = None if record is None else State(record["c"], record["f"], record["q"])
            after, step = apply(state, change.status, change.final)
            if record is None:
                record = {
                    "first": change.event_id,
                    "at": change.received_at,
                    "ev": [],
                    "latest": {},
                }
            record.update(c=after.current, f=after.final, q=after.seq)
            record["ev"].append(_entry(change, step))
            if change.latest is not None:
                record["latest"] = change.latest
            self._records[change.key] = (record, now + self.ttl)
            out.append(step)
        return out

    async def lifecycles(self, tracking_id: str) -> list[Lifecycle]:
        now = self._monotonic()
        return [
            Lifecycle.from_record(key, record)
            for key, (record, until) in sorted(self._records.items())
            if key[2] == tracking_id and until > now
        ]

    async def get(self, key: tuple[str, str, str]) -> Lifecycle | None:
        record = self._live(key, self._monotonic())
        return None if record is None else Lifecycle.from_record(key, record)

    async def close(self) -> None:
        return None


# KEYS[1] the lifecycle, KEYS[2] its tracking id's index (one slot: the same hash tag).
# ARGV: event id, status, final (0/1), code, received_at, ttl, latest (JSON or ""),
# only_open (0/1), member name in the index. Returns the step as JSON, or false.
_STEP_FUNCTION = """
local function step(key, index, a)
  local raw = redis.call('GET', key)
  local life = false
  if raw then life = cjson.decode(raw) end
  if life then
    for _, e in ipairs(life.ev) do
      if e.id == a[1] then return cjson.encode(e) end
    end
  end
  if a[8] == '1' and ((not life) or life.f) then return false end
  local status, final = a[2], a[3] == '1'
  local entry
  if not life then
    life = {first = a[1], at = a[5], ev = {}, latest = cjson.decode('{}'), q = 0}
    entry = {seq = 1, prev = cjson.null, cur = status, fin = final, stale = false}
    life.c, life.f = status, final
  else
    local takes = (not life.f) or (life.c == 'timed_out' and final and status ~= 'timed_out')
    if takes then
      entry = {seq = life.q + 1, prev = life.c, cur = status, fin = final, stale = false}
      life.c, life.f = status, final
    else
      entry = {seq = life.q + 1, prev = life.c, cur = life.c, fin = life.f, stale = true}
    end
  end
  life.q = entry.seq
  entry.id, entry.code, entry.status, entry.at = a[1], a[4], status, a[5]
  table.insert(life.ev, entry)
  if a[7] ~= '' then life.latest = cjson.decode(a[7]) end
  redis.call('SET', key, cjson.encode(life), 'EX', a[6])
  redis.call('SADD', index, a[9])
  redis.call('EXPIRE', index, a[6])
  return cjson.encode(entry)
end
"""
_STEP = _STEP_FUNCTION + "return step(KEYS[1], KEYS[2], ARGV)\n"
# Standalone Redis (no slots): a chunk of a batch's changes in one call, KEYS in pairs as
# above; ARGV[1] the ttl, ARGV[2] only_open, ARGV[3] one JSON array with, per change, the
# other seven arguments above in order (id, status, final, code, received_at, latest,
# member): one argument for the chunk instead of nine per change, which redis-py would
# encode one by one. The answer is one JSON array (a step, or false, per change).
_STEP_MANY = (
    _STEP_FUNCTION
    + """
local changes = cjson.decode(ARGV[3])
local out = {}
for i, c in ipairs(changes) do
  local a = {c[1], c[2], c[3], c[4], c[5], ARGV[1], c[6], ARGV[2], c[7]}
  out[i] = step(KEYS[2 * i - 1], KEYS[2 * i], a) or 'false'
end
return '[' .. table.concat(out, ',') .. ']'
"""
)

_STEP_LUA, _STEP_MANY_LUA = Lua(_STEP), Lua(_STEP_MANY)
CHUNK = 128  # changes per call on standalone Redis: bounds how long one call holds it


class RedisLifecycles:
    """Lifecycles shared by every worker: one Redis or one Redis Cluster."""

    def __init__(self, link: RedisLink, ttl: int, prefix: str, *, owns_link: bool = False) -> None:
        self.link = link
        self.ttl = ttl
        self.prefix = f"{prefix}:life:"
        self.owns_link = owns_link

    def index(self, tracking_id: str) -> str:
        return f"{self.prefix}{{{tracking_id}}}"

    def key(self, key: tuple[str, str, str]) -> str:
        origin, family, tracking = key
        return f"{self.index(tracking)}:{origin}|{family}"

    async def step(self, changes: Sequence[Change], only_open: bool = False) -> list[Step | None]:
        if not changes:
            return []
        client = await self.link.client()
        ttl, open_only = str(self.ttl), "1" if only_open else "0"
        keys: list[tuple[str, str]] = []
        rows: list[tuple[str, ...]] = []  # per change: the script's ARGV but ttl and only_open
        for change in changes:
            latest = "" if change.latest is None else orjson.dumps(change.latest).decode()
            origin, family, tracking = change.key
            index = self.index(tracking)
            member = f"{origin}|{family}"
            keys.append((f"{index}:{member}", index))
            rows.append(
                (
                    change.event_id,
                    change.status,
                    "1" if change.final else "0",
                    change.code,
                    change.received_at,
                    latest,
                    member,
                )
            )
        if not self.link.cluster:
            many: list[tuple[list[str], list[str | bytes]]] = []
            for start in range(0, len(rows), CHUNK):
                chunk_keys = [k for pair in keys[start : start + CHUNK] for k in pair]
                packed = orjson.dumps(rows[start : start + CHUNK])
                many.append((chunk_keys, [ttl, open_only, packed]))
            entries = [
                e for answer in await _STEP_MANY_LUA.run(client, many) for e in orjson.loads(answer)
            ]
            return [None if not entry else _step_of(entry) for entry in entries]
        calls = [
            (pair, (*row[:5], ttl, row[5], open_only, row[6]))
            for pair, row in zip(keys, rows, strict=True)
        ]
        async with guarded():
            answers = await _STEP_LUA.run(client, calls)
        return [None if not answer else _step_of(orjson.loads(answer)) for answer in answers]

    async def get(self, key: tuple[str, str, str]) -> Lifecycle | None:
        client = await self.link.client()
        async with guarded():
            raw = await client.get(self.key(key))
        return None if raw is None else Lifecycle.from_record(key, orjson.loads(raw))

    async def lifecycles(self, tracking_id: str) -> list[Lifecycle]:
        client = await self.link.client()
        async with guarded():
            held = await client.smembers(self.index(tracking_id))
        members = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in held)
        found = []
        for member in members:
            origin, _, family = member.rpartition("|")
            lifecycle = await self.get((origin, family, tracking_id))
            if lifecycle is not None:
                found.append(lifecycle)
        return found

    async def close(self) -> None:
        if self.owns_link:
            await self.link.aclose()
