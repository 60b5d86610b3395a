"""The shipped JSON Schema of the event (contract section 8): it is a valid draft 2020-12
schema, it names exactly the keys and values the code writes, it accepts every event the
code makes (the seed examples, lifecycles, ``timed_out``), and it rejects wrong ones."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ingest.codes import CODE_TABLE, UNKNOWN, classify
from ingest.contract import event_schema
from ingest.event import EVENT_KEYS, LIFECYCLE_KEYS, with_lifecycle
from ingest.lifecycle import TIMED_OUT, TIMER_FAMILIES, TIMER_FORMAT, Step, timed_out_event
from tests.schema_check import check_event, problems
from tests.seeds import JSON_N101, SEED_EXAMPLES
from worker.cli import main

from ._support import event_of

SCHEMA = event_schema()


def statuses() -> set[str]:
    """Every status the code can write: the table's, E102/E502 refined, unknown, timed_out."""
    refined = {classify("E102", text).status for text in ("Expired", "Failed", "Rejected")}
    return {c.status for c in CODE_TABLE.values()} | refined | {UNKNOWN.status, TIMED_OUT}


def test_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_names_exactly_the_keys_and_values_the_code_writes() -> None:
    assert SCHEMA["required"] == list(EVENT_KEYS)
    assert list(SCHEMA["properties"]) == list(EVENT_KEYS)
    assert SCHEMA["additionalProperties"] is False
    defs = SCHEMA["$defs"]
    families = {c.family for c in CODE_TABLE.values()} | {UNKNOWN.family}
    assert set(defs["family"]["enum"]) == families
    assert set(defs["status"]["enum"]) == statuses()
    assert set(SCHEMA["properties"]["format"]["enum"]) == {"xml", "json", TIMER_FORMAT}
    assert defs["lifecycle"]["required"] == list(LIFECYCLE_KEYS)
    assert defs["lifecycle"]["additionalProperties"] is False
    timer = SCHEMA["allOf"][1]["then"]["properties"]
    assert set(timer["family"]["enum"]) == TIMER_FAMILIES


FIRST = Step(1, None, "sent", False, False)


@pytest.mark.parametrize(("name", "body", "fmt", "_expected"), SEED_EXAMPLES)
def test_accepts_every_seed_example(name: str, body: bytes, fmt: str, _expected: Any) -> None:
    event = event_of(body, fmt)
    step = None if event["tracking_id"] is None else Step(3, "sent", event["status"], True, False)
    check_event(with_lifecycle(event, step))


def n101() -> dict[str, Any]:
    return with_lifecycle(event_of(JSON_N101, "json"), FIRST)


def test_accepts_stale_unknown_and_timed_out_events() -> None:
    check_event({**n101(), "lifecycle": Step(4, "delivered", "delivered", True, True).as_dict()})
    unknown = event_of(b'{"origin": "MMS_MT", "code": "x777", "tracking-id": "t"}', "json")
    check_event(with_lifecycle(unknown, FIRST))
    no_tracking = event_of(b"<postback><origin>MMS_MT</origin><code>N102</code></postback>", "xml")
    check_event(with_lifecycle(no_tracking, None))
    latest = n101()
    timed_out = timed_out_event(latest, latest["event_id"], 3600, "2024-05-01T11:00:00.000001Z")
    check_event(with_lifecycle(timed_out, Step(2, "sent", TIMED_OUT, True, False)))


def broken(change: str) -> dict[str, Any]:
    event = copy.deepcopy(n101())
    if change == "missing key":
        del event["handset"]
    elif change == "extra key":
        event["colour"] = "blue"
    elif change == "number instead of string":
        event["operator_id"] = 31003
    elif change == "empty string instead of null":
        event["mms_id"] = ""
    elif change == "bad status":
        event["status"] = "Delivered"
    elif change == "bad family":
        event["family"] = "billing"
    elif change == "bad format":
        event["format"] = "yaml"
    elif change == "schema 1":
        event["schema"] = 1
    elif change == "upper-case event id":
        event["event_id"] = event["event_id"].upper()
    elif change == "received_at without microseconds":
        event["received_at"] = "2024-05-01T10:00:00Z"
    elif change == "received_at with an offset":
        event["received_at"] = "2024-05-01T10:00:00.123456+00:00"
    elif change == "lifecycle missing":
        event["lifecycle"] = None
    elif change == "lifecycle without seq":
        del event["lifecycle"]["seq"]
    elif change == "lifecycle seq 0":
        event["lifecycle"]["seq"] = 0
    elif change == "lifecycle seq as text":
        event["lifecycle"]["seq"] = "1"
    elif change == "lifecycle stale as text":
        event["lifecycle"]["stale"] = "false"
    elif change == "lifecycle extra key":
        event["lifecycle"]["ttl"] = 5
    elif change == "lifecycle bad current":
        event["lifecycle"]["current"] = "done"
    elif change == "lifecycle as a list":
        event["lifecycle"] = [1, None, "sent", False, False]
    elif change == "lifecycle without tracking_id":
        event["tracking_id"] = None
    elif change == "content_files not a list":
        event["content_files"] = "https://example.com/a.jpg"
    elif change == "timed_out from a postback":
        event["status"] = TIMED_OUT
    elif change == "timer with a real code":
        event.update(status=TIMED_OUT, format=TIMER_FORMAT, final=True, status_text=None)
        event.update(status_details=None, timestamp=None)
        event["extra"] = {"after_seconds": "60", "last_code": "N101", "first_event_id": "0" * 64}
    else:
        raise AssertionError(change)
    return event


@pytest.mark.parametrize(
    "change",
    [
        "missing key",
        "extra key",
        "number instead of string",
        "empty string instead of null",
        "bad status",
        "bad family",
        "bad format",
        "schema 1",
        "upper-case event id",
        "received_at without microseconds",
        "received_at with an offset",
        "lifecycle missing",
        "lifecycle without seq",
        "lifecycle seq 0",
        "lifecycle seq as text",
        "lifecycle stale as text",
        "lifecycle extra key",
        "lifecycle bad current",
        "lifecycle as a list",
        "lifecycle without tracking_id",
        "content_files not a list",
        "timed_out from a postback",
        "timer with a real code",
    ],
)
def test_rejects_a_wrong_event(change: str) -> None:
    event = broken(change)
    assert problems(event), f"{change}: accepted"
    with pytest.raises(AssertionError, match="does not conform"):
        check_event(event)


def test_postbacks_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA
