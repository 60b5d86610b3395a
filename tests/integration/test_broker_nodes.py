"""``AMQP_URL`` with several nodes: a receiver and a worker connect to one that answers, and
on losing it go on to the next within a second; one-shot commands say in one line which
node refused and why. The nodes here are TCP relays to the one local broker, so that one
can be taken away without touching the broker itself."""

from __future__ import annotations

import asyncio
import time

from tests.integration.test_operator_stats import cli
from tests.support import Subscriber, http_session, post, postback_xml

from ._helpers import (
    TcpProxy,
    closed_port_url,
    intake_records,
    pipeline,
    receiver,
    settings_for,
    worker,
)


async def _started(*proxies: TcpProxy) -> None:
    for proxy in proxies:
        await proxy.start()


def _in_use(proxies: list[TcpProxy]) -> TcpProxy:
    used = [proxy for proxy in proxies if proxy._writers]
    assert len(used) >= 1, "no node in use"
    return used[0]


async def test_a_dead_node_in_the_list_is_passed_over(namespace: str) -> None:
    dead = closed_port_url()
    live = settings_for(namespace).amqp_url
    for order in (f"{dead},{live}", f"{live},{dead}"):
        async with (
            Subscriber(namespace, "all", ["#"]) as subscriber,
            pipeline(namespace, amqp_url=order) as running,
            http_session() as session,
        ):
            status = (await post(session, running.postbacks, postback_xml("N102", order)))[0]
            received = await subscriber.take(1, timeout=15)
        assert status == 200
        assert [r.event["tracking_id"] for r in received] == [order]


async def test_losing_its_node_a_receiver_is_ready_again_on_the_next_within_a_second(
    namespace: str,
) -> None:
    proxies = [TcpProxy(), TcpProxy()]
    await _started(*proxies)
    urls = ",".join(proxy.url for proxy in proxies)
    settings = settings_for(namespace, amqp_url=urls, confirm_timeout=2.0)
    try:
        async with receiver(settings) as url, http_session() as session:
            used = _in_use(proxies)
            await used.close()  # the node is gone: its connections drop, it accepts none
            lost = time.monotonic()
            status = 0
            while time.monotonic() - lost < 5:
                status = (await post(session, f"{url}/postbacks", postback_xml("N101", "x")))[0]
                if status == 200:
                    break
                await asyncio.sleep(0.05)
            back_after = time.monotonic() - lost
    finally:
        for proxy in proxies:
            await proxy.close()
    assert status == 200
    assert back_after < 1.5, back_after


async def test_losing_its_node_a_worker_goes_on_with_the_next(namespace: str) -> None:
    proxies = [TcpProxy(), TcpProxy()]
    await _started(*proxies)
    urls = ",".join(proxy.url for proxy in proxies)
    settings = settings_for(namespace, amqp_url=urls)
    try:
        async with (
            Subscriber(namespace, "all", ["#"]) as subscriber,
            worker(settings) as running,
            receiver(settings_for(namespace)) as url,
            http_session() as session,
        ):
            used = _in_use(proxies)
            await used.close()
            lost = time.monotonic()
            while not running.ready or time.monotonic() - lost < 0.05:
                assert time.monotonic() - lost < 2, running.problems
                await asyncio.sleep(0.02)
            ready_after = time.monotonic() - lost
            status = (await post(session, f"{url}/postbacks", postback_xml("N102", "next")))[0]
            received = await subscriber.take(1, timeout=15)
    finally:
        for proxy in proxies:
            await proxy.close()
    assert status == 200
    assert [r.event["tracking_id"] for r in received] == ["next"]
    assert ready_after < 1.5, ready_after


async def test_a_one_shot_command_refused_or_unreachable_says_why_in_one_line(
    namespace: str,
) -> None:
    dead = closed_port_url()
    cases = {
        "wrong password": ("amqp://guest:wrong@127.0.0.1:5672/", "ACCESS_REFUSED"),
        "unknown vhost": ("amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "virtual host"),
        "no node answers": (f"{dead},{closed_port_url()}", "no node of 2"),
    }
    for name, (url, words) in cases.items():
        for command in (["topology"], ["subscribe", "billing", "#"], ["replay"], ["stats"]):
            code, _out, err = await cli(namespace, *command, AMQP_URL=url)
            lines = err.strip().splitlines()
            assert code == 1, (name, command, err)
            assert len(lines) == 1 and "Traceback" not in err, (name, command, err)
            assert lines[0].startswith("postbacks: error: AMQP_URL"), lines
            assert words in lines[0], (name, lines)
            assert "guest:wrong" not in err  # the password is masked


async def test_a_postback_whose_node_dies_before_its_confirm_is_published_again_and_gets_200(
    namespace: str,
) -> None:
    """The node takes the publish and dies before it confirms: the receiver does not answer
    503 at once but publishes the batch again through the next node while the confirm
    timeout allows, and answers 200 once that is confirmed."""
    proxies = [TcpProxy(), TcpProxy()]
    await _started(*proxies)
    settings = settings_for(
        namespace, amqp_url=",".join(p.url for p in proxies), confirm_timeout=5.0
    )
    try:
        async with receiver(settings) as url, http_session() as session:
            used = _in_use(proxies)
            used.freeze()  # the publish goes in, no confirm comes back

            async def die_soon() -> None:
                await asyncio.sleep(0.5)
                await used.close()

            dying = asyncio.create_task(die_soon())
            started = time.monotonic()
            status = (await post(session, f"{url}/postbacks", postback_xml("N102", "again")))[0]
            took = time.monotonic() - started
            await dying
    finally:
        for proxy in proxies:
            await proxy.close()
    assert status == 200
    assert 0.5 < took < 4.5, took
    records = await intake_records(namespace)
    assert [r.body for r in records].count(postback_xml("N102", "again")) >= 1


async def test_a_node_that_keeps_the_connection_but_never_confirms_is_given_up(
    namespace: str,
) -> None:
    """A node cut off from its cluster may hold the connection open and never confirm: the
    receiver gives it up after half the confirm timeout and publishes through the next node,
    so the postback still gets its 200 within the timeout."""
    proxies = [TcpProxy(), TcpProxy()]
    await _started(*proxies)
    settings = settings_for(
        namespace, amqp_url=",".join(p.url for p in proxies), confirm_timeout=4.0
    )
    try:
        async with receiver(settings) as url, http_session() as session:
            _in_use(proxies).freeze()  # open, silent: no confirm, no close
            started = time.monotonic()
            status = (await post(session, f"{url}/postbacks", postback_xml("N102", "silent")))[0]
            took = time.monotonic() - started
            after = (await post(session, f"{url}/postbacks", postback_xml("N102", "next")))[0]
    finally:
        for proxy in proxies:
            await proxy.close()
    assert status == 200
    assert 1.5 < took < 4.0, took
    assert after == 200
