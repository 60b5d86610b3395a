"""The ``postbacks`` command line: run, receive, work, topology, subscribe, replay, tail."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

import aiormq.exceptions
from aiohttp import web

from ingest import broker, contract, logs
from ingest.app import IN_FLIGHT, ReceiverRunner
from ingest.app import create_app as create_receiver
from ingest.names import check_subscription
from ingest.settings import OPTIONS, BadSetting, Settings, check_spool_dir
from worker import entry, history, stats, status, tools
from worker.http import create_app as create_worker_http
from worker.metrics import WorkerMetrics
from worker.stores import open_stores
from worker.worker import Worker

log = logging.getLogger("postbacks")

SHUTDOWN_TIMEOUT = 7.0  # with the rest of the shutdown, stays under the contract's 10 s
DRAIN_TIMEOUT = 5.0  # of SHUTDOWN_TIMEOUT, for requests in flight to finish first
# A connection that sends no complete request head for this long is closed (aiohttp's
# default is an hour: slow or idle clients would hold sockets that long).
IDLE_TIMEOUT = 15.0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration (each flag overrides its variable)")
    for option in OPTIONS:
        default = f" (default {option.default})" if option.default is not None else ""
        group.add_argument(
            option.flag,
            dest=option.variable,
            metavar=option.variable,
            help=f"{option.help}{default}",
        )
    parser = argparse.ArgumentParser(
        prog="postbacks", description="Durable intake for Sinch MMS postbacks."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", parents=[common], help="receiver and one worker (one machine)")
    commands.add_parser("receive", parents=[common], help="the HTTP receiver only")
    commands.add_parser("work", parents=[common], help="one worker only")
    commands.add_parser("topology", parents=[common], help="declare exchanges and queues, exit")
    sub = commands.add_parser(
        "subscribe", parents=[common], help="declare NS.sub.NAME bound to the events exchange"
    )
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("patterns", metavar="PATTERN", nargs="+", help="e.g. mms_mt.delivery.#")
    replay = commands.add_parser(
        "replay", parents=[common], help="move quarantined postbacks back to the intake queue"
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="list each quarantined message with its reason (x-error or the broker's "
        "x-first-death-reason), move nothing",
    )
    replay.add_argument(
        "--match",
        metavar="TEXT",
        help="only messages whose quarantine reason contains TEXT",
    )
    replay.add_argument(
        "--limit", metavar="N", type=_limit, help="move (or list) at most N messages, N >= 1"
    )
    tail = commands.add_parser("tail", parents=[common], help="print events as they fan out")
    tail.add_argument(
        "pattern", metavar="PATTERN", nargs="?", default="#", help="e.g. '#.failed.#' (default #)"
    )
    tail.add_argument(
        "--format",
        choices=("json", "human"),
        default="json",
        dest="output",
        help="json: each event as sent, one a line (default); human: one readable line each",
    )
    tail.add_argument(
        "--since",
        metavar="TIME",
        help="first print the history's events received since TIME (ISO 8601, UTC if no "
        "offset; needs NS.history), then go on live",
    )
    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="deliver to NS.sub.NAME the events of the history it missed",
    )
    backfill.add_argument("name", metavar="NAME")
    backfill.add_argument(
        "--since", metavar="TIME", required=True, help="ISO 8601, UTC if no offset"
    )
    backfill.add_argument(
        "--until", metavar="TIME", help="ISO 8601, UTC if no offset (default: now)"
    )
    backfill.add_argument(
        "patterns",
        metavar="PATTERN",
        nargs="*",
        help="routing-key patterns (default: the bindings NS.sub.NAME has now, read from the "
        "management API)",
    )
    backfill.add_argument(
        "--management-url",
        metavar="URL",
        help="RabbitMQ management API to read NS.sub.NAME's bindings from (default: the "
        "AMQP host, port 15672, the AMQP credentials)",
    )
    status_cmd = commands.add_parser(
        "status", parents=[common], help="the lifecycles of one tracking id (needs REDIS_URL)"
    )
    status_cmd.add_argument("tracking_id", metavar="TRACKING_ID")
    status_cmd.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        dest="output",
        help="table: readable (default); json: for scripts",
    )
    commands.add_parser(
        "schema", help="print the JSON Schema of the event (draft 2020-12), shipped with it"
    )
    stats = commands.add_parser(
        "stats", parents=[common], help="queue depths, consumers, rates, quarantine size"
    )
    stats.add_argument(
        "--management-url",
        metavar="URL",
        help="RabbitMQ management API for rates (default: the AMQP host, port 15672, the "
        "AMQP credentials); 'off' to sample depths over AMQP only",
    )
    stats.add_argument(
        "--interval",
        default="1",
        metavar="SECONDS",
        help="seconds between the two depth samples behind net/s, 0 to 60 (default 1; 0: "
        "one sample)",
    )
    return parser


def _limit(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


MAX_INTERVAL = 60.0


def _interval(text: str) -> float:
    """``--interval`` in seconds: a finite number from 0 to ``MAX_INTERVAL`` (``inf`` would
    sleep forever, ``nan`` and negatives make no sense)."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"--interval: not a number of seconds: {text!r}") from None
    if not 0 <= seconds <= MAX_INTERVAL:  # also false for nan
        raise ValueError(f"--interval: {text} is out of range 0..{MAX_INTERVAL:g} seconds")
    return seconds


