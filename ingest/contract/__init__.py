"""The contract as data, shipped with the package (contract section 8).

- ``event.schema.json``: JSON Schema (draft 2020-12) of the schema-2 event, ``timed_out``
  events included; ``postbacks schema`` prints it;
- ``openapi.yaml``: OpenAPI 3.1 of the HTTP intake;
- ``asyncapi.yaml``: AsyncAPI 3.0 of the AMQP side (its message payload is the JSON Schema).

These are files, read with :mod:`importlib.resources`, so an installed package has them too.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

EVENT_SCHEMA = "event.schema.json"
OPENAPI = "openapi.yaml"
ASYNCAPI = "asyncapi.yaml"
DOCUMENTS = (EVENT_SCHEMA, OPENAPI, ASYNCAPI)


def text(name: str) -> str:
    """One shipped document as text (``name`` one of :data:`DOCUMENTS`)."""
    if name not in DOCUMENTS:
        raise ValueError(f"no contract document {name!r}: one of {', '.join(DOCUMENTS)}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def event_schema() -> dict[str, Any]:
    """The JSON Schema of the event, parsed."""
    schema: dict[str, Any] = json.loads(text(EVENT_SCHEMA))
    return schema
