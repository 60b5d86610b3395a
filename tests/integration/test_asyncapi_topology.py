"""The AsyncAPI document against what ``ingest.topology`` declares on the real broker: the
exchanges and queues it names exist with the types it gives."""

from __future__ import annotations

import asyncio

import aio_pika
import yaml

from ingest import contract, topology
from ingest.names import Names
from tests.integration._helpers import rabbitmqctl
from tests.support import AMQP_URL


def listing(*args: str) -> dict[str, str]:
    out = rabbitmqctl(*args, "-q", "--no-table-headers", "name", "type")
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


async def test_declared_topology_is_the_documented_one(namespace: str) -> None:
    names = Names(namespace)
    async with await aio_pika.connect(AMQP_URL) as connection:
        amqp = await connection.channel()
        await topology.declare(amqp, names)
        await topology.subscribe(amqp, names, "billing", ["#"])
    channels = yaml.safe_load(contract.text(contract.ASYNCAPI))["channels"]

    def named(channel: str) -> str:
        address: str = channels[channel]["address"]
        return address.replace("{namespace}", namespace).replace("{name}", "billing")

    exchanges = await asyncio.to_thread(listing, "list_exchanges")
    queues = await asyncio.to_thread(listing, "list_queues")
    for channel in ("events", "unrouted"):
        documented = channels[channel]["bindings"]["amqp"]["exchange"]["type"]
        assert exchanges.get(named(channel)) == documented, (channel, exchanges)
    assert queues.get(named("unrouted")) == channels["unrouted"]["x-queue"]["x-queue-type"]
    for channel in ("subscriber", "quarantine"):
        assert queues.get(named(channel)) == channels[channel]["x-queue-type"], (channel, queues)