def _settings(args: argparse.Namespace) -> Settings:
    flags = {option.variable: getattr(args, option.variable, None) for option in OPTIONS}
    return Settings.load(flags=flags)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if entry.stop_requested():  # asked to stop while it was still starting
        stop.set()
    return stop


def _where(settings: Settings, port: int) -> str:
    """The URL to POST to on this machine. A wildcard host becomes the loopback address of
    its family: asyncio binds ``::`` IPv6-only, so 127.0.0.1 would be refused there."""
    host = settings.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}/postbacks"


async def _listen(
    site: web.TCPSite, variables: str, host: str, port: int, runner: web.AppRunner
) -> None:
    """Start listening, or fail naming the settings behind an address that cannot be used."""
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise BadSetting(
            variables, f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None


async def receive(settings: Settings) -> None:
    stop = _stop_event()
    app = create_receiver(settings)
    runner = ReceiverRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT - DRAIN_TIMEOUT,
        keepalive_timeout=IDLE_TIMEOUT,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=4096, reuse_address=True)
    await _listen(site, "INGEST_HOST/INGEST_PORT", settings.host, settings.port, runner)
    port = settings.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    log.info("receiver listening", extra={"url": _where(settings, port), "port": port})
    await stop.wait()
    log.info("receiver stopping: answering requests in flight")
    await site.stop()  # no new connections
    # Requests in flight finish *before* aiohttp's own shutdown, which drops the rest of a
    # body still arriving: such a request would get no answer.
    in_flight = app[IN_FLIGHT]
    in_flight.stopping = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(in_flight.idle.wait(), DRAIN_TIMEOUT)
    await runner.cleanup()
    log.info("receiver stopped")


