"""The shipped AsyncAPI document (contract section 8) held to the code: its addresses are
the names ``ingest.names`` gives, its routing-key pattern and examples are what
``routing_key`` makes, its headers are what ``amqp_headers`` and the quarantine write, and
its event payload is the shipped JSON Schema."""

from __future__ import annotations

from typing import Any

import yaml

from ingest import contract
from ingest.envelope import Record
from ingest.event import amqp_headers, routing_key
from ingest.lifecycle import timed_out_event
from ingest.names import Names
from tests.seeds import JSON_N101, XML_E002, XML_N102_BINARY
from worker.quarantine import headers_of

from ._support import event_of

MO_N401 = b"<postback><origin>MMS_MO</origin><code>N401</code></postback>"
DOC: dict[str, Any] = yaml.safe_load(contract.text(contract.ASYNCAPI))
CHANNELS: dict[str, Any] = DOC["channels"]
MESSAGES: dict[str, Any] = DOC["components"]["messages"]


def address(channel: str, namespace: str, name: str = "billing") -> str:
    template: str = CHANNELS[channel]["address"]
    return template.replace("{namespace}", namespace).replace("{name}", name)


def test_is_asyncapi_3_over_amqp() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert {server["protocol"] for server in DOC["servers"].values()} == {"amqp"}
    for operation in DOC["operations"].values():
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in CHANNELS


def test_addresses_are_the_names_of_the_code() -> None:
    default = DOC["components"]["parameters"]["namespace"]["default"]
    assert default == Names().namespace
    for namespace in (default, "t-acme.eu"):
        names = Names(namespace)
        assert address("events", namespace) == names.events
        assert address("unrouted", namespace) == names.unrouted
        assert address("quarantine", namespace) == names.quarantine
        assert address("subscriber", namespace) == names.subscriber("billing")
        assert address("history", namespace) == names.history
        for channel in CHANNELS.values():  # the binding names the same exchange or queue
            amqp = channel["bindings"]["amqp"]
            bound = amqp["exchange" if amqp["is"] == "routingKey" else "queue"]["name"]
            assert bound == channel["address"]
        assert CHANNELS["events"]["x-alternate-exchange"] == CHANNELS["unrouted"]["address"]
        assert CHANNELS["unrouted"]["x-queue"]["name"] == CHANNELS["unrouted"]["address"]


def test_exchange_types_are_documented() -> None:
    assert CHANNELS["events"]["bindings"]["amqp"]["exchange"]["type"] == "topic"
    assert CHANNELS["unrouted"]["bindings"]["amqp"]["exchange"]["type"] == "fanout"
    for queue in ("subscriber", "quarantine"):
        assert CHANNELS[queue]["x-queue-type"] == "quorum"
    assert CHANNELS["history"]["x-queue-type"] == "stream"


def test_routing_key_pattern_and_examples_are_what_routing_key_makes() -> None:
    documented = CHANNELS["events"]["x-routing-key"]
    event = {"origin": "Origin", "family": "family", "status": "status", "code": "Code"}
    expected = documented["pattern"].format(**{k: v.lower() for k, v in event.items()})
    assert routing_key(event) == expected
    n101 = event_of(JSON_N101, "json")
    made = {
        routing_key(event_of(XML_N102_BINARY, "xml")),
        routing_key(event_of(XML_E002, "xml")),
        routing_key(event_of(MO_N401, "xml")),
        routing_key(timed_out_event(n101, n101["event_id"], 60, "2024-05-01T10:00:00.000000Z")),
    }
    assert set(documented["examples"]) == made


def test_event_headers_are_what_amqp_headers_writes() -> None:
    headers = MESSAGES["event"]["headers"]
    with_tracking = amqp_headers(event_of(XML_N102_BINARY, "xml"))
    without = amqp_headers({**event_of(XML_N102_BINARY, "xml"), "tracking_id": None})
    assert set(headers["properties"]) == set(with_tracking)
    assert set(headers["required"]) == set(without)
    example = MESSAGES["event"]["examples"][0]["headers"]
    assert example == with_tracking


def test_quarantine_headers_are_what_the_worker_writes() -> None:
    headers = MESSAGES["quarantined"]["headers"]
    record = Record("p-1", "2024-05-01T10:00:00.000000Z", "xml", "latin-1", b"<postback/>")
    assert set(headers["properties"]) == set(headers_of(record, "not a postback"))
    assert headers["required"] == ["x-error"]


def test_event_payload_is_the_shipped_json_schema() -> None:
    ref = MESSAGES["event"]["payload"]["$ref"]
    assert ref == f"./{contract.EVENT_SCHEMA}"
    assert contract.event_schema()["$schema"].endswith("2020-12/schema")
