"""``AMQP_URL`` as a cluster's nodes: the rotation every broker link follows, and the
one-line reasons a refused connection gives. Pure: no broker."""

from __future__ import annotations

import collections

import aiormq.exceptions
import pytest

from ingest.broker import Nodes, describe
from ingest.settings import BadSetting, Settings

A, B, C = (f"amqp://guest:guest@10.0.0.{n}:5672/" for n in (1, 2, 3))


def test_a_round_tries_every_node_once_starting_after_the_last_one() -> None:
    nodes = Nodes([A, B, C], start=1)
    assert nodes.round() == [B, C, A]
    assert nodes.round() == [C, A, B]  # the next round starts at the next node


def test_processes_start_at_different_nodes() -> None:
    firsts = collections.Counter(Nodes([A, B, C]).round()[0] for _ in range(600))
    assert set(firsts) == {A, B, C}
    assert min(firsts.values()) > 100  # spread, not always the first


def test_one_url_is_a_cluster_of_one() -> None:
    nodes = Nodes([A])
    assert nodes.round() == [A] and nodes.round() == [A]
    with pytest.raises(ValueError):
        Nodes([])


def test_amqp_url_takes_a_comma_separated_list_each_checked() -> None:
    settings = Settings.load({"AMQP_URL": f" {A}, {B} ,{C}"})
    assert settings.amqp_urls == (A, B, C)
    assert settings.effective()["AMQP_URL"] == ",".join(
        u.replace("guest:guest", "guest:***") for u in (A, B, C)
    )
    for bad in (f"{A},http://x/", f"{A},amqp:///", ",", f"{A},amqp://h:99999/"):
        with pytest.raises(BadSetting, match="AMQP_URL"):
            Settings.load({"AMQP_URL": bad})


def test_refusals_are_one_line_with_the_brokers_reason() -> None:
    login = aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login was refused")
    assert describe(login) == "refused: ACCESS_REFUSED - Login was refused"
    vhost = aiormq.exceptions.InvalidFrameError(
        "Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x1>"
    )
    assert "virtual host" in describe(vhost)
    refused = aiormq.exceptions.AMQPConnectionError(111, "Connect call failed ('10.0.0.1', 5672)")
    assert describe(refused) == "Connect call failed ('10.0.0.1', 5672)"
    assert describe(TimeoutError()) == "no answer within the connect timeout"


def test_a_node_given_up_is_tried_last_for_a_while() -> None:
    nodes = Nodes([A, B, C], start=0)
    nodes.avoid(A, seconds=60)
    assert nodes.round() == [B, C, A]
    assert nodes.round() == [B, C, A]  # still last, from wherever the round starts
    assert nodes.round() == [C, B, A]
    nodes.avoid(B, seconds=-1)  # already over
    assert nodes.round()[-1] == A
