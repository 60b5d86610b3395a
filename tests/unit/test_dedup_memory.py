"""The in-process dedup store: the same claim semantics as Redis, without I/O.

The clock is injected (``store._monotonic``), so expiry and the sweep are pinned to the
exact second: a mark lives ``ttl`` seconds (free again at ``claimed + ttl``, not before), a
sweep runs at most every ``min(60, ttl / 2)`` seconds and removes expired marks only.
"""

from __future__ import annotations

from worker.dedup import SETTLED, MemoryDedup, verdicts


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store_with_clock(ttl: int, now: float = 1000.0) -> tuple[MemoryDedup, Clock]:
    store = MemoryDedup(ttl=ttl)
    clock = Clock(now)
    store._monotonic = clock
    return store, clock


# -- claims ------------------------------------------------------------------------------


async def test_first_claim_wins_and_other_copies_are_duplicates() -> None:
    store = MemoryDedup(ttl=60)
    assert await verdicts(store, [("e1", "m1/p1"), ("e1", "m2/p7"), ("e2", "m1/p2")]) == [
        True,
        False,
        True,
    ]


async def test_a_claim_answers_for_its_mark_even_twice_in_one_batch() -> None:
    """The same id twice in one call: the second answers as a later call would. Its own
    mark again is ``True`` (a claim answers for the mark, not for the call: the same
    delivery may publish), another mark is ``False``, whichever copy comes first."""
    store = MemoryDedup(ttl=60)
    assert await verdicts(store, [("e1", "m1/p1"), ("e1", "m1/p1")]) == [True, True]
    assert await verdicts(store, [("e2", "m2/p2"), ("e2", "m1/p1"), ("e2", "m2/p2")]) == [
        True,
        False,
        True,
    ]


async def test_a_redelivery_before_its_commit_takes_its_own_mark_over() -> None:
    store = MemoryDedup(ttl=60)
    await verdicts(store, [("e1", "m1/p1")])
    assert await verdicts(store, [("e1", "m1/p1")]) == [True]
    assert await verdicts(store, [("e1", "m2/p2")]) == [False]
    assert await verdicts(store, [("e1", "m1/p1")]) == [True]  # the other claim took nothing


async def test_a_mark_lives_exactly_ttl_seconds() -> None:
    store, clock = store_with_clock(ttl=10)
    assert await verdicts(store, [("e1", "m1/p1")]) == [True]
    clock.now += 9.999
    assert await verdicts(store, [("e1", "m2/p2")]) == [False]
    clock.now = 1010.0  # claimed + ttl: free
    assert await verdicts(store, [("e1", "m2/p2")]) == [True]
    assert await verdicts(store, [("e1", "m1/p1")]) == [False]  # now m2's, for ttl seconds


async def test_an_own_mark_claimed_again_keeps_its_first_expiry() -> None:
    store, clock = store_with_clock(ttl=10)
    await verdicts(store, [("e1", "m1/p1")])
    clock.now += 9
    assert await verdicts(store, [("e1", "m1/p1")]) == [True]
    clock.now += 1  # ttl after the first claim, not after the second
    assert await verdicts(store, [("e1", "m2/p2")]) == [True]


# -- settle ------------------------------------------------------------------------------


async def test_a_settled_mark_stops_even_the_same_delivery() -> None:
    store = MemoryDedup(ttl=60)
    await verdicts(store, [("e1", "m1/p1")])
    await store.settle([("e1", "m1/p1")])
    assert await verdicts(store, [("e1", "m1/p1"), ("e1", "m9/p9")]) == [False, False]


async def test_settle_keeps_the_ttl_of_the_claim() -> None:
    store, clock = store_with_clock(ttl=10)
    await verdicts(store, [("e1", "m1/p1")])
    clock.now += 6
    await store.settle([("e1", "m1/p1")])
    clock.now = 1009.5
    assert await verdicts(store, [("e1", "m1/p1"), ("e1", "m2/p2")]) == [False, False]
    clock.now = 1010.0  # neither kept for ever nor renewed by the settle
    assert await verdicts(store, [("e1", "m2/p2")]) == [True]


async def test_settle_touches_only_its_own_mark() -> None:
    store = MemoryDedup(ttl=60)
    await verdicts(store, [("e1", "m1/p1")])
    await store.settle([("e1", "m2/p2"), ("e2", "m1/p1")])  # another mark; an id not held
    assert await verdicts(store, [("e1", "m1/p1"), ("e2", "m3/p3")]) == [True, True]
    assert len(store) == 2


async def test_a_settled_mark_is_the_prefix_and_the_mark() -> None:
    store = MemoryDedup(ttl=60)
    await verdicts(store, [("e1", "m1/p1")])
    await store.settle([("e1", "m1/p1")])
    assert store._marks["e1"][0] == SETTLED + "m1/p1" == "done:m1/p1"
    await store.settle([("e1", "m1/p1")])  # settling again changes nothing
    assert store._marks["e1"][0] == "done:m1/p1"


# -- release -----------------------------------------------------------------------------


