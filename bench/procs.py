"""Processes the bench starts: pinned with taskset, each in its own process group, always
stopped (SIGTERM to the group, then SIGKILL), logs kept under ``bench/results/logs``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LOG_DIR = RESULTS_DIR / "logs"

_running: list[ManagedProcess] = []


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
        env: Mapping[str, str] | None = None,
        log_name: str | None = None,
    ) -> None:
        self.name = name
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{log_name or name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
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

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the whole process group; returns the exit status (None if it was killed)."""
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
            return self.popen.returncode
        finally:
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


async def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """Status of ``GET path`` (a minimal HTTP/1.0 client), None when nothing answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


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
