"""Processes the bench starts: pinned with taskset, each in its own process group, always
stopped (SIGTERM to the group, then SIGKILL), logs kept under ``bench/results/logs``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LOG_DIR = RESULTS_DIR / "logs"

_running: list[ManagedProcess] = []
# (name, log file, exit status or None if it had to be killed, seconds SIGTERM took)
EXITS: list[tuple[str, str, int | None, float]] = []


def taskset_prefix(cpu: int | Sequence[int] | None) -> list[str]:
    """``taskset -c LIST`` (taskset execs the command: the pid stays the command's)."""
    if cpu is None:
        return []
    cpus = [cpu] if isinstance(cpu, int) else list(cpu)
    return ["taskset", "-c", ",".join(str(c) for c in cpus)]


def pin_self(cpu: int | None) -> None:
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | Sequence[int] | None,
        env: Mapping[str, str] | None = None,  # the whole environment (default: ours)
        log_name: str | None = None,
        cgroup: Path | None = None,  # a cpu cgroup (see cpu_capped) to start it in
    ) -> None:
        self.name = name
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{log_name or name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        full_env = dict(os.environ if env is None else env)
        self.argv = [*taskset_prefix(cpu), *argv]
        self.popen = subprocess.Popen(
            self.argv,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        _running.append(self)
        if cgroup is not None:  # within a millisecond of its start, before it does any work
            (cgroup / "cgroup.procs").write_text(str(self.pid))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the whole process group; returns the exit status (None if it was killed)."""
        started = time.monotonic()
        status: int | None = None
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.pid, signal.SIGKILL)
                    self.popen.wait(5)
                    return None
            # Any straggler left in the group (children of a `run`) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            status = self.popen.returncode
            return status
        finally:
            EXITS.append((self.name, self.log_path.name, status, time.monotonic() - started))
            if self in _running:
                _running.remove(self)
            self._log.close()

    async def astop(self, timeout: float = 10.0) -> int | None:
        return await asyncio.to_thread(self.stop, timeout)

    def rss_kb(self) -> int:
        """VmRSS of the process plus all its descendants, in KiB."""
        return sum(rss_kb(pid) for pid in [self.pid, *descendants(self.pid)])


def stop_all() -> None:
    for proc in list(reversed(_running)):
        proc.stop(5.0)


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


async def http_get(
    host: str, port: int, path: str, timeout: float = 2.0
) -> tuple[int, bytes] | None:
    """Status and body of ``GET path`` (a minimal HTTP/1.0 client), None when nothing
    answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)  # HTTP/1.0: until EOF
        head, _, body = answer.partition(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split()
        return (int(parts[1]), body) if len(parts) >= 2 else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """Status of ``GET path``, None when nothing answers."""
    got = await http_get(host, port, path, timeout)
    return None if got is None else got[0]


async def wait_http_ok(
    proc: ManagedProcess, port: int, path: str, timeout: float = 60.0, host: str = "127.0.0.1"
) -> float:
    """Wait until ``GET path`` answers 200; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode} before it was ready:\n"
                + proc.log_tail()
            )
        if await http_status(host, port, path) == 200:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name}: GET {path} on port {port} not 200 after {timeout:g}s")


def port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def wait_port_free(port: int, timeout: float = 10.0) -> None:
    start = time.monotonic()
    while not port_free(port):
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"port {port} is still in use")
        await asyncio.sleep(0.1)


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]), idle


async def machine_busy(seconds: float = 1.0) -> float:
    """Percent of all CPUs busy over ``seconds`` (before a phase: others' load = noise)."""
    total0, idle0 = _cpu_times()
    await asyncio.sleep(seconds)
    total1, idle1 = _cpu_times()
    dt = total1 - total0
    return round(100.0 * (dt - (idle1 - idle0)) / dt, 1) if dt > 0 else 0.0


_TCK = os.sysconf("SC_CLK_TCK")


def _service_uids() -> set[int]:
    import pwd

    uids: set[int] = set()
    for name in ("rabbitmq", "redis"):
        with contextlib.suppress(KeyError):
            uids.add(pwd.getpwnam(name).pw_uid)
    return uids


def _proc_ticks(stat: str) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) from a /proc/PID/stat line."""
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def tree_ticks(pid: int) -> int:
    """CPU ticks used so far by ``pid`` and its descendants (live, and reaped)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            own, children = _proc_ticks(Path(f"/proc/{p}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        total += own + children
    return total


def service_pids() -> list[int]:
    """The broker's and Redis's processes: those of the rabbitmq/redis users, or named
    redis-server."""
    services = _service_uids()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid in services or "(redis-server)" in (entry / "stat").read_text():
                pids.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return pids


def service_ticks() -> int:
    """CPU ticks used so far by the broker and Redis (see :func:`_accounted_ticks`)."""
    total = 0
    for pid in service_pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += _proc_ticks(Path(f"/proc/{pid}/stat").read_text())[0]
    return total


@contextlib.contextmanager
def services_pinned(cpu: int | None) -> Iterator[int]:
    """Every thread of RabbitMQ and Redis on ``cpu`` for the block (``None``: leave them
    where they are), then back on the CPUs each had. Yields the number of threads moved."""
    saved: dict[int, set[int]] = {}
    try:
        if cpu is not None:
            for pid in service_pids():
                with contextlib.suppress(OSError):
                    for task in Path(f"/proc/{pid}/task").iterdir():
                        tid = int(task.name)
                        with contextlib.suppress(OSError):
                            before = os.sched_getaffinity(tid)
                            os.sched_setaffinity(tid, {cpu})
                            saved[tid] = before
        yield len(saved)
    finally:
        for tid, cpus in saved.items():
            with contextlib.suppress(OSError):  # a thread that has ended since
                os.sched_setaffinity(tid, cpus)


CPU_CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")  # cgroup v1 cpu controller


@contextlib.contextmanager
def cpu_capped(name: str, cores: float) -> Iterator[Path | None]:
    """A cgroup v1 ``cpu`` group whose processes together get at most ``cores`` CPUs
    (CFS quota); ``None`` where cgroups cannot be made here (no root, cgroup v2 only)."""
    group = CPU_CGROUP_ROOT / name
    try:
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(int(cores * 100_000)))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        yield None
        return
    try:
        yield group
    finally:
        # Its processes have been stopped; a group is removed once it holds none.
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def ticks_to_core_pct(ticks: int, seconds: float) -> float:
    """CPU ticks over ``seconds`` as % of one core."""
    return round(100.0 * ticks / (_TCK * seconds), 1) if seconds > 0 else 0.0


def _accounted_ticks() -> int:
    """CPU ticks of this process and its descendants (live, and reaped: cutime/cstime), and
    of the broker and Redis (see :func:`service_pids`)."""
    return tree_ticks(os.getpid()) + service_ticks()


class NoiseMeter:
    """CPU used by everything else on the machine during a measurement: all busy time
    (/proc/stat) less this process and its descendants and less the broker and Redis, in %
    of all cores."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = self._busy()
        self._ours0 = _accounted_ticks()

    @staticmethod
    def _busy() -> int:
        total, idle = _cpu_times()
        return total - idle

    def others_pct(self) -> float:
        elapsed = time.monotonic() - self._t0
        others = (self._busy() - self._busy0) - (_accounted_ticks() - self._ours0)
        cpus = os.cpu_count() or 1
        pct = 100.0 * others / (_TCK * elapsed * cpus) if elapsed > 0 else 0.0
        return round(max(0.0, pct), 1)
