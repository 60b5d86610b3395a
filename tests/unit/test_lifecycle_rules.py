"""The lifecycle rules of contract section 6, pure: every pair of codes of the code table in
both orders, the ``timed_out`` exceptions, and a property over any order of any events.

Expectations are written from the contract's wording (first event sets ``current``; a
non-final lifecycle takes the new status; a final one keeps it and the event is stale; a
real final after ``timed_out`` becomes current), not from :func:`ingest.lifecycle.apply`.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.codes import CODE_TABLE
from ingest.event import normalize
from ingest.lifecycle import (
    TIMED_OUT,
    State,
    Step,
    apply,
    arms_timer,
    key,
    timed_out_event,
)

from ._support import RECEIVED_AT

# Every (code, Sinch's status text) the code table tells apart: each code, plus E102/E502
# refined to expired and failed by their text, plus a code Sinch may add.
CASES: list[tuple[str, str | None]] = [
    *((code, None) for code in CODE_TABLE),
    ("E102", "Message Expired"),
    ("E102", "Message Failed"),
    ("E502", "Expired"),
    ("E502", "failed"),
    ("X777", None),
]


def event(code: str, text: str | None = None, tracking: str = "t-1") -> dict[str, Any]:
    fields = {"origin": "MMS_MT", "code": code, "tracking-id": tracking, "status": text}
    return normalize(fields, "xml", RECEIVED_AT)


class Store:
    """The smallest lifecycle store: one State per key, the rules applied in order."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str, str], State] = {}

    def step(self, data: dict[str, Any]) -> Step:
        lifecycle = key(data)
        assert lifecycle is not None
        state, step = apply(self.states.get(lifecycle), data["status"], data["final"])
        self.states[lifecycle] = state
        return step


def _name(case: tuple[str, str | None]) -> str:
    return case[0] if case[1] is None else f"{case[0]}({case[1]})"


PAIRS = [
    pytest.param(first, second, id=f"{_name(first)}-then-{_name(second)}")
    for first, second in itertools.product(CASES, repeat=2)
]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_every_pair_of_codes_in_either_order(
    first: tuple[str, str | None], second: tuple[str, str | None]
) -> None:
    one, two = event(*first), event(*second)
    store = Store()
    step_one, step_two = store.step(one), store.step(two)
    # The first event of a lifecycle sets current to its status.
    assert step_one == Step(1, None, one["status"], one["final"], False)
    if one["family"] != two["family"]:
        # Another family is another lifecycle: it starts its own.
        assert step_two == Step(1, None, two["status"], two["final"], False)
        return
    if not one["final"]:
        # A lifecycle not final takes the new status.
        assert step_two == Step(2, one["status"], two["status"], two["final"], False)
    else:
        # A final lifecycle keeps its status; the event is stale.
        assert step_two == Step(2, one["status"], one["status"], True, True)


def test_n101_after_its_n102_is_stale_and_n102_after_n101_is_current() -> None:
    store = Store()
    assert store.step(event("N102")) == Step(1, None, "delivered", True, False)
    assert store.step(event("N101")) == Step(2, "delivered", "delivered", True, True)
    other = Store()
    assert other.step(event("N101")) == Step(1, None, "sent", False, False)
    assert other.step(event("N102")) == Step(2, "sent", "delivered", True, False)


def test_a_second_different_final_is_stale() -> None:
    store = Store()
    store.step(event("N102"))
    assert store.step(event("E101")) == Step(2, "delivered", "delivered", True, True)


def test_lifecycles_are_kept_apart_by_origin_family_and_tracking_id() -> None:
    store = Store()
    store.step(event("N102", tracking="a"))
    assert store.step(event("N101", tracking="b")).seq == 1
    assert store.step(event("N501", tracking="a")).seq == 1  # discovery, not delivery
    mo = {**event("N101", tracking="a"), "origin": "MMS_MO"}
    assert store.step(mo).seq == 1
    assert key(event("N101", tracking="a")) == ("MMS_MT", "delivery", "a")
    assert key({**event("N101"), "tracking_id": None}) is None


def _timeout_of(store: Store, latest: dict[str, Any]) -> Step:
    return store.step(timed_out_event(latest, "f" * 64, 2, RECEIVED_AT))


FINAL_RECEIPTS = [
    pytest.param(code, text, id=_name((code, text)))
    for code, text in CASES
    if event(code, text)["final"] and event(code, text)["family"] in ("delivery", "discovery")
]


@pytest.mark.parametrize(("code", "text"), FINAL_RECEIPTS)
def test_a_real_final_after_timed_out_becomes_current(code: str, text: str | None) -> None:
    store = Store()
    late = event(code, text)
    sent = "N101" if late["family"] == "delivery" else "N501"
    first = event(sent)
    store.step(first)
    assert _timeout_of(store, first) == Step(2, "sent", TIMED_OUT, True, False)
    assert store.step(late) == Step(3, TIMED_OUT, late["status"], True, False)
    # Then the lifecycle is final as any other: a late non-final, a timer, are stale.
    done = late["status"]
    assert store.step(event(sent, "Sent (late)")) == Step(4, done, done, True, True)
    assert _timeout_of(store, first) == Step(5, done, done, True, True)


