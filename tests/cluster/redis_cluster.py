"""A private six-node Redis Cluster (three masters, three replicas) on loopback.

Each node is a daemonized ``redis-server --cluster-enabled yes`` on free ports (client port
and cluster bus port both chosen), with nothing persisted but its cluster config file, so a
node killed with SIGKILL and started again with the same files rejoins with its identity:
as a replica when its replica took its slots over meanwhile. ``cluster-node-timeout`` is
short, so a failover takes a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.faults.services import pid_alive

NODES = 6
NODE_TIMEOUT_MS = 2000


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (held open together so none repeats)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class RedisClusterError(RuntimeError):
    """The cluster could not be started or did not reach the expected state."""


class RedisCluster:
    """Start with :meth:`start_all`; :meth:`stop` removes everything, whatever state."""

    def __init__(self, nodes: int = NODES, node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pbrcluster-"))
        ports = _free_ports(2 * nodes)
        self.ports = ports[:nodes]
        self.bus_ports = dict(zip(self.ports, ports[nodes:], strict=True))
        self.node_timeout_ms = node_timeout_ms
        self.started_seconds: float | None = None

    # -- addresses ---------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}/0" for port in self.ports]

    def url(self, i: int = 0) -> str:
        return self.urls[i]

    def node_dir(self, port: int) -> Path:
        return self.base / str(port)

    def pid_file(self, port: int) -> Path:
        return self.node_dir(port) / "redis.pid"

    def log_file(self, port: int) -> Path:
        return self.node_dir(port) / "redis.log"

    # -- life cycle --------------------------------------------------------------------

    def start_all(self, timeout: float = 60.0) -> float:
        """Start the nodes, create the cluster, wait until every node says ok; returns the
        seconds it took."""
        began = time.monotonic()
        for port in self.ports:
            self.start(port, wait=False)
        for port in self.ports:
            self._wait_answers(port, began + timeout)
        created = self.cli(
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in self.ports),
            "--cluster-replicas",
            "1",
            "--cluster-yes",
            port=None,
            timeout=timeout,
        )
        if created.returncode != 0:
            raise RedisClusterError(
                f"redis-cli --cluster create failed ({created.returncode}):\n"
                f"{created.stdout}\n{created.stderr}\n{self.logs()}"
            )
        self.wait_ok(timeout=max(1.0, began + timeout - time.monotonic()))
        self.started_seconds = time.monotonic() - began
        return self.started_seconds

    def start(self, port: int, wait: bool = True) -> None:
        """Start node ``port`` (again) with its own config file: a node that was in the
        cluster rejoins it."""
        path = self.node_dir(port)
        path.mkdir(parents=True, exist_ok=True)
        self.pid_file(port).unlink(missing_ok=True)
        done = subprocess.run(
            [
                "redis-server",
                *("--port", str(port)),
                *("--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes"),
                *("--cluster-port", str(self.bus_ports[port])),
                *("--cluster-config-file", str(path / "nodes.conf")),
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
                *("--save", ""),
                *("--appendonly", "no"),
                *("--daemonize", "yes"),
                *("--pidfile", str(self.pid_file(port))),
                *("--dir", str(path)),
                *("--logfile", str(self.log_file(port))),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RedisClusterError(
                f"redis-server on port {port} did not start ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}\n{self.logs([port])}"
            )
        if wait:
            self._wait_answers(port, time.monotonic() + 20)

    def kill(self, port: int) -> None:
        """SIGKILL node ``port`` and wait until it is gone."""
        pid = self._pid(port)
        if pid is None:
            raise RedisClusterError(f"no pid for node {port}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill every node still running and remove the directory; never raises."""
        for port in self.ports:
            pid = self._pid(port)
            if pid is not None and pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for port in self.ports:
            pid = self._pid(port)
            deadline = time.monotonic() + 10
            while pid is not None and pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        if not os.environ.get("REDIS_CLUSTER_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)

    # -- state -------------------------------------------------------------------------

    def cli(
        self, *args: str, port: int | None, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        where = [] if port is None else ["-h", "127.0.0.1", "-p", str(port)]
        try:
            return subprocess.run(
                ["redis-cli", *where, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 124, "", f"timed out after {timeout}s")

    def alive(self, port: int) -> bool:
        pid = self._pid(port)
        return pid is not None and pid_alive(pid)

    def info(self, port: int, section: str = "replication") -> dict[str, str]:
        done = self.cli("info", section, port=port, timeout=5)
        out: dict[str, str] = {}
        for line in done.stdout.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep:
                out[key] = value
        return out

    def cluster_info(self, port: int) -> dict[str, str]:
        done = self.cli("cluster", "info", port=port, timeout=5)
        out: dict[str, str] = {}
        for line in done.stdout.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep:
                out[key] = value
        return out

    def masters(self) -> list[int]:
        """Ports of the live nodes that are masters holding slots, as the live nodes see it."""
        out = []
        for port in self.ports:
            if not self.alive(port):
                continue
            if self.info(port).get("role") == "master" and self._holds_slots(port):
                out.append(port)
        return out

    def replica_of(self, master_port: int) -> int | None:
        """Port of a live replica whose master is ``master_port``."""
        for port in self.ports:
            if port == master_port or not self.alive(port):
                continue
            info = self.info(port)
            if info.get("role") == "slave" and info.get("master_port") == str(master_port):
                return port
        return None

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node says ``cluster_state:ok``, three masters hold the
        slots and each has a replica linked to it."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            live = [port for port in self.ports if self.alive(port)]
            states = {port: self.cluster_info(port).get("cluster_state") for port in live}
            if live and all(state == "ok" for state in states.values()):
                return
            last = f"cluster_state per node: {states}"
            time.sleep(0.1)
        raise RedisClusterError(f"cluster not ok within {timeout}s: {last}\n{self.logs()}")

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Wait until every live replica has its link to its master up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            links = [
                info.get("master_link_status")
                for info in (self.info(port) for port in self.ports if self.alive(port))
                if info.get("role") == "slave"
            ]
            if links and all(link == "up" for link in links):
                return
            time.sleep(0.1)
        raise RedisClusterError(f"replicas not linked within {timeout}s\n{self.logs()}")

    def logs(self, ports: list[int] | None = None, lines: int = 30) -> str:
        parts = []
        for port in ports or self.ports:
            log = self.log_file(port)
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- redis node {port} ---\n{tail}")
        return "\n".join(parts)

    # -- helpers -----------------------------------------------------------------------

    def _holds_slots(self, port: int) -> bool:
        nodes = self.cli("cluster", "nodes", port=port, timeout=5).stdout
        for line in nodes.splitlines():
            fields = line.split()
            if len(fields) >= 8 and "myself" in fields[2]:
                return len(fields) > 8
        return False

    def _pid(self, port: int) -> int | None:
        """The pid of node ``port`` from its pid file, only while that process is still
        this node's ``redis-server`` (a stale file never names another process)."""
        try:
            pid = int(self.pid_file(port).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if b"redis-server" not in cmdline or f":{port}".encode() not in cmdline:
            return None
        return pid

    def _wait_answers(self, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.cli("ping", port=port, timeout=5).stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RedisClusterError(f"redis node {port} does not answer\n{self.logs([port])}")
