"""The RabbitMQ cluster harness does what the cluster suite relies on: a quorum queue keeps a
confirmed message when the node it was declared on is SIGKILLed, the node comes back into
the cluster with its data, and a node cut off from the other two (not killed) is paused by
``pause_minority`` (its AMQP connections closed, new ones refused) until the cut heals."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import aio_pika
import aio_pika.abc
import pytest

from .rabbit_cluster import RabbitCluster


async def _connect(url: str) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(url, timeout=5)


async def _get(url: str, queue_name: str, timeout: float = 30) -> bytes:
    """The body of the next message of ``queue_name`` (acked), waiting while the queue
    elects a leader. Each try on a connection of its own: right after its leader's node
    died, RabbitMQ 3.10 answers a ``basic.get`` on a quorum queue with a *connection*
    error (541 ``INTERNAL_ERROR ... nodedown``)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            async with await _connect(url) as connection:
                channel = await connection.channel()
                queue = await channel.get_queue(queue_name, ensure=True)
                message = await queue.get(fail=False, timeout=5)
                if message is not None:
                    await message.ack()
                    return message.body
                last = "queue empty"
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            last = exc
        await asyncio.sleep(0.5)
    raise AssertionError(f"no message from {queue_name} in {timeout}s: {last!r}")


async def _publish(connection: aio_pika.abc.AbstractConnection, queue: str, body: bytes) -> None:
    """Publish with publisher confirms: returns once the broker confirmed."""
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=queue,
        timeout=10,
    )
    await channel.close()


async def test_quorum_queue_survives_a_killed_node_and_a_partition(
    rabbit_cluster: RabbitCluster,
) -> None:
    cluster = rabbit_cluster
    names = [cluster.node(i) for i in range(3)]
    assert sorted(cluster.running_nodes(0)) == sorted(names)
    queue = f"pbc.infra.{uuid.uuid4().hex[:8]}"

    # A quorum queue on all three nodes, declared through node 0; one confirmed message.
    first = await _connect(cluster.url(0))
    channel = await first.channel()
    await channel.declare_queue(
        queue,
        durable=True,
        arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": 3},
    )
    await _publish(first, queue, b"before the kill")
    await first.close()
    assert await asyncio.to_thread(cluster.queue_leader, queue) == cluster.node(0)

    # Node 0 (the leader) SIGKILLed: the message is consumed through node 1.
    await asyncio.to_thread(cluster.kill, 0)
    assert await _get(cluster.url(1), queue) == b"before the kill"
    second = await _connect(cluster.url(1))
    leader = await asyncio.to_thread(cluster.queue_leader, queue)
    assert leader in names[1:], leader
    # Still a majority: a publish through node 1 is confirmed with node 0 down.
    await _publish(second, queue, b"while node 0 is down")

    # Node 0 back: in the cluster again, with its data (it catches up on the queue's log).
    await asyncio.to_thread(cluster.start, 0)
    assert sorted(await asyncio.to_thread(cluster.running_nodes, 0)) == sorted(names)
    assert await _get(cluster.url(0), queue) == b"while node 0 is down"

    # Node 2 cut off from the others, not killed: pause_minority pauses it.
    third = await _connect(cluster.url(2))
    closed = asyncio.Event()
    third.close_callbacks.add(lambda *_: closed.set())
    await asyncio.to_thread(cluster.partition, 2)
    try:
        await asyncio.to_thread(cluster.wait_paused, 2, 30)
        await asyncio.wait_for(closed.wait(), 10)
        with pytest.raises((OSError, aio_pika.exceptions.AMQPError)):
            await _connect(cluster.url(2))
        assert sorted(await asyncio.to_thread(cluster.running_nodes, 0)) == sorted(names[:2])
        # The majority side goes on: a publish through node 1 is confirmed.
        await _publish(second, queue, b"during the partition")
    finally:
        await asyncio.to_thread(cluster.heal, 2)

    # Healed: node 2 serves again, sees the whole cluster and has the message.
    await asyncio.to_thread(cluster.wait_running, 2, 60)
    status = await asyncio.to_thread(cluster.cluster_status, 2)
    assert sorted(status["running_nodes"]) == sorted(names)
    assert not status.get("partitions"), status
    assert await _get(cluster.url(2), queue) == b"during the partition"
    third = await _connect(cluster.url(2))
    channel = await third.channel()
    await channel.queue_delete(queue)
    await third.close()
    await second.close()


