"""How the receiver's publisher schedules group commit, with ``send`` replaced (no broker).

The replacement behaves like the AMQP client underneath: the batch reaches the socket one
event-loop step after ``send`` is called (the client's writer task), and ``send`` returns
when the test confirms the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ingest.envelope import Record
from ingest.publisher import IntakePublisher
from ingest.settings import Settings


class FakeBroker(IntakePublisher):
    def __init__(self) -> None:
        super().__init__(Settings.load({}, {}))
        self._up = True  # no connection is made: the lane is started by hand
        self.written: list[list[str]] = []
        self.confirms: list[asyncio.Future[None]] = []

    async def send(self, records: list[Record], timeout: float) -> None:
        confirm: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.confirms.append(confirm)
        await asyncio.sleep(0)  # the client's writer task puts it on the socket
        self.written.append([r.postback_id for r in records])
        await confirm


def postback(postback_id: str) -> Record:
    return Record(postback_id, "2026-11-29T00:00:00.000000Z", "xml", None, b"<postback/>")


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_one_batch_in_flight_and_the_next_goes_out_before_answers() -> None:
    broker = FakeBroker()
    lane = asyncio.create_task(broker._lane())
    try:
        written_when_answered: list[list[list[str]]] = []

        async def handler() -> str:  # what the HTTP handler does: await, then answer
            outcome = await broker.submit(postback("a"))
            written_when_answered.append(list(broker.written))
            return outcome

        first = asyncio.create_task(handler())
        await until(lambda: broker.written == [["a"]])
        later = [asyncio.create_task(broker.submit(postback(x))) for x in "bcd"]
        for _ in range(5):
            await asyncio.sleep(0)
        assert broker.written == [["a"]]  # nothing else while "a" awaits its confirm
        assert not first.done()

        broker.confirms[0].set_result(None)
        assert await first == "confirmed"
        # b, c and d share one batch, and it was on its way before "a" was answered.
        assert written_when_answered == [[["a"], ["b", "c", "d"]]]
        assert not any(task.done() for task in later)  # not before their own confirm

        broker.confirms[1].set_result(None)
        assert await asyncio.gather(*later) == ["confirmed"] * 3
    finally:
        lane.cancel()