def test_non_final_after_timed_out_is_stale() -> None:
    store = Store()
    first = event("N101")
    store.step(first)
    _timeout_of(store, first)
    assert store.step(event("N101", "Sent again")) == Step(3, TIMED_OUT, TIMED_OUT, True, True)
    assert store.step(event("X777")) == Step(1, None, "unknown", False, False)  # unknown family


def test_timed_out_after_a_final_is_stale() -> None:
    store = Store()
    first = event("N101")
    store.step(first)
    store.step(event("N102"))
    assert _timeout_of(store, first) == Step(3, "delivered", "delivered", True, True)


def test_a_second_timed_out_is_stale() -> None:
    store = Store()
    first = event("N101")
    store.step(first)
    _timeout_of(store, first)
    assert _timeout_of(store, first) == Step(3, TIMED_OUT, TIMED_OUT, True, True)


def test_a_timer_is_armed_by_a_first_non_final_receipt_lifecycle_only() -> None:
    first = event("N101")
    _, step = apply(None, first["status"], first["final"])
    assert arms_timer(first, step, 259200)
    assert not arms_timer(first, step, 0)  # timeouts off
    _, later = apply(State("sent", False, 1), "sent", False)
    assert not arms_timer(first, later, 259200)
    final = event("N102")
    assert not arms_timer(final, apply(None, "delivered", True)[1], 259200)
    discovery = event("N501")
    assert arms_timer(discovery, apply(None, "sent", False)[1], 5)
    send = event("N013")  # family send: no receipt is waited for
    assert not arms_timer(send, apply(None, "transcoded", False)[1], 5)
    unknown = event("X777")
    assert not arms_timer(unknown, apply(None, "unknown", False)[1], 5)


# --------------------------------------------------------------------------------------
# Property: any events of one lifecycle, in any order.
# --------------------------------------------------------------------------------------

DELIVERY = [(c.status, c.final) for c in CODE_TABLE.values() if c.family == "delivery"]
STATUSES = st.sampled_from([*DELIVERY, ("expired", True), (TIMED_OUT, True)])


def becomes_current(before: State | None, status: str, final: bool) -> bool:
    """The contract's rule for one event, written independently of ``apply``."""
    if before is None or not before.final:
        return True
    return before.current == TIMED_OUT and final and status != TIMED_OUT


def model(events: list[tuple[str, bool]]) -> tuple[str, bool]:
    """The contract's state of a lifecycle after ``events`` in this order."""
    current, final = events[0]
    for status, is_final in events[1:]:
        if becomes_current(State(current, final, 1), status, is_final):
            current, final = status, is_final
    return current, final


@settings(max_examples=400, deadline=None)
@given(events=st.lists(STATUSES, min_size=1, max_size=12), seed=st.randoms())
def test_highest_seq_carries_the_state_the_rules_leave(
    events: list[tuple[str, bool]], seed: random.Random
) -> None:
    order = list(events)
    seed.shuffle(order)  # the order the workers applied them in
    state: State | None = None
    steps: list[Step] = []
    for status, final in order:
        before = state
        state, step = apply(state, status, final)
        # previous is the current before; the step's current/final are the state's after.
        assert step.previous == (None if before is None else before.current)
        assert (step.current, step.final, step.seq) == (state.current, state.final, state.seq)
        assert step.stale is not becomes_current(before, status, final)
        if step.stale:
            assert before is not None and (state.current, state.final) == (
                before.current,
                before.final,
            )
        else:
            assert (state.current, state.final) == (status, final)
        steps.append(step)
    assert state is not None
    seqs = [step.seq for step in steps]
    assert seqs[0] == 1
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert (state.current, state.final) == model(order)
    # A subscriber receives the steps in any order and keeps the highest seq.
    delivered = list(steps)
    seed.shuffle(delivered)
    kept = max(delivered, key=lambda step: step.seq)
    assert (kept.current, kept.final) == (state.current, state.final) == model(order)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(STATUSES, min_size=1, max_size=12),
    gaps=st.lists(st.integers(0, 5), max_size=12),
    seed=st.randoms(),
)
def test_seq_gaps_change_nothing_for_a_subscriber(
    events: list[tuple[str, bool]], gaps: list[int], seed: random.Random
) -> None:
    """The contract allows gaps in seq (a store may skip numbers): seqs still increase, and
    the highest still carries the state."""
    state: State | None = None
    steps: list[Step] = []
    for i, (status, final) in enumerate(events):
        state, step = apply(state, status, final)
        steps.append(step)
        if i < len(gaps):
            state = State(state.current, state.final, state.seq + gaps[i])
    assert all(a.seq < b.seq for a, b in itertools.pairwise(steps))
    seed.shuffle(steps)
    kept = max(steps, key=lambda step: step.seq)
    assert (kept.current, kept.final) == model(events)
