"""``postbacks status TRACKING_ID``: the lifecycles of one tracking id, as the store has them."""

from __future__ import annotations

from typing import Any

import orjson

from ingest.settings import Settings
from worker.lifecycles import Lifecycle
from worker.stores import open_stores


class Unknown(LookupError):
    """Nothing to show; ``str(exc)`` is the one line to print."""


async def lifecycles_of(settings: Settings, tracking_id: str) -> list[Lifecycle]:
    if not settings.redis_url:
        raise Unknown(
            "REDIS_URL is not set: lifecycles then live only in the worker's memory; set "
            "REDIS_URL to the workers' Redis"
        )
    stores = open_stores(settings)
    try:
        found = await stores.lifecycles.lifecycles(tracking_id)
    finally:
        await stores.close()
    if not found:
        raise Unknown(
            f"tracking id {tracking_id!r} is not known (never seen, or its lifecycle is older "
            f"than DEDUP_TTL, {settings.dedup_ttl} s)"
        )
    return found


def as_json(found: list[Lifecycle]) -> str:
    def one(life: Lifecycle) -> dict[str, Any]:
        return {
            "origin": life.origin,
            "family": life.family,
            "tracking_id": life.tracking_id,
            "current": life.current,
            "final": life.final,
            "seq": life.seq,
            "events": [
                {
                    "seq": e["seq"],
                    "code": e["code"],
                    "status": e["status"],
                    "stale": e["stale"],
                    "received_at": e["at"],
                    "event_id": e["id"],
                }
                for e in life.events
            ],
        }

    return orjson.dumps([one(life) for life in found], option=orjson.OPT_INDENT_2).decode()


def as_table(found: list[Lifecycle]) -> str:
    out: list[str] = []
    for life in found:
        final = "final" if life.final else "not final"
        out.append(
            f"{life.origin} {life.family} {life.tracking_id}: current {life.current} ({final}), "
            f"seq {life.seq}"
        )
        rows = [("seq", "code", "status", "stale", "received_at", "event_id")]
        rows += [
            (
                str(e["seq"]),
                e["code"],
                e["status"],
                "stale" if e["stale"] else "-",
                e["at"],
                e["id"],
            )
            for e in life.events
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [row[0].rjust(widths[0])] + [
                c.ljust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            out.append("  " + "  ".join(cells).rstrip())
        out.append("")
    return "\n".join(out).rstrip()
