"""Two ``postbacks work`` processes sharing Redis publish each event once, however often and
in whichever format the postback arrives; the duplicates show in their ``/metrics``."""

from __future__ import annotations

import asyncio

from tests.support import (
    REDIS_URL,
    Stack,
    Subscriber,
    free_port,
    http_session,
    post,
    wait_http,
)

from ._helpers import get_text, metric, receiver, settings_for

DUPLICATES = "postbacks_duplicates_dropped_total"

XML = b"""<postback>
    <origin>MMS_MT</origin>
    <code>N102</code>
    <sent-as>MMS</sent-as>
    <status>Message Sent/Delivered</status>
    <mms-id>39597</mms-id>
    <from>028444</from>
    <to>12399471613</to>
    <tracking-id>dedup-{n}</tracking-id>
    <operator-id>31003</operator-id>
    <timestamp>2014-06-07T07:27:34-05:00</timestamp>
</postback>"""
# The same postback with other white space and element order: the same event.
XML_AGAIN = (
    b"<postback><tracking-id> dedup-{n} </tracking-id><code>N102</code><origin>MMS_MT</origin>"
    b"<status>Message Sent/Delivered</status><sent-as>MMS</sent-as><mms-id>39597</mms-id>"
    b"<from>028444</from><to>12399471613</to><operator-id>31003</operator-id>"
    b"<timestamp>2014-06-07T12:27:34Z</timestamp></postback>"
)
JSON = (
    b'{"origin": "MMS_MT", "code": "N102", "sent-as": "MMS", "status": "Message Sent/Delivered",'
    b' "mms-id": 39597, "from": "028444", "to": "12399471613", "tracking-id": "dedup-{n}",'
    b' "operator-id": 31003, "timestamp": "2014-06-07T07:27:34-0500"}'
)


def forms(n: int) -> list[tuple[bytes, str]]:
    tag = str(n).encode()
    return [
        (XML.replace(b"{n}", tag), "application/xml"),
        (XML_AGAIN.replace(b"{n}", tag), "text/xml"),
        (JSON.replace(b"{n}", tag), "application/json"),
    ]


async def start_worker(processes: Stack) -> int:
    port = free_port()
    processes.start("work", REDIS_URL=REDIS_URL, WORKER_METRICS_PORT=port)
    await wait_http(f"http://127.0.0.1:{port}/readyz", 200, timeout=20)
    return port


async def duplicates(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        status, text = await get_text(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        total += metric(text, DUPLICATES)
    return total


async def wait_duplicates(ports: list[int], expected: float, timeout: float = 20) -> float:
    deadline = asyncio.get_running_loop().time() + timeout
    seen = await duplicates(ports)
    while seen < expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        seen = await duplicates(ports)
    return seen


async def test_two_workers_publish_one_event_for_the_same_postback_thrice(
    namespace: str, processes: Stack
) -> None:
    ports = list(await asyncio.gather(start_worker(processes), start_worker(processes)))
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        receiver(settings_for(namespace)) as url,
        http_session() as session,
    ):
        status, _, _ = await post(session, f"{url}/postbacks", *forms(0)[0])
        assert status == 200
        first = await subscriber.take(1, timeout=15)
        for body, content_type in forms(0):
            assert (await post(session, f"{url}/postbacks", body, content_type))[0] == 200
        # Many postbacks, each thrice and concurrently, so both workers take some.
        sent = [form for n in range(1, 21) for form in forms(n)]
        answers = await asyncio.gather(
            *(post(session, f"{url}/postbacks", body, ctype) for body, ctype in sent)
        )
        assert [status for status, _, _ in answers] == [200] * len(sent)
        rest = await subscriber.take(20, timeout=20, settle=1.5)
        dropped = await wait_duplicates(ports, 3 + 40)
    assert len(first) == 1
    assert first[0].event["tracking_id"] == "dedup-0"
    assert sorted(item.event["tracking_id"] for item in rest) == sorted(
        f"dedup-{n}" for n in range(1, 21)
    )
    assert len({item.event["event_id"] for item in first + rest}) == 21
    assert dropped == 43
    assert all(proc.alive() for proc in processes.procs)


async def test_a_second_worker_drops_what_the_first_published(
    namespace: str, processes: Stack
) -> None:
    """Sequential, so the drop is certainly the other process's: Redis is the shared memory."""
    first_port = await start_worker(processes)
    async with (
        Subscriber(namespace, "all", ["#"]) as subscriber,
        receiver(settings_for(namespace)) as url,
        http_session() as session,
    ):
        xml, json, again = forms(99)
        assert (await post(session, f"{url}/postbacks", *xml))[0] == 200
        published = await subscriber.take(1, timeout=15)
        assert await asyncio.to_thread(processes.procs[0].terminate) == 0
        second_port = await start_worker(processes)
        assert (await post(session, f"{url}/postbacks", *json))[0] == 200
        assert (await post(session, f"{url}/postbacks", *again))[0] == 200
        dropped = await wait_duplicates([second_port], 2)
        extra = await subscriber.take(0, settle=0.5)
    assert first_port != second_port
    assert [item.event["tracking_id"] for item in published] == ["dedup-99"]
    assert dropped == 2
    assert extra == []