async def test_release_forgets_only_the_exact_mark() -> None:
    store = MemoryDedup(ttl=60)
    await verdicts(store, [("e1", "m1/p1"), ("e2", "m1/p2")])
    await store.release([("e1", "m2/p2"), ("e2", "m1/p1")])  # other marks: nothing happens
    assert await verdicts(store, [("e1", "m3/p3"), ("e2", "m3/p3")]) == [False, False]
    await store.release([("e1", "m1/p1")])
    assert await verdicts(store, [("e1", "m3/p3"), ("e2", "m3/p3")]) == [True, False]


async def test_release_does_not_forget_a_settled_mark() -> None:
    store = MemoryDedup(ttl=60)
    await verdicts(store, [("e1", "m1/p1")])
    await store.settle([("e1", "m1/p1")])
    await store.release([("e1", "m1/p1")])  # committed: the delivery cannot give it up
    assert await verdicts(store, [("e1", "m2/p2")]) == [False]


async def test_release_of_an_expired_mark_leaves_its_new_owner() -> None:
    store, clock = store_with_clock(ttl=10)
    await verdicts(store, [("e1", "m1/p1")])
    clock.now += 10
    assert await verdicts(store, [("e1", "m2/p2")]) == [True]
    await store.release([("e1", "m1/p1")])
    assert await verdicts(store, [("e1", "m3/p3")]) == [False]


async def test_release_frees_the_id_for_the_next_claim() -> None:
    store = MemoryDedup(ttl=60)
    await verdicts(store, [("e1", "m1/p1")])
    await store.release([("e1", "m1/p1")])
    assert len(store) == 0
    assert await verdicts(store, [("e1", "m3/p3")]) == [True]


# -- sweep -------------------------------------------------------------------------------


async def test_a_sweep_keeps_live_marks() -> None:
    """The default set-up sweeps once a minute; a mark younger than its ttl survives every
    sweep (the id stays a duplicate) until the ttl is over."""
    store, clock = store_with_clock(ttl=86_400)
    await verdicts(store, [("e1", "m1/p1")])
    for _ in range(5):
        clock.now += 61  # past the sweep interval: the next claim sweeps
        assert await verdicts(store, [("e1", "m2/p2")]) == [False]
    assert len(store) == 1


async def test_a_sweep_removes_expired_marks_only() -> None:
    store, clock = store_with_clock(ttl=10)  # sweeps every 5 s
    await verdicts(store, [("old", "m1/p1")])  # sweeps at 1000, next at 1005
    clock.now = 1004.0
    await verdicts(store, [("young", "m1/p2")])  # lives until 1014
    clock.now = 1010.0  # "old" expires now (exactly at its ttl), "young" is alive
    await verdicts(store, [("other", "m1/p3")])
    assert set(store._marks) == {"young", "other"}
    assert await verdicts(store, [("young", "m2/p2")]) == [False]


async def test_sweeps_run_every_half_ttl_when_that_is_under_a_minute() -> None:
    store, clock = store_with_clock(ttl=10)
    await verdicts(store, [("a", "m/a")])  # 1000: sweep, next at 1005; "a" until 1010
    clock.now = 1004.0
    await verdicts(store, [("b", "m/b")])  # until 1014
    clock.now = 1010.0
    await verdicts(store, [("c", "m/c")])  # sweep: "a" goes; next at 1015
    assert set(store._marks) == {"b", "c"}
    clock.now = 1014.5  # "b" expired, but no sweep before 1015
    await verdicts(store, [("d", "m/d")])
    assert set(store._marks) == {"b", "c", "d"}
    clock.now = 1015.0
    await verdicts(store, [("e", "m/e")])  # sweep: "b" goes ("c" lives until 1020)
    assert set(store._marks) == {"c", "d", "e"}


async def test_sweeps_run_once_a_minute_with_a_long_ttl() -> None:
    store, clock = store_with_clock(ttl=200, now=0.0)
    await verdicts(store, [("a", "m/a")])  # sweep at 0, next at 60; "a" until 200
    for now in (60.0, 120.0, 180.0):
        clock.now = now
        await verdicts(store, [(f"at{int(now)}", "m")])  # sweeps at 60, 120, 180
    clock.now = 239.0  # "a" expired at 200; no sweep until 240
    await verdicts(store, [("x", "m")])
    assert "a" in store._marks
    clock.now = 240.0
    await verdicts(store, [("y", "m")])
    assert "a" not in store._marks
    assert set(store._marks) == {"at60", "at120", "at180", "x", "y"}


async def test_settling_an_expired_mark_does_not_revive_it() -> None:
    store, clock = store_with_clock(ttl=10)
    await verdicts(store, [("e1", "m1/p1")])
    clock.now += 10  # expired
    await store.settle([("e1", "m1/p1")])
    assert await verdicts(store, [("e1", "m2/p2")]) == [True]  # a settled expired mark is free


async def test_a_claim_tells_a_fresh_id_from_its_own_mark_found_again() -> None:
    store = MemoryDedup(ttl=60)
    assert [v.again for v in await store.claim([("e1", "m1/p1"), ("e2", "m1/p2")])] == [
        False,
        False,
    ]
    again = await store.claim([("e1", "m1/p1"), ("e2", "m9/p9")])
    assert [bool(v) for v in again] == [True, False]
    assert again[0].again and not again[1].again
    await store.settle([("e1", "m1/p1")])
    assert [bool(v) for v in await store.claim([("e1", "m1/p1")])] == [False]
