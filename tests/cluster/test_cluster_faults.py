"""The contract's section 7 on real clusters: a three-node RabbitMQ cluster and a
three-master/three-replica Redis Cluster (private ones, see ``conftest.py``), two receivers
and two workers given every broker node in ``AMQP_URL`` (each in another order) and one Redis
node in ``REDIS_URL``. Each test streams valid postbacks into both receivers, breaks one
node mid-stream, and counts the ``200`` answers against the events on a subscriber queue,
by tracking id: no ``200`` lost, an event twice only as counted republished events,
receivers answering ``200`` again within 5 s, and everything back to normal afterwards
without restarting any project process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.faults.kit import Downstream, Load, Service, Shot, tally

from .kit import (
    REPUBLISHED,
    ClusterReport,
    ClusterRow,
    Processes,
    Watch,
    answering_again,
    connected_nodes,
    metric_sum,
    statuses,
    wait_connected,
)

pytestmark = pytest.mark.faults

RATE = 120  # postbacks per second into each receiver
STREAM = 14.0  # seconds of the stream
FAULT_AT = 4.0  # seconds into the stream
FINAL = 150  # postbacks into each receiver once everything is back
WITHIN = 5.0  # the contract: ready, and answering 200 again, within 5 s
DRAIN = 180.0  # at most, seconds to wait for the events of every 200
QUIET = 6.0  # nothing on its way for this long: what has no event by then is lost
SUB = "faults"  # the subscriber queue counted (conftest's SUBSCRIBER)


@dataclass
class Run:
    """The processes of one test and the stream going through them."""

    procs: Processes
    receivers: list[Service]
    workers: list[Service]
    watch: Watch
    loads: list[Load] = field(default_factory=list)
    tasks: list[asyncio.Task[list[Shot]]] = field(default_factory=list)

    @property
    def services(self) -> list[Service]:
        return [*self.receivers, *self.workers]

    def where(self) -> dict[str, set[int]]:
        """``role pid`` → the broker nodes it is connected to now."""
        return {
            f"{s.role} {s.proc.pid}": connected_nodes(s.proc.pid, self.procs.rabbit)
            for s in self.services
        }

    def stream(self, tag: str) -> None:
        for k, receiver in enumerate(self.receivers):
            load = Load(receiver.postbacks, f"{tag}{k}", concurrency=32, rate=RATE)
            self.loads.append(load)
            self.tasks.append(asyncio.create_task(load.run(int(RATE * STREAM))))

    async def finish_stream(self) -> None:
        await asyncio.gather(*self.tasks)

    async def final_batch(self, tag: str) -> list[Load]:
        finals = [
            Load(r.postbacks, f"{tag}{k}-after", concurrency=16, rate=RATE)
            for k, r in enumerate(self.receivers)
        ]
        await asyncio.gather(*(load.run(FINAL) for load in finals))
        self.loads += finals
        return finals

    def shots(self) -> list[Shot]:
        return [shot for load in self.loads for shot in load.shots]

    async def republished(self) -> float:
        return sum([await metric_sum(worker, REPUBLISHED) for worker in self.workers])


async def _start(procs: Processes, redis_urls: list[str]) -> Run:
    receivers = list(await asyncio.gather(procs.receiver(), procs.receiver()))
    workers = list(await asyncio.gather(*(procs.worker(url) for url in redis_urls)))
    for service in [*receivers, *workers]:
        await wait_connected(service, procs.rabbit)
    watch = Watch([*receivers, *workers])
    watch.start()
    return Run(procs, receivers, workers, watch)


async def _settle(
    run: Run, downstream: Downstream, report: ClusterReport, fault: str, at: float, notes: str
) -> None:
    """After the fault and the repair: the final batch, the count downstream, the row, and
    the contract's outcome."""
    await run.finish_stream()
    finals = await run.final_batch("final")
    await run.watch.stop()
    procs = run.procs
    downstream.amqp_url = procs.live_amqp_url()
    accepted = {s.tracking for s in run.shots() if s.status == 200}
    waited = await _collect_all(run, downstream, accepted)
    result = tally(run.shots(), downstream)
    republished = await run.republished()
    counts = statuses(run.loads)
    answering = [answering_again(load.shots, at) for load in run.loads[: len(run.receivers)]]
    ready = {f"{s.role} {s.proc.pid}": run.watch.ready_again(s, at) for s in run.services}
    reasons = sorted({why for s in run.services for _, _, why in run.watch.not_ready(s, at) if why})
    final_statuses = statuses(finals)
    per_receiver = "; ".join(
        f"receiver {k}: {load.statuses().get(503, 0)} × 503, 200 again after {t:.1f} s, "
        f"slowest 200 {_slowest(load.shots, at):.1f} s"
        for k, (load, t) in enumerate(zip(run.loads, answering, strict=False))
    )
    report.add(
        ClusterRow(
            fault,
            result,
            f"{max(ready.values()):.1f} s (slowest of {len(ready)} processes)",
            notes
            + f"; {per_receiver}"
            + f"; final batch after the repair: {dict(final_statuses)}"
            + (f"; /readyz said: {' | '.join(r[:160] for r in reasons[:3])}" if reasons else ""),
            rejected=counts.get(503, 0),
            republished=republished,
            answering=f"{max(answering):.1f} s",
        )
    )
    published = [await metric_sum(w, "postbacks_events_total") for w in run.workers]
    dropped = [await metric_sum(w, "postbacks_duplicates_dropped_total") for w in run.workers]
    logs = (
        f"{waited}; workers' postbacks_events_total {published}, "
        f"postbacks_duplicates_dropped_total {dropped}; queues:\n"
        f"{await asyncio.to_thread(procs.queues)}\n{procs.logs()}"
    )
    for service in run.services:
        assert service.alive(), f"{service.role} died:\n{service.proc.output()[-3000:]}"
    assert set(counts) <= {200, 503}, counts
    if result.lost:
        logs = f"{await _lost_evidence(run, downstream, accepted, at)}\n{logs}"
    assert result.lost == 0, f"{fault}: answered 200, never arrived: {result.lost_ids}\n{logs}"
    assert result.duplicates <= republished, (
        f"{fault}: {result.duplicates} events published twice, {republished:.0f} counted as "
        f"republished: {result.duplicate_ids}\n{logs}"
    )
    assert final_statuses == {200: FINAL * len(run.receivers)}, final_statuses
    final_ids = {s.tracking for load in finals for s in load.shots}
    assert final_ids <= downstream.trackings(), "the final batch was not all delivered"
    assert max(answering) < WITHIN, f"receivers answering 200 again after {answering}"


