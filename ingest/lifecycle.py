"""Lifecycles: the rules that keep each message's state. Pure: no I/O.

A lifecycle is the sequence of published events sharing (``origin``, ``family``,
``tracking_id``); its state is its ``current`` status (contract section 6):

- the first event sets ``current`` to its status;
- an event whose lifecycle is not final becomes ``current``;
- an event whose lifecycle is final leaves ``current`` as it is and is *stale*, except a
  real final status after ``timed_out``, which becomes ``current``.

Every applied event gets a ``seq``, one more than the lifecycle's last, so a subscriber that
keeps the event with the highest ``seq`` per lifecycle holds the state these rules define.
The stores (``worker.lifecycles``) apply :func:`apply` atomically; the Redis one runs the
same rules as a script, and a test holds the two to each other.

:func:`timed_out_event` builds the synthetic event a receipt timer publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest.event import EVENT_KEYS, SCHEMA, event_id

TIMED_OUT = "timed_out"
TIMEOUT_CODE = "TIMEOUT"
# The ``format`` of a ``timed_out`` event: made by a timer, not received.
TIMER_FORMAT = "timer"
# Families whose lifecycles wait for a receipt: a timer is armed when one starts non-final.
TIMER_FAMILIES = frozenset({"delivery", "discovery"})


@dataclass(frozen=True, slots=True)
class State:
    """A lifecycle's state after its latest applied event."""

    current: str
    final: bool
    seq: int


@dataclass(frozen=True, slots=True)
class Step:
    """Where one event stands in its lifecycle: the event's ``lifecycle`` field."""

    seq: int
    previous: str | None
    current: str
    final: bool
    stale: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "previous": self.previous,
            "current": self.current,
            "final": self.final,
            "stale": self.stale,
        }


def apply(state: State | None, status: str, final: bool) -> tuple[State, Step]:
    """The lifecycle after an event of ``status`` (``final`` as the code table says), and
    the event's step."""
    if state is None:
        return State(status, final, 1), Step(1, None, status, final, False)
    seq = state.seq + 1
    takes_over = not state.final or (state.current == TIMED_OUT and final and status != TIMED_OUT)
    if takes_over:
        return State(status, final, seq), Step(seq, state.current, status, final, False)
    return (
        State(state.current, state.final, seq),
        Step(seq, state.current, state.current, state.final, True),
    )


def key(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """(origin, family, tracking id) of an event's lifecycle; ``None`` without a tracking id."""
    tracking = event.get("tracking_id")
    if tracking is None:
        return None
    return (str(event["origin"]), str(event["family"]), str(tracking))


def arms_timer(event: dict[str, Any], step: Step, dlr_timeout: int) -> bool:
    """Whether this event starts a lifecycle that waits for a receipt: its first event, not
    final, of a family with receipts, and timeouts on."""
    return (
        dlr_timeout > 0
        and step.seq == 1
        and not step.final
        and str(event["family"]) in TIMER_FAMILIES
    )


# The named fields a ``timed_out`` event copies from its lifecycle's latest event.
_COPIED = ("sent_as", "client_reference", "mms_id", "operator_id", "from", "to")


def timed_out_event(
    latest: dict[str, Any], first_event_id: str, after_seconds: int, made_at: str
) -> dict[str, Any]:
    """The synthetic ``timed_out`` event of a lifecycle still not final ``after_seconds``
    (``DLR_TIMEOUT``) after its first event (contract section 6, Receipt timeouts).

    ``latest`` is the lifecycle's latest event, ``first_event_id`` the id of its first,
    ``made_at`` now as a ``received_at``. The id is the identity rule's, which leaves
    ``received_at`` out: two timers of one lifecycle make one id, and the second is a
    duplicate. ``lifecycle`` is ``None``: the worker sets it from the store's step.
    Its routing key is ``ORIGIN.FAMILY.timed_out.timeout``.
    """
    event: dict[str, Any] = {key: None for key in EVENT_KEYS}
    event.update(
        schema=SCHEMA,
        origin=latest["origin"],
        code=TIMEOUT_CODE,
        family=latest["family"],
        status=TIMED_OUT,
        final=True,
        tracking_id=latest["tracking_id"],
        content_files=[],
        copy_to=[],
        extra={
            "after_seconds": str(after_seconds),
            "last_code": str(latest["code"]),
            "first_event_id": first_event_id,
        },
        format=TIMER_FORMAT,
        received_at=made_at,
        lifecycle=None,
    )
    for name in _COPIED:
        event[name] = latest.get(name)
    event["event_id"] = event_id(event)
    return event