async def work(settings: Settings) -> None:
    stop = _stop_event()
    stores = open_stores(settings)
    worker = Worker(settings, stores.dedup, WorkerMetrics(), stores.lifecycles)
    runner = web.AppRunner(create_worker_http(worker), access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.metrics_port, reuse_address=True)
    await _listen(
        site, "INGEST_HOST/WORKER_METRICS_PORT", settings.host, settings.metrics_port, runner
    )
    log.info(
        "worker started",
        extra={
            "metrics_port": settings.metrics_port,
            "dedup": "redis" if settings.redis_url else "memory",
        },
    )
    running = asyncio.create_task(worker.run())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    worker.stop()
    try:
        await asyncio.wait_for(running, SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log.warning("worker did not finish in time; unacked messages return to the queue")
    await runner.cleanup()
    await stores.close()
    log.info("worker stopped", extra={"published": worker.published})


def run_both(argv: Sequence[str]) -> int:
    """``postbacks run``: a receiver and a worker as two child processes (one per core),
    stopped together."""
    rest = list(argv)
    rest.remove("run")
    base = [sys.executable, "-m", "worker.entry"]
    children = [
        subprocess.Popen([*base, "receive", *rest]),
        subprocess.Popen([*base, "work", *rest]),
    ]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if entry.stop_requested():  # asked to stop while it was still starting
        forward(signal.SIGTERM, None)
    failed: int | None = None
    while any(child.poll() is None for child in children):
        for child in children:
            code = child.poll()
            if stopping and code in (-signal.SIGTERM, -signal.SIGINT):
                code = 0  # stopped by the signal passed on before it had started anything
            if code is not None and code != 0 and failed is None:
                failed = code
                if not stopping:
                    # Exit 2 is a setting the child refused, and it said so in one line:
                    # another line here would only repeat it.
                    if code != 2:
                        log.error(
                            "a child process failed; stopping the other", extra={"exit": code}
                        )
                    forward(signal.SIGTERM, None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            children[0].wait(timeout=0.2)
    if failed is None:
        return 0
    return 2 if failed == 2 else 1


async def _tail(settings: Settings, pattern: str, output: str, since: str | None) -> None:
    if since is None:
        await history.declare_at_start(settings)
        await tools.tail(settings, pattern, output, _stop_event())
        return
    start = history.parse_time(since, "--since")
    await history.tail_since(settings, pattern, start, output, _stop_event())


async def _backfill(settings: Settings, args: argparse.Namespace) -> history.Outcome:
    since = history.parse_time(args.since, "--since")
    until = history.parse_time(args.until, "--until") if args.until else None
    try:
        check_subscription(settings.names, args.name, list(args.patterns))
    except ValueError as exc:
        raise history.Refused(str(exc)) from None
    return await history.backfill(
        settings, args.name, since, until, args.patterns, args.management_url, stop=_stop_event()
    )


def _stats(settings: Settings, args: argparse.Namespace, interval: float) -> None:
    print(asyncio.run(stats.report(settings, args.management_url, interval)))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # A backfill's PATTERNs may follow its options (argparse takes positionals only before).
    args, extra = parser.parse_known_args(argv)
    command: str = args.command
    if extra and (command != "backfill" or any(item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.patterns = [*args.patterns, *extra]
    if command == "schema":  # needs no configuration: the document ships with the package
        print(contract.text(contract.EVENT_SCHEMA), end="")
        return 0
    try:
        settings = _settings(args)
        if command in ("run", "receive") and settings.spool_dir is not None:
            check_spool_dir(settings.spool_dir)
        if command == "subscribe":
            check_subscription(settings.names, args.name, args.patterns)
        interval = _interval(args.interval) if command == "stats" else 0.0
    except ValueError as exc:  # BadSetting among them
        print(f"postbacks: error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    if entry.stop_requested():
        return 0  # asked to stop before it began: nothing was done
    if command not in ("run", "receive", "work", "tail", "backfill"):
        # The one-shot commands install no handlers of their own: signals act as usual.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if command in ("run", "receive", "work"):
        log.info(f"{command}: configuration", extra={"config": settings.effective()})
    if command == "run":
        code = run_both(argv)
        return code
    _use_uvloop()
    try:
        if command in ("receive", "work"):
            asyncio.run(history.declare_at_start(settings))
        if command == "receive":
            asyncio.run(receive(settings))
        elif command == "work":
            asyncio.run(work(settings))
        elif command == "topology":
            asyncio.run(tools.declare_topology(settings))
            print(f"topology of namespace {settings.namespace!r} declared")
        elif command == "subscribe":
            queue = asyncio.run(tools.subscribe(settings, args.name, args.patterns))
            print(f"{queue} bound to {settings.names.events} with {' '.join(args.patterns)}")
        elif command == "replay":
            listing = sys.stdout if args.dry_run else None
            moved = asyncio.run(
                tools.replay(
                    settings,
                    dry_run=args.dry_run,
                    listing=listing,
                    match=args.match,
                    limit=args.limit,
                )
            )
            verb = "would move" if args.dry_run else "moved"
            print(f"{verb} {moved} postback message(s) from quarantine to intake")
        elif command == "tail":
            asyncio.run(_tail(settings, args.pattern, args.output, args.since))
        elif command == "stats":
            _stats(settings, args, interval)
        elif command == "backfill":
            outcome = asyncio.run(_backfill(settings, args))
            print(
                f"read {outcome.read} event(s) of the history, delivered {outcome.delivered} to "
                f"{settings.names.subscriber(args.name)}"
            )
        elif command == "status":
            try:
                found = asyncio.run(status.lifecycles_of(settings, args.tracking_id))
            except status.Unknown as exc:
                print(f"postbacks: {exc}", file=sys.stderr)
                return 1
            print(status.as_json(found) if args.output == "json" else status.as_table(found))
    except history.Refused as exc:
        print(f"postbacks: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"postbacks: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError, aiormq.exceptions.AMQPError) as exc:
        print(f"postbacks: error: {broker_error(settings, exc)}", file=sys.stderr)
        return 1
    return 0


def broker_error(settings: Settings, exc: BaseException) -> str:
    """One line naming ``AMQP_URL`` and the broker's reason (each node's, for a list)."""
    urls = settings.amqp_urls
    reason = str(exc) if isinstance(exc, broker.Unreachable) else broker.describe(exc)
    if len(urls) > 1 and isinstance(exc, broker.Unreachable):
        return f"AMQP_URL: no node of {len(urls)} took the connection: {reason}"
    return f"AMQP_URL {settings.effective()['AMQP_URL']}: {reason}"


def _use_uvloop() -> None:
    if os.environ.get("POSTBACKS_NO_UVLOOP"):
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