async def _collect_all(run: Run, downstream: Downstream, accepted: set[str]) -> str:
    """Read events until every postback answered ``200`` has one, or until nothing more is
    on its way: ``NS.intake`` and ``NS.sub.faults`` empty (nothing ready, nothing unacked
    by a worker) and no new event for ``QUIET`` seconds; at most ``DRAIN`` seconds. Then
    2 s more for late duplicates. On a loaded machine the workers may still be working off
    the backlog of the fault when the final batch is answered: that is late, not lost.
    Returns what it waited for."""
    began = time.monotonic()
    names = run.procs.names
    quiet_since, seen = began, -1
    depths: dict[str, tuple[int, int]] = {}
    while accepted - downstream.trackings():
        await downstream.collect(accepted, timeout=3.0, settle=0.0)
        depths = await asyncio.to_thread(run.procs.depths)
        # A queue that cannot be listed counts as busy.
        busy = any(sum(depths.get(q, (1, 0))) for q in (names.intake, names.subscriber(SUB)))
        now = time.monotonic()
        if busy or len(downstream.events) != seen:
            quiet_since, seen = now, len(downstream.events)
        elif now - quiet_since >= QUIET:
            break
        if now - began > DRAIN:
            break
    await downstream.collect((), timeout=0, settle=2.0)
    missing = len(accepted - downstream.trackings())
    return (
        f"collected for {time.monotonic() - began:.1f} s, {missing} of {len(accepted)} "
        f"accepted still without an event; queues then (ready, unacked): {depths}"
    )


async def _lost_evidence(run: Run, downstream: Downstream, accepted: set[str], at: float) -> str:
    """Where the postbacks answered 200 without an event went: which receiver, XML or
    JSON, when they were sent and answered relative to the fault, and whether any queue of
    the namespace (read out: the test has failed) still names them, e.g. the receipt timer
    armed in the same transaction as the event."""
    lost = accepted - downstream.trackings()
    by_id = {s.tracking: s for s in run.shots()}
    lines = [f"{len(lost)} postbacks answered 200 have no event:"]
    for prefix in sorted({t.rsplit("-", 1)[0] for t in lost}):
        ids = sorted(int(t.rsplit("-", 1)[1]) for t in lost if t.rsplit("-", 1)[0] == prefix)
        shots = [by_id[f"{prefix}-{i}"] for i in ids]
        lines.append(
            f"  {prefix}: {len(ids)} (XML {sum(1 for i in ids if i % 2 == 0)}, JSON "
            f"{sum(1 for i in ids if i % 2)}), index {ids[0]}..{ids[-1]}, sent "
            f"{min(s.sent for s in shots) - at:+.1f}..{max(s.sent for s in shots) - at:+.1f} s, "
            f"answered {min(s.answered for s in shots) - at:+.1f}.."
            f"{max(s.answered for s in shots) - at:+.1f} s from the fault"
        )
    names = run.procs.names
    for queue in sorted(await asyncio.to_thread(run.procs.depths)):
        if queue in (names.intake,):
            continue
        try:
            count, found = await run.procs.in_queue(queue, lost)
        except Exception as exc:  # evidence only: never hide the failure behind another
            lines.append(f"  {queue}: not read ({exc!r})")
            continue
        lines.append(f"  {queue}: {count} messages, naming {len(found)} of the lost ids")
    return "\n".join(lines)


