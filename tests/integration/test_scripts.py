"""worker.scripts: scripts run by SHA, loaded once per client, and a batch that meets a
node without the script (NOSCRIPT: a fresh node, a failover) runs again with EVAL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support import REDIS_URL
from worker import scripts
from worker.redis_link import RedisLink
from worker.scripts import Lua


@pytest.fixture
async def link() -> AsyncIterator[RedisLink]:
    made = RedisLink(REDIS_URL)
    yield made
    await made.aclose()


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from redis.asyncio.client import Pipeline

    sent: list[str] = []
    original = Pipeline._execute_pipeline

    async def counting(pipe: Pipeline, connection: Any, commands: Any, raise_on_error: bool) -> Any:
        sent.append(str(commands[0][0][0]))
        return await original(pipe, connection, commands, raise_on_error)

    monkeypatch.setattr(Pipeline, "_execute_pipeline", counting)
    return sent


async def test_a_script_is_loaded_once_then_run_by_sha(
    link: RedisLink, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Lua(f"-- {namespace}\nreturn ARGV[1] .. KEYS[1]")
    client = await link.client()
    sent = _counting(monkeypatch)
    calls = [((f"{namespace}:k{i}",), (str(i),)) for i in range(3)]
    expected = [f"{i}{namespace}:k{i}".encode() for i in range(3)]
    assert await script.run(client, calls) == expected
    assert await script.run(client, calls) == expected
    assert sent == ["EVALSHA", "EVALSHA"]
    assert script.sha in scripts._LOADED[client]


async def test_a_node_without_the_script_makes_the_batch_run_again_with_eval(
    link: RedisLink, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Lua(f"-- {namespace} never loaded\nreturn tonumber(ARGV[1]) + 1")
    client = await link.client()
    scripts._LOADED.setdefault(client, set()).add(script.sha)  # as after a failover
    sent = _counting(monkeypatch)
    calls = [((f"{namespace}:k",), ("41",)), ((f"{namespace}:k",), ("1",))]
    assert await script.run(client, calls) == [42, 2]
    assert sent == ["EVALSHA", "EVAL"]
    # EVAL left the script on the node: the next batch goes by SHA alone.
    assert await script.run(client, calls) == [42, 2]
    assert sent == ["EVALSHA", "EVAL", "EVALSHA"]


async def test_other_errors_are_not_taken_for_noscript(link: RedisLink, namespace: str) -> None:
    from redis.exceptions import ResponseError

    script = Lua(f"-- {namespace}\nreturn redis.error_reply('NOPE broken')")
    client = await link.client()
    with pytest.raises(ResponseError, match="NOPE"):
        await script.run(client, [((f"{namespace}:k",), ())])
