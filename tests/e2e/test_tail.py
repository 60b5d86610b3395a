"""``postbacks tail`` prints each event as one JSON line as soon as it is fanned out; a
pattern keeps only the matching ones; SIGTERM ends it with status 0."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson

from tests.support import Stack, http_session, post, postback_json, postback_xml

from ._helpers import start_run, tail


async def test_tail_prints_one_json_event_per_line_live_and_filters(
    namespace: str, processes: Stack, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack, http_session() as session:
        running, everything, failures = await asyncio.gather(
            start_run(processes),
            stack.enter_async_context(tail(namespace, tmp_path)),
            stack.enter_async_context(tail(namespace, tmp_path, "#.failed.#")),
        )
        assert (await post(session, running.postbacks, postback_xml("N102", "tail-1")))[0] == 200
        first = orjson.loads(await everything.line())
        # Printed live: the first line is there before anything else is posted.
        assert (first["code"], first["tracking_id"]) == ("N102", "tail-1")
        body = postback_json("E101", "tail-2", status="Message Failed")
        assert (await post(session, running.postbacks, body, "application/json"))[0] == 200
        second = orjson.loads(await everything.line())
        failed = orjson.loads(await failures.line())
        assert (second["code"], second["format"]) == ("E101", "json")
        assert failed == second
        assert await failures.no_line(0.5) == b""  # the N102 did not match #.failed.#
        assert await everything.no_line(0.3) == b""
        assert set(first) >= {"schema", "event_id", "received_at"}
        assert await everything.stop() == 0
        assert await failures.stop() == 0
