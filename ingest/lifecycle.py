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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TIMED_OUT = "timed_out"
TIMEOUT_CODE = "TIMEOUT"
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
    takes_over = not state.final or (
        state.current == TIMED_OUT and final and status != TIMED_OUT
    )
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