async def _in_thread(call: Callable[[], object]) -> float:
    """Run the blocking ``call`` in a thread; returns when it started."""
    began = time.monotonic()
    await asyncio.to_thread(call)
    return began


async def test_intake_leader_node_killed_and_restarted(
    procs: Processes, downstream: Downstream, cluster_report: ClusterReport
) -> None:
    """SIGKILL to the node holding ``NS.intake``'s leader mid-stream; started again."""
    rabbit = procs.rabbit
    run = await _start(procs, [procs.redis.urls[0], procs.redis.urls[3]])
    leader = rabbit.index_of(await asyncio.to_thread(rabbit.queue_leader, procs.names.intake))
    before = run.where()
    run.stream("leader")
    await asyncio.sleep(FAULT_AT)
    at = await _in_thread(lambda: rabbit.kill(leader))
    await asyncio.sleep(3.0)
    restarted = time.monotonic()
    await asyncio.to_thread(rabbit.start, leader)
    back = time.monotonic() - restarted
    new_leader = await asyncio.to_thread(rabbit.queue_leader, procs.names.intake)
    await _settle(
        run,
        downstream,
        cluster_report,
        f"RabbitMQ node holding the intake leader SIGKILLed (node {leader}), restarted",
        at,
        f"connections before: {_fmt(before)}; after: {_fmt(run.where())}; leader then on "
        f"node {rabbit.index_of(new_leader)}; the node took {back:.0f} s to rejoin",
    )
    for service in run.services:
        assert run.watch.ready_again(service, at) < WITHIN, service.role


async def test_node_of_a_receiver_and_a_worker_killed_and_restarted(
    procs: Processes, downstream: Downstream, cluster_report: ClusterReport
) -> None:
    """SIGKILL to the node a receiver and a worker are connected to; started again."""
    rabbit = procs.rabbit
    run = await _start(procs, [procs.redis.urls[1], procs.redis.urls[4]])
    # The processes pick their first node at random: start more workers until one shares a
    # node with a receiver, then keep that one and one other (stopped before the stream).
    receiver_nodes = {n for r in run.receivers for n in connected_nodes(r.proc.pid, rabbit)}
    extra: list[Service] = []
    while not any(connected_nodes(w.proc.pid, rabbit) & receiver_nodes for w in run.workers):
        assert len(extra) < 8, "no worker ever connected to a receiver's node"
        worker = await procs.worker(procs.redis.urls[len(extra) % 6])
        await wait_connected(worker, rabbit)
        extra.append(worker)
        run.workers.append(worker)
    target = next(
        n for w in run.workers for n in connected_nodes(w.proc.pid, rabbit) if n in receiver_nodes
    )
    keep = [w for w in run.workers if target in connected_nodes(w.proc.pid, rabbit)][:1]
    keep += [w for w in run.workers if w not in keep][:1]
    for worker in run.workers:
        if worker not in keep:
            assert worker.proc.terminate() == 0
    run.workers = keep
    await run.watch.stop()
    run.watch = Watch(run.services)
    run.watch.start()

    before = run.where()
    on_target = [name for name, nodes in before.items() if target in nodes]
    run.stream("node")
    await asyncio.sleep(FAULT_AT)
    at = await _in_thread(lambda: rabbit.kill(target))
    await asyncio.sleep(3.0)
    restarted = time.monotonic()
    await asyncio.to_thread(rabbit.start, target)
    back = time.monotonic() - restarted
    moved = {name: run.watch.ready_again(s, at) for name, s in _named(run).items()}
    await _settle(
        run,
        downstream,
        cluster_report,
        f"RabbitMQ node of a receiver and a worker SIGKILLed (node {target}), restarted",
        at,
        f"on the node: {', '.join(on_target)}; connections after: {_fmt(run.where())}; "
        f"ready again: {', '.join(f'{k} {v:.1f} s' for k, v in moved.items())}; the node "
        f"took {back:.0f} s to rejoin",
    )
    for service in run.services:
        assert run.watch.ready_again(service, at) < WITHIN, service.role


