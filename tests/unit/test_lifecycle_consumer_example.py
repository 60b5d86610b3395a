"""examples/lifecycle_consumer.py: the highest-seq rule of its state keeping, without a broker."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

from ingest.event import Event, with_lifecycle
from ingest.lifecycle import State, apply, timed_out_event
from tests.seeds import JSON_N101, JSON_N102, XML_N003

from ._support import event_of

ROOT_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lifecycle_consumer", ROOT_EXAMPLES / "lifecycle_consumer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()


def published(*events: dict[str, Any]) -> list[Event]:
    """The events as the workers publish them, in this order: each with its step."""
    state: State | None = None
    out = []
    for data in events:
        state, step = apply(state, data["status"], data["final"])
        out.append(Event.from_dict(with_lifecycle(data, step)))
    return out


def test_whatever_order_they_arrive_in_the_highest_seq_is_kept() -> None:
    n101, n102 = event_of(JSON_N101, "json"), event_of(JSON_N102, "json")
    timeout = timed_out_event(n101, n101["event_id"], 2, "2026-04-24T18:30:02.000000Z")
    events = published(n101, timeout, n102, {**n101, "status_text": "again"})
    for order in itertools.permutations(events):
        states = EXAMPLE.States()
        for event in order:
            states.offer(event)
        assert states.current("MMS_MT", "delivery", "abc123xyz") == "delivered"


def test_lines_say_what_changed_and_stay_quiet_otherwise() -> None:
    n101, n102 = event_of(JSON_N101, "json"), event_of(JSON_N102, "json")
    timeout = timed_out_event(n101, n101["event_id"], 259200, "2026-04-27T18:30:00.000000Z")
    sent, timed_out, delivered, stale = published(n101, timeout, n102, n101)
    states = EXAMPLE.States(show_stale=True)
    assert states.offer(sent).startswith("pending  MMS_MT/delivery tracking=abc123xyz  - -> sent")
    line = states.offer(timed_out)
    assert "sent -> timed_out  (seq 2, TIMEOUT)  no receipt after 259200 s, last code N101" in line
    assert "timed_out -> delivered  (seq 3, N102)" in states.offer(delivered)
    assert "N101 sent ignored: still delivered (seq 4)" in states.offer(stale)
    assert states.offer(sent) is None  # older than what is kept
    quiet = EXAMPLE.States()
    quiet.offer(delivered)
    assert quiet.offer(stale) is None  # stale lines only when asked for
    no_tracking = Event.from_dict({**event_of(XML_N003, "xml"), "tracking_id": None})
    assert states.offer(no_tracking) is None
