"""Every event a test reads off the broker is held to the shipped JSON Schema (contract
section 8): :func:`check_event` raises ``AssertionError`` naming what does not conform."""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator

from ingest.contract import event_schema


@functools.cache
def validator() -> Draft202012Validator:
    schema = event_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(event: Any) -> list[str]:
    """What in ``event`` does not conform to the schema, one line each (``[]``: valid)."""
    return [
        f"{'/'.join(str(part) for part in error.absolute_path) or '(event)'}: {error.message}"
        for error in sorted(validator().iter_errors(event), key=lambda e: list(e.absolute_path))
    ]


def check_event(event: Any) -> Any:
    """``event`` unchanged when it conforms; else ``AssertionError`` with every problem."""
    found = problems(event)
    if found:
        raise AssertionError(
            "event does not conform to ingest/contract/event.schema.json:\n  "
            + "\n  ".join(found)
            + f"\nevent: {event!r}"
        )
    return event
