"""Lua scripts run by SHA (by text on a Redis Cluster), in one pipeline per batch.

``EVALSHA`` sends 40 bytes where ``EVAL`` sends the whole script for every call. Each
script is loaded (``SCRIPT LOAD``) the first time a client runs it. A server that does not
hold it all the same (a fresh one, ``SCRIPT FLUSH``) answers ``NOSCRIPT``; the batch then
runs again with ``EVAL``, which also leaves the script in its cache for the next batches.
Running a batch twice is safe because every script run this way is idempotent: a step
already applied gives the same answer again, and a settle or release compares before it
writes. On a Redis Cluster the scripts go by ``EVAL``: redis-py refuses ``EVALSHA`` in a
cluster pipeline, and a replica promoted by a failover may not hold them.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

Call = tuple[Sequence[str], Sequence[str | bytes]]  # (keys, args) of one script call
# The scripts loaded (SCRIPT LOAD) through each client, so each is loaded once per client.
_LOADED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class Lua:
    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def run(self, client: Any, calls: Sequence[Call]) -> list[Any]:
        """Each call's answer, in order: one pipeline (one round trip per node)."""
        if isinstance(client, RedisCluster):
            # redis-py refuses EVALSHA in a cluster pipeline ("blocked when running redis in
            # cluster mode"); EVAL is routed by its keys' slot.
            return await self._pipeline(client, calls, by_sha=False)
        loaded = _LOADED.setdefault(client, set())
        if self.sha not in loaded:
            await client.script_load(self.text)  # on a cluster: on every master
            loaded.add(self.sha)
        try:
            return await self._pipeline(client, calls, by_sha=True)
        except ResponseError as exc:
            if not isinstance(exc, NoScriptError) and "NOSCRIPT" not in str(exc):
                raise
        return await self._pipeline(client, calls, by_sha=False)

    async def _pipeline(self, client: Any, calls: Sequence[Call], *, by_sha: bool) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        if by_sha:
            # execute_command: redis-py's cluster pipeline blocks its evalsha method, though
            # it routes EVALSHA by its keys like EVAL.
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        else:
            for keys, args in calls:
                pipe.eval(self.text, len(keys), *keys, *args)
        answers: list[Any] = await pipe.execute()
        return answers
