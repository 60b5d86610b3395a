"""The worker's stores, built once where the worker is wired: with ``REDIS_URL`` one Redis
link (standalone or Cluster, noticed on first use) shared by the dedup and lifecycle
stores; without it, both in process (one worker only)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.settings import Settings
from worker.dedup import DedupStore, MemoryDedup, RedisDedup
from worker.lifecycles import LifecycleStore, MemoryLifecycles, RedisLifecycles
from worker.redis_link import RedisLink


@dataclass
class Stores:
    dedup: DedupStore
    lifecycles: LifecycleStore
    link: RedisLink | None

    async def close(self) -> None:
        if self.link is not None:
            await self.link.aclose()


def open_stores(settings: Settings) -> Stores:
    ttl = settings.dedup_ttl
    if not settings.redis_url:
        return Stores(MemoryDedup(ttl), MemoryLifecycles(ttl), None)
    link = RedisLink(settings.redis_url)
    return Stores(
        RedisDedup(link, ttl, settings.namespace),
        RedisLifecycles(link, ttl, settings.namespace),
        link,
    )
