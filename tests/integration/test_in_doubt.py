"""A commit that got no commit-ok leaves its batch in doubt. RabbitMQ applies a commit's
acks at once and sends commit-ok only when every publish is confirmed, so when the
channel's node dies mid-commit on a cluster, the intake acks can survive on the other nodes
while the events do not, and nothing comes back to be redelivered. With several nodes in
``AMQP_URL`` the worker keeps such a batch and publishes it again on its next connection,
counted as republished.

The test makes exactly that happen on the one local broker: the worker reaches it through
relays that, once, drop the publishes of a batch, pass its acks and its ``tx.commit``, and
then cut the connection before the commit-ok comes back."""

from __future__ import annotations

import asyncio
import struct
import uuid
from dataclasses import dataclass

import aio_pika
from prometheus_client import generate_latest

from ingest import envelope, topology
from ingest.envelope import Record
from ingest.event import received_at_now
from ingest.names import Names
from tests.support import AMQP_URL, Subscriber, free_port, postback_xml, queue_count

from ._helpers import RABBIT_PORT, metric, settings_for, worker

_PROTOCOL_HEADER = 8
_METHOD, _HEADER, _BODY = 1, 2, 3
_PUBLISH, _COMMIT = (60, 40), (90, 20)


@dataclass
class _Cut:
    """Shared by the relays: whether the next batch is to be cut, and what was dropped."""

    armed: bool = False
    dropped: int = 0
    cut: bool = False


class CommitCutter:
    """A relay to RabbitMQ that, while armed, drops every ``basic.publish`` (with its
    content) from the client, passes everything else, and after the first ``tx.commit``
    following a dropped publish stops passing the broker's answers and closes both sides."""

    def __init__(self, cut: _Cut) -> None:
        self.state = cut
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", RABBIT_PORT)
        self._writers += [client_w, broker_w]
        answers = asyncio.Event()  # set: the broker's answers no longer pass
        for coro in (
            self._from_client(client_r, broker_w, client_w, answers),
            self._from_broker(broker_r, client_w, answers),
        ):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _from_broker(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: asyncio.Event
    ) -> None:
        try:
            while data := await reader.read(65536):
                if held.is_set():
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:
            pass

    async def _from_client(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        held: asyncio.Event,
    ) -> None:
        state = self.state
        dropping: set[int] = set()  # channels whose current content is being dropped
        try:
            writer.write(await reader.readexactly(_PROTOCOL_HEADER))
            while True:
                head = await reader.readexactly(7)
                kind, channel, size = struct.unpack(">BHI", head)
                frame = head + await reader.readexactly(size + 1)
                if kind == _METHOD:
                    dropping.discard(channel)
                    method = struct.unpack(">HH", frame[7:11])
                    if state.armed and method == _PUBLISH:
                        dropping.add(channel)
                        state.dropped += 1
                        continue
                    if state.armed and state.dropped and method == _COMMIT:
                        state.armed, state.cut = False, True
                        held.set()  # no commit-ok for the worker
                        writer.write(frame)
                        await writer.drain()
                        await asyncio.sleep(0.5)  # the broker applies the commit meanwhile
                        writer.close()
                        client.close()
                        return
                elif kind in (_HEADER, _BODY) and channel in dropping:
                    continue
                writer.write(frame)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            writer.close()


async def _publish_intake(names: Names, records: list[Record]) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                envelope.pack(records),
                content_type=envelope.CONTENT_TYPE,
                message_id=uuid.uuid4().hex,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            names.intake,
        )


async def test_a_batch_acked_without_its_events_is_published_again(namespace: str) -> None:
    names = Names(namespace)
    trackings = ["d1", "d2", "d3"]
    records = [
        Record(uuid.uuid4().hex, received_at_now(), "xml", None, postback_xml("N102", t))
        for t in trackings
    ]
    cut = _Cut()
    relays = [CommitCutter(cut), CommitCutter(cut)]
    for relay in relays:
        await relay.start()
    try:
        nodes = ",".join(relay.url for relay in relays)
        async with (
            Subscriber(namespace, "all", ["#"]) as subscriber,
            worker(settings_for(namespace, amqp_url=nodes)) as running,
        ):
            await topology.declare(subscriber.channel, names)
            cut.armed = True
            await _publish_intake(names, records)
            async with asyncio.timeout(15):
                while not cut.cut:
                    await asyncio.sleep(0.02)
            received = await subscriber.take(3, timeout=15, settle=1.0)
            assert sorted(r.event["tracking_id"] for r in received) == trackings
            # The hazard was real: the broker applied the acks without the events.
            intake_left = await queue_count(names.intake)
            text = generate_latest(running.metrics.registry).decode()
            left, published = list(running.in_doubt), running.published
    finally:
        for relay in relays:
            await relay.close()
    assert cut.dropped == 3
    assert intake_left == 0
    assert metric(text, "postbacks_events_republished_total") == 3
    assert published == 3
    assert left == []