async def test_partition_heals_by_itself_after_the_given_time(
    rabbit_cluster: RabbitCluster,
) -> None:
    """The cut made inside Erlang (wrong cookies), the fallback where there is no iptables."""
    began = time.monotonic()
    await asyncio.to_thread(rabbit_cluster.partition, 1, 3.0, "cookie")
    await asyncio.to_thread(rabbit_cluster.wait_paused, 1, 30)
    assert rabbit_cluster.is_cut(1)
    await asyncio.to_thread(rabbit_cluster.wait_running, 1, 60)
    assert not rabbit_cluster.is_cut(1)
    assert time.monotonic() - began >= 3.0
    connection = await _connect(rabbit_cluster.url(1))
    await connection.close()


async def _probe_round(
    url: str, queue_tx: str, queue_confirm: str, round_: int
) -> tuple[set[str], set[str]]:
    """On a new connection: 10 publishes to ``queue_tx`` in a transaction, 10 to
    ``queue_confirm`` with confirms. The ids the broker took (commit-ok; ack)."""
    taken_tx: set[str] = set()
    taken_confirm: set[str] = set()
    async with await _connect(url) as connection:
        tx_channel = await connection.channel(publisher_confirms=False)
        transaction = tx_channel.transaction()
        await transaction.select()
        ids = [f"t{round_}-{i}" for i in range(10)]
        for message_id in ids:
            await tx_channel.default_exchange.publish(
                aio_pika.Message(b"x", message_id=message_id, delivery_mode=2), queue_tx
            )
        with contextlib.suppress(aio_pika.exceptions.AMQPError, TimeoutError):
            await asyncio.wait_for(transaction.commit(), 10)
            taken_tx.update(ids)
        confirm_channel = await connection.channel(publisher_confirms=True)
        ids = [f"c{round_}-{i}" for i in range(10)]
        answers = await asyncio.gather(
            *(
                confirm_channel.default_exchange.publish(
                    aio_pika.Message(b"x", message_id=message_id, delivery_mode=2),
                    queue_confirm,
                    timeout=10,
                )
                for message_id in ids
            ),
            return_exceptions=True,
        )
        taken_confirm.update(
            i for i, a in zip(ids, answers, strict=True) if not isinstance(a, BaseException)
        )
    return taken_tx, taken_confirm


async def _ids_in(url: str, queue: str) -> set[str]:
    async with await _connect(url) as connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)
        found = set()
        while (message := await q.get(no_ack=True, fail=False, timeout=10)) is not None:
            found.add(str(message.message_id))
        await q.delete(if_unused=False, if_empty=False)
        return found


async def test_confirms_keep_what_a_transaction_loses_when_a_leader_dies(
    rabbit_cluster: RabbitCluster,
) -> None:
    """Why workers on a cluster publish with confirms: right after a quorum queue's leader
    node is SIGKILLed, the queue refuses publishes from new channels on the other nodes
    until they learn the new leader. In a transaction RabbitMQ 3.10 drops what the queue
    refused and still answers commit-ok; with confirms it nacks it. Every publish the
    broker acked must be in the queue; what commit-ok "took" and lost is reported."""
    cluster = rabbit_cluster
    queues = [f"pbc.probe.{kind}.{uuid.uuid4().hex[:8]}" for kind in ("tx", "confirm")]
    async with await _connect(cluster.url(0)) as first:
        channel = await first.channel()
        for name in queues:
            await channel.declare_queue(
                name,
                durable=True,
                arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": 3},
            )
    assert await asyncio.to_thread(cluster.queue_leader, queues[0]) == cluster.node(0)
    taken_tx: set[str] = set()
    taken_confirm: set[str] = set()
    await asyncio.to_thread(cluster.kill, 0)
    try:
        began = time.monotonic()
        round_ = 0
        while time.monotonic() - began < 4.0:
            tx, confirm = await _probe_round(cluster.url(1), queues[0], queues[1], round_)
            taken_tx |= tx
            taken_confirm |= confirm
            round_ += 1
            await asyncio.sleep(0.1)
    finally:
        await asyncio.to_thread(cluster.start, 0)
    in_tx_queue = await _ids_in(cluster.url(1), queues[0])
    in_confirm_queue = await _ids_in(cluster.url(1), queues[1])
    print(
        f"\nleader killed: transaction: {len(taken_tx)} of {round_ * 10} committed, "
        f"{len(taken_tx - in_tx_queue)} of them lost; confirms: {len(taken_confirm)} of "
        f"{round_ * 10} acked, {len(taken_confirm - in_confirm_queue)} of them lost"
    )
    assert taken_confirm, "no publish was confirmed at all"
    assert taken_confirm <= in_confirm_queue, sorted(taken_confirm - in_confirm_queue)[:5]
