"""The lifecycle stores apply the rules of ``ingest.lifecycle`` atomically: the Redis script
gives, step for step, what the pure rules give; a step applied again (a redelivery) gets the
same answer; timers apply only to an open lifecycle; a tracking id's lifecycles are listed."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from ingest.codes import classify
from ingest.lifecycle import State, Step, apply
from tests.support import REDIS_URL
from worker.lifecycles import Change, LifecycleStore, MemoryLifecycles, RedisLifecycles
from worker.redis_link import RedisLink

CODES = ("N101", "N102", "N103", "E101", "E102", "N003", "E011", "N013", "N401", "X999")
STATUSES = [(classify(code, "failed")[1], classify(code, "failed")[2], code) for code in CODES]
STATUSES.append(("timed_out", True, "TIMEOUT"))


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[LifecycleStore]:
    made: LifecycleStore
    if request.param == "memory":
        made = MemoryLifecycles(600)
    else:
        made = RedisLifecycles(RedisLink(REDIS_URL), 600, namespace, owns_link=True)
    yield made
    await made.close()


def change(tracking: str, n: int, status: str, final: bool, code: str) -> Change:
    return Change(
        ("MMS_MT", "delivery", tracking),
        f"e{n}-{tracking}",
        code,
        status,
        final,
        f"2026-01-01T00:00:0{n % 10}.000000Z",
        None if status == "timed_out" else {"code": code, "to": "0123"},
    )


async def test_the_store_gives_what_the_rules_give_for_every_sequence_of_three(
    store: LifecycleStore,
) -> None:
    sequences = list(itertools.product(STATUSES, repeat=3))[::7]  # a spread of 190 of 1331
    changes, expected = [], []
    for index, sequence in enumerate(sequences):
        tracking = f"t{index}"
        state: State | None = None
        for n, (status, final, code) in enumerate(sequence):
            state, step = apply(state, status, final)
            changes.append(change(tracking, n, status, final, code))
            expected.append(step)
    assert await store.step(changes) == expected


async def test_a_step_applied_again_gets_the_same_answer(store: LifecycleStore) -> None:
    first = [change("same", 0, "sent", False, "N101"), change("same", 1, "delivered", True, "N102")]
    answers = await store.step(first)
    assert await store.step(first) == answers
    assert await store.step(list(reversed(first))) == list(reversed(answers))
    (lifecycle,) = await store.lifecycles("same")
    assert (lifecycle.current, lifecycle.final, lifecycle.seq) == ("delivered", True, 2)
    assert [e["code"] for e in lifecycle.events] == ["N101", "N102"]
    assert lifecycle.first_event_id == "e0-same"
    assert lifecycle.latest == {"code": "N102", "to": "0123"}


async def test_a_timer_applies_only_to_an_open_lifecycle(store: LifecycleStore) -> None:
    timer = change("open", 5, "timed_out", True, "TIMEOUT")
    assert await store.step([timer], only_open=True) == [None]  # unknown: nothing
    await store.step([change("open", 0, "sent", False, "N101")])
    (step,) = await store.step([timer], only_open=True)
    assert step == Step(2, "sent", "timed_out", True, False)
    assert await store.step([timer], only_open=True) == [step]  # the same timer again
    late = change("open", 9, "timed_out", True, "TIMEOUT")
    assert await store.step([late], only_open=True) == [None]  # final now: no second
    (real,) = await store.step([change("open", 3, "delivered", True, "N102")])
    assert real == Step(3, "timed_out", "delivered", True, False)


async def test_concurrent_steps_of_one_lifecycle_get_distinct_seqs(namespace: str) -> None:
    stores = [
        RedisLifecycles(RedisLink(REDIS_URL), 600, namespace, owns_link=True) for _ in range(4)
    ]
    try:
        answers = await asyncio.gather(
            *(
                s.step([change("race", n, "sent" if n else "delivered", n != 0, "N10" + str(n))])
                for n, s in enumerate(stores)
            )
        )
        seqs = sorted(step.seq for (step,) in answers if step is not None)
        (lifecycle,) = await stores[0].lifecycles("race")
    finally:
        for s in stores:
            await s.close()
    assert seqs == [1, 2, 3, 4]
    assert lifecycle.seq == 4
