"""Every example of Sinch's documentation, posted over HTTP to ``postbacks run``, comes out
of a subscriber queue as exactly the contract's event."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.integration._helpers import expected_event_id
from tests.seeds import SEED_EXAMPLES
from tests.support import Stack, Subscriber, http_session, post, split_lifecycle

from ._helpers import parse_received_at, start_run

RECEIVED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
MEDIA = {"xml": "application/xml", "json": "application/json"}
# (name, body, content type, expected event without received_at and lifecycle) for every seed
# example: the worker sets received_at's time and the lifecycle, checked on their own.
SEEDS = [
    (
        name,
        body,
        MEDIA[fmt],
        {k: v for k, v in expected.items() if k not in ("received_at", "lifecycle")},
    )
    for name, body, fmt, expected in SEED_EXAMPLES
]


async def test_every_seed_example_becomes_exactly_the_contract_event(
    namespace: str, processes: Stack
) -> None:
    async with Subscriber(namespace, "everything", ["#"]) as subscriber:
        running = await start_run(processes)
        before = datetime.now(UTC)
        async with http_session() as session:
            for name, body, content_type, _ in SEEDS:
                status, text, _ = await post(session, running.postbacks, body, content_type)
                assert (name, status, text) == (name, 200, "OK")
        received = await subscriber.take(len(SEEDS), timeout=30, settle=1.0)
        after = datetime.now(UTC)
    assert len(received) == len(SEEDS), [item.event["code"] for item in received]
    by_id = {item.event["event_id"]: item for item in received}
    for name, _, _, expected in SEEDS:
        want_id = expected_event_id(expected)
        assert want_id in by_id, f"{name}: no event with id {want_id}; got {list(by_id)}"
        item = by_id[want_id]
        event, _lifecycle = split_lifecycle(item.event)
        received_at = event.pop("received_at")
        assert (name, event) == (name, {**expected, "event_id": want_id})
        assert RECEIVED_AT.fullmatch(received_at), (name, received_at)
        stamp = parse_received_at(received_at)
        assert before - timedelta(seconds=1) <= stamp <= after, (name, received_at)
        assert item.message.message_id == want_id
        routing = ".".join(
            str(expected[key]).lower() for key in ("origin", "family", "status", "code")
        )
        assert item.message.routing_key == routing