async def test_node_cut_off_for_20_s_then_healed(
    procs: Processes, downstream: Downstream, cluster_report: ClusterReport
) -> None:
    """One node cut off from the other two (not killed) for 20 s: ``pause_minority``
    pauses it, its clients go on to the others; then the cut heals and it rejoins."""
    rabbit = procs.rabbit
    run = await _start(procs, [procs.redis.urls[2], procs.redis.urls[5]])
    before = run.where()
    # The node most of the processes are on, receivers counting first.
    weights = [0] * len(rabbit.nodes)
    for name, nodes in before.items():
        for n in nodes:
            weights[n] += 3 if name.startswith("receive") else 1
    target = max(range(len(weights)), key=weights.__getitem__)
    on_target = [name for name, nodes in before.items() if target in nodes]
    run.stream("cut")
    await asyncio.sleep(FAULT_AT)
    at = time.monotonic()
    mode = await asyncio.to_thread(rabbit.partition, target, 20)
    await asyncio.to_thread(rabbit.wait_paused, target, 30)
    paused = time.monotonic() - at
    await asyncio.sleep(max(0.0, at + 20 - time.monotonic()))
    while rabbit.is_cut(target):
        await asyncio.sleep(0.1)
    healed = time.monotonic()
    await asyncio.to_thread(rabbit.wait_running, target, 90)
    rejoined = time.monotonic() - healed
    await _settle(
        run,
        downstream,
        cluster_report,
        f"RabbitMQ node cut off for 20 s (node {target}, iptables {mode}), healed",
        at,
        f"on the node: {', '.join(on_target)}; paused by pause_minority {paused:.1f} s after "
        f"the cut; connections after: {_fmt(run.where())}; running again {rejoined:.0f} s "
        "after the heal",
    )
    for service in run.services:
        assert run.watch.ready_again(service, at) < WITHIN, service.role


async def test_redis_master_killed_and_restarted(
    procs: Processes, downstream: Downstream, cluster_report: ClusterReport
) -> None:
    """SIGKILL to a Redis master (the node worker 0's ``REDIS_URL`` names): its replica
    takes over, the workers wait meanwhile; the killed node comes back as a replica."""
    cluster = procs.redis
    master = cluster.masters()[0]
    other = next(p for p in cluster.ports if p != master)
    run = await _start(procs, [f"redis://127.0.0.1:{master}/0", f"redis://127.0.0.1:{other}/0"])
    replica = cluster.replica_of(master)
    run.stream("redis")
    await asyncio.sleep(FAULT_AT)
    at = await _in_thread(lambda: cluster.kill(master))
    while cluster.replica_of(master) is not None or replica not in cluster.masters():
        assert time.monotonic() - at < 30, "the replica never took over"
        await asyncio.sleep(0.1)
    took_over = time.monotonic() - at
    await asyncio.sleep(1.0)
    await asyncio.to_thread(cluster.start, master)
    await asyncio.to_thread(cluster.wait_ok, 60)
    await asyncio.to_thread(cluster.wait_replicated, 60)
    role = cluster.info(master).get("role")
    workers_ready = [run.watch.ready_again(w, at) for w in run.workers]
    await _settle(
        run,
        downstream,
        cluster_report,
        "Redis master SIGKILLed (its replica took over), restarted",
        at,
        f"replica {replica} master {took_over:.1f} s after the kill; the old master came back "
        f"as {role}; workers ready again "
        f"{', '.join(f'{t:.1f} s' for t in workers_ready)} after the kill",
    )
    assert role == "slave"
    for service in run.services:
        assert run.watch.ready_again(service, at) < 15, service.role


def _slowest(shots: list[Shot], since: float) -> float:
    """The longest a postback answered 200 waited for its answer, among those answered
    after ``since``."""
    return max(
        (s.answered - s.sent for s in shots if s.status == 200 and s.answered >= since), default=0.0
    )


def _named(run: Run) -> dict[str, Service]:
    return {f"{s.role} {s.proc.pid}": s for s in run.services}


def _fmt(where: dict[str, set[int]]) -> str:
    return ", ".join(
        f"{name.split()[0]}→{'/'.join(map(str, sorted(nodes))) or '-'}"
        for name, nodes in where.items()
    )
