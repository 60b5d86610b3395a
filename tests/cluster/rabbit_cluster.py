"""A private three-node RabbitMQ cluster on this machine, for the cluster suite.

The shared broker (``rabbit@localhost``, ports 5672/25672) and the shared ``epmd`` are never
touched: the cluster has its own ``epmd`` on a free port, its own Erlang cookie (``HOME`` is
the cluster's temporary directory), and nodes named ``pbc<pid>a@localhost``,
``pbc<pid>b@localhost``, ... with their own AMQP, distribution and management ports, data and
logs. The nodes form the cluster at boot (``classic_config`` peer discovery: node 0 first,
then the others join it) and run with ``cluster_partition_handling = pause_minority``.

Node indices are 0-based, in the order of :attr:`RabbitCluster.urls`.

**Partitions.** Every node opens its distribution connections from an address of its own
(``inet_dist_connect_options``: ``127.X.Y.1``, ``127.X.Y.2``, ... derived from this process
id; the whole of 127/8 is loopback), while the CLI tools connect from ``127.0.0.1``. So
:meth:`RabbitCluster.partition` can cut node *i*'s distribution traffic to and from the
other nodes with ``iptables`` rules (in a chain of this process's own, removed again by
:meth:`~RabbitCluster.heal` and :meth:`~RabbitCluster.stop`), while its AMQP port and
``rabbitmqctl`` still reach it: the node is cut off, not killed, and ``pause_minority``
pauses it (its AMQP listener closes) until the cut is healed. Without ``iptables`` the cut
is made inside Erlang instead (a wrong cookie for each peer), with the same outcome.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tests.faults.services import pid_alive, tool

PartitionMode = Literal["reject", "drop", "cookie"]
PLUGINS_DIR_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"


def free_port(avoid: Sequence[int] = ()) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def management_available() -> bool:
    """Whether the management plugin is installed (a directory or an ``.ez`` archive)."""
    return any(
        p.name.startswith("rabbitmq_management-")
        for d in glob.glob(PLUGINS_DIR_GLOB)
        for p in Path(d).iterdir()
    )


class ClusterError(RuntimeError):
    pass


class RabbitNode:
    """One node of the cluster: its names, ports and files, and the CLI pointed at it."""

    def __init__(self, cluster: RabbitCluster, index: int, used: list[int]) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"pbc{os.getpid()}{chr(ord('a') + index)}@localhost"
        self.base = cluster.base / self.name.split("@")[0]
        self.port = free_port(used)
        used.append(self.port)
        self.dist_port = free_port(used)
        used.append(self.dist_port)
        self.management_port = free_port(used)
        used.append(self.management_port)
        # The address this node's outgoing distribution connections come from.
        self.dist_source = f"{cluster.address_prefix}.{index + 1}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.base / "rabbit.pid"

    @property
    def log_file(self) -> Path:
        return self.base / "log" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.cluster.home),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_PID_FILE=str(self.pid_file),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(self.base / "plugins-expand"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_EPMD_PORT=str(self.cluster.epmd_port),
        )
        return env

    def ctl(
        self, *args: str, timeout: float = 60, program: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [tool(program), "-q", "-n", self.name, *args],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=self.base,
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 124, "", f"timed out after {timeout}s")

    def write_files(self, all_nodes: Sequence[str]) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        plugins = "[rabbitmq_management]" if self.cluster.management else "[]"
        (self.base / "enabled_plugins").write_text(f"{plugins}.\n")
        lines = [
            "loopback_users = none",
            "cluster_partition_handling = pause_minority",
            "cluster_formation.peer_discovery_backend = classic_config",
            *(
                f"cluster_formation.classic_config.nodes.{n + 1} = {name}"
                for n, name in enumerate(all_nodes)
            ),
            # Leave room for the other suites' brokers on this machine.
            "vm_memory_high_watermark.relative = 0.2",
            "disk_free_limit.absolute = 50MB",
        ]
        if self.cluster.management:
            lines += [
                f"management.tcp.port = {self.management_port}",
                "management.tcp.ip = 127.0.0.1",
            ]
        (self.base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        a, b, c, d = (int(part) for part in self.dist_source.split("."))
        (self.base / "advanced.config").write_text(
            "[{kernel, ["
            f"{{net_ticktime, {self.cluster.net_ticktime}}}, "
            "{inet_dist_use_interface, {127,0,0,1}}, "
            f"{{inet_dist_connect_options, [{{ip, {{{a},{b},{c},{d}}}}}]}}"
            "]}].\n"
        )
        (self.base / "rabbitmq-env.conf").write_text("")

    def launch(self) -> None:
        """``rabbitmq-server -detached``: returns once the VM is forked, not booted."""
        self.pid_file.unlink(missing_ok=True)
        done = subprocess.run(
            [tool("rabbitmq-server"), "-detached"],
            env=self.env(),
            timeout=60,
            cwd=self.base,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"rabbitmq-server -detached for {self.name} exited {done.returncode}: "
                f"{done.stdout} {done.stderr}"
            )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return f"(no log at {self.log_file})"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


class RabbitCluster:
    """Three RabbitMQ 3.10 nodes clustered on loopback; see the module docstring."""

    def __init__(
        self,
        size: int = 3,
        *,
        base: Path | None = None,
        management: bool | None = None,
        net_ticktime: int = 10,
    ) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="pbc-"))
        self._own_base = base is None
        self.home = self.base / "home"
        self.management = management_available() if management is None else management
        self.net_ticktime = net_ticktime
        # 127.X.Y.0/24 of this process: the nodes' distribution source addresses.
        p = os.getpid() % 32768
        self.address_prefix = f"127.{128 + p // 256}.{p % 256}"
        self.chain = f"PBC{os.getpid()}"
        used: list[int] = []
        self.epmd_port = free_port(used)
        used.append(self.epmd_port)
        self.nodes = [RabbitNode(self, i, used) for i in range(size)]
        self._epmd: subprocess.Popen[bytes] | None = None
        self._chain_made = False
        self._cut: dict[int, PartitionMode] = {}
        self._heal_timers: dict[int, threading.Timer] = {}
        self._lock = threading.Lock()
        self.started_in: float | None = None

    # --- addresses ---------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def url(self, i: int) -> str:
        return self.nodes[i].url

    def node(self, i: int) -> str:
        return self.nodes[i].name

    def index_of(self, node_name: str) -> int:
        for n in self.nodes:
            if n.name == node_name:
                return n.index
        raise KeyError(node_name)

    def management_url(self, i: int) -> str:
        return f"http://guest:guest@127.0.0.1:{self.nodes[i].management_port}/"

    def ctl(
        self, i: int, *args: str, timeout: float = 60, program: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n <node i> args...`` (or another CLI tool: ``program``)."""
        return self.nodes[i].ctl(*args, timeout=timeout, program=program)

    # --- life cycle --------------------------------------------------------------------------

    def start(self, i: int | None = None, timeout: float = 90) -> None:
        """Without ``i``: boot the whole cluster (node 0 first, then the others join it).
        With ``i``: start node ``i`` again after :meth:`kill` (it rejoins with its data)."""
        if i is not None:
            self._start_node(i, timeout)
            return
        began = time.monotonic()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            cookie = self.home / ".erlang.cookie"
            cookie.write_text(f"PBCLUSTER{os.getpid()}{int(time.time())}")
            cookie.chmod(0o400)
            self._start_epmd()
            names = [n.name for n in self.nodes]
            for n in self.nodes:
                n.write_files(names)
            first, *rest = self.nodes
            first.launch()
            self._wait_booted([first], began + timeout)
            for n in rest:
                n.launch()
            self._wait_booted(rest, began + timeout)
            self.wait_clustered(timeout=max(5.0, began + timeout - time.monotonic()))
        except BaseException as exc:
            logs = self.logs()
            self.stop()
            if isinstance(exc, ClusterError | subprocess.SubprocessError | OSError):
                raise ClusterError(f"{exc}\n{logs}") from exc
            raise
        self.started_in = time.monotonic() - began

    def _start_epmd(self) -> None:
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self._epmd = subprocess.Popen(
            [epmd, "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not port_open(self.epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"private epmd on port {self.epmd_port} did not start")
            time.sleep(0.02)

    def _start_node(self, i: int, timeout: float) -> None:
        n = self.nodes[i]
        pid = n.pid()
        if pid is not None and pid_alive(pid):
            raise ClusterError(f"{n.name} is still running (pid {pid})")
        n.launch()
        self._wait_booted([n], time.monotonic() + timeout)
        self.wait_running(i, timeout=timeout)

    def _wait_booted(self, nodes: Sequence[RabbitNode], deadline: float) -> None:
        """Until each node's AMQP port answers (the listener opens at the end of boot)."""
        waiting = list(nodes)
        while waiting:
            for n in list(waiting):
                pid = n.pid()
                if port_open(n.port) and pid is not None:
                    waiting.remove(n)
                elif pid is not None and not pid_alive(pid):
                    raise ClusterError(f"{n.name} (pid {pid}) died while booting")
            if waiting and time.monotonic() > deadline:
                names = ", ".join(n.name for n in waiting)
                raise ClusterError(f"{names} did not open the AMQP port in time")
            time.sleep(0.1)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``'s VM (and anything else still carrying its name), and wait
        until it is gone and its AMQP port closed."""
        n = self.nodes[i]
        pid = n.pid()
        if pid is None:
            raise ClusterError(f"{n.name} has no pid file")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for leftover in self._processes_of(n):
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while (pid_alive(pid) or port_open(n.port)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            raise ClusterError(f"{n.name} (pid {pid}) survived SIGKILL")

    def _processes_of(self, n: RabbitNode) -> list[int]:
        """Pids of server VMs of this node (``-s rabbit boot``, its name in the
        environment; the CLI tools are left alone): the one of the pid file, and any other
        a half-finished start may have left."""
        found = []
        marker = f"RABBITMQ_NODENAME={n.name}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                server = b"rabbit\0boot" in (entry / "cmdline").read_bytes()
                if server and marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Stop everything this cluster started, whatever state it is in; remove its files."""
        with self._lock:
            for timer in self._heal_timers.values():
                timer.cancel()
            self._heal_timers.clear()
        with contextlib.suppress(Exception):
            self._drop_chain()
        # The data is thrown away: SIGTERM (the VM shuts down in order) to all at once.
        for n in self.nodes:
            pid = n.pid()
            if pid is not None and pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for n in self.nodes:
            pid = n.pid()
            while pid is not None and pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            for leftover in {*self._processes_of(n), *([pid] if pid else [])}:
                if pid_alive(leftover):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leftover, signal.SIGKILL)
        if self._epmd is not None:
            self._epmd.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._epmd.wait(timeout=5)
            self._epmd = None
        if self._own_base and not os.environ.get("CLUSTER_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)

    # --- status ------------------------------------------------------------------------------

    def cluster_status(self, i: int, timeout: float = 30) -> dict[str, Any]:
        """``rabbitmqctl cluster_status --formatter json`` as seen from node ``i``."""
        done = self.ctl(i, "cluster_status", "--formatter", "json", timeout=timeout)
        if done.returncode != 0:
            raise ClusterError(f"cluster_status on {self.node(i)}: {done.stderr.strip()}")
        status: dict[str, Any] = json.loads(done.stdout)
        return status

    def running_nodes(self, i: int) -> list[str]:
        """The nodes node ``i`` sees running (empty when it cannot be asked)."""
        try:
            return list(self.cluster_status(i).get("running_nodes", []))
        except (ClusterError, ValueError):
            return []

    def wait_running(self, i: int, timeout: float = 60, others: bool = True) -> None:
        """Until node ``i`` serves AMQP and sees itself and (``others``) every node that is
        not killed or cut off running in its cluster."""
        n = self.nodes[i]
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            if port_open(n.port):
                seen = self.running_nodes(i)
                want = {n.name}
                if others:
                    want |= {m.name for m in self.nodes if self._expected_up(m)}
                if want <= set(seen):
                    return
            time.sleep(0.3)
        raise ClusterError(
            f"{n.name} not running in the cluster after {timeout}s (sees {seen})\n{n.log_tail()}"
        )

    def _expected_up(self, n: RabbitNode) -> bool:
        pid = n.pid()
        return pid is not None and pid_alive(pid) and n.index not in self._cut

    def wait_clustered(self, timeout: float = 60) -> None:
        """Until node 0 sees every node running in one cluster."""
        deadline = time.monotonic() + timeout
        want = {n.name for n in self.nodes}
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = self.running_nodes(0)
            if want <= set(seen):
                return
            time.sleep(0.3)
        raise ClusterError(f"the nodes did not form one cluster in {timeout}s: {seen}")

    def queue_leader(self, queue: str, vhost: str = "/", via: int | None = None) -> str:
        """The node that holds quorum queue ``queue``'s leader (asked of ``via``, or of the
        first node that serves)."""
        candidates = [via] if via is not None else [n.index for n in self.nodes]
        errors = []
        for i in candidates:
            if not port_open(self.nodes[i].port):
                continue
            done = self.ctl(i, "list_queues", "-p", vhost, "name", "leader", "--formatter", "json")
            if done.returncode != 0:
                errors.append(done.stderr.strip())
                continue
            for row in json.loads(done.stdout or "[]"):
                if row.get("name") == queue:
                    leader = row.get("leader")
                    if isinstance(leader, str) and leader:
                        return leader
                    raise ClusterError(f"queue {queue} has no leader ({row})")
            raise ClusterError(f"no queue {queue} in vhost {vhost}")
        raise ClusterError(f"no node could list queues: {errors}")

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {n.name} (amqp {n.port}, dist {n.dist_port}) {n.log_file}\n{n.log_tail(lines)}"
            for n in self.nodes
        )

    # --- partitions --------------------------------------------------------------------------

    def partition(
        self, i: int, seconds: float | None = None, mode: PartitionMode | None = None
    ) -> PartitionMode:
        """Cut node ``i``'s Erlang distribution traffic to and from the other nodes, not
        killing it (its AMQP port and the CLI still reach it); returns the mode used.

        - ``reject`` (the default when ``iptables`` is there and this is root): every
          packet of the cut is answered with a TCP reset, so both sides notice at their
          next tick (``net_ticktime``/4) and reconnecting is refused at once;
        - ``drop``: the packets are lost silently, as on a broken network: noticed after
          ``net_ticktime`` (10 s by default);
        - ``cookie`` (the default otherwise): node ``i`` gets a wrong cookie for
          each other node and drops its connections to them, so no distribution connection
          between them authenticates until :meth:`heal` gives the right one back.

        With ``seconds``, :meth:`heal` runs by itself that much later (in a thread); the
        call itself returns at once."""
        if mode is None:
            usable = shutil.which("iptables") is not None and os.geteuid() == 0
            mode = "reject" if usable else "cookie"
        if mode != "cookie":
            self._make_chain()
        with self._lock:
            if i in self._cut:
                raise ClusterError(f"{self.node(i)} is already cut off")
            if mode == "cookie":
                self._set_peer_cookies(i, "pbc_partitioned")
            else:
                _iptables_restore(
                    [["-A", self.chain, *rule, *_TARGETS[mode]] for rule in self._rules(i)]
                )
            self._cut[i] = mode
            if mode != "cookie":
                self._drop_links(i)
            if seconds is not None:
                timer = threading.Timer(seconds, self.heal, args=(i,))
                timer.daemon = True
                self._heal_timers[i] = timer
                timer.start()
        return mode

    def heal(self, i: int) -> None:
        """Remove node ``i``'s cut (a no-op when it is not cut off)."""
        with self._lock:
            timer = self._heal_timers.pop(i, None)
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
            mode = self._cut.pop(i, None)
            if mode == "cookie":
                self._set_peer_cookies(i, self.home.joinpath(".erlang.cookie").read_text())
            elif mode is not None:
                rules = [[*rule, *_TARGETS[mode]] for rule in self._rules(i)]
                # All at once, as the cut was made; rule by rule if that fails (a rule
                # already gone), removing any copy.
                if _iptables_restore([["-D", self.chain, *r] for r in rules], check=False):
                    for rule in rules:
                        while _iptables("-D", self.chain, *rule, check=False) == 0:
                            pass

    def _drop_links(self, i: int) -> None:
        """Make every node notice the cut at the same moment: one node *j* of the others
        tells the rest to drop node ``i`` and drops it itself (its links to them are not
        cut, so they all lose ``i`` within microseconds); then node ``i`` drops its peers.

        Without this each node notices on its own, at its next send or tick on the cut
        link: one with traffic in flight at once, one with an idle link up to
        ``net_ticktime``/4 later. The first then asks the second whether it still sees
        ``i``; RabbitMQ takes a yes for a partial partition, and ``pause_minority`` pauses
        the asking node as well ("We will therefore pause until the *entire* cluster
        recovers"): two of three nodes paused, no majority left for the quorum queues."""
        cut = self.node(i)
        others = [n for n in self.nodes if n.index != i and self._expected_up(n)]
        if not others:
            return
        j, *rest = others
        peers = ",".join(f"'{n.name}'" for n in rest)
        done = j.ctl(
            "eval",
            f"[rpc:cast(O, erlang, disconnect_node, ['{cut}']) || O <- [{peers}]],"
            f" erlang:disconnect_node('{cut}'), ok.",
            timeout=30,
        )
        if done.returncode != 0 or done.stdout.strip() != "ok":
            raise ClusterError(f"disconnect {cut} on {j.name}: {done.stdout} {done.stderr}")
        everyone = ",".join(f"'{n.name}'" for n in others)
        # Node i would notice by itself at its next tick (its sends are reset); this is
        # only quicker. Failure does not matter.
        self.nodes[i].ctl(
            "eval", f"[erlang:disconnect_node(N) || N <- [{everyone}]], ok.", timeout=30
        )

    def _set_peer_cookies(self, i: int, cookie: str) -> None:
        peers = ",".join(f"'{n.name}'" for n in self.nodes if n.index != i)
        done = self.ctl(
            i,
            "eval",
            f"[begin erlang:set_cookie(N, '{cookie}'), erlang:disconnect_node(N) end"
            f" || N <- [{peers}]], ok.",
            timeout=30,
        )
        if done.returncode != 0 or done.stdout.strip() != "ok":
            raise ClusterError(f"set_cookie on {self.node(i)}: {done.stdout} {done.stderr}")

    def is_cut(self, i: int) -> bool:
        return i in self._cut

    def wait_paused(self, i: int, timeout: float = 60) -> None:
        """Until node ``i`` stops serving AMQP (``pause_minority`` stopped its app)."""
        n = self.nodes[i]
        deadline = time.monotonic() + timeout
        while port_open(n.port):
            if time.monotonic() > deadline:
                raise ClusterError(f"{n.name} still serves AMQP after {timeout}s\n{n.log_tail()}")
            time.sleep(0.1)

    def _rules(self, i: int) -> list[list[str]]:
        """Match every packet between node ``i`` and the others on their distribution
        links, both ways, whoever opened the connection."""
        me = self.nodes[i]
        rules = [
            # Connections node i opened (from its own source address), both directions.
            ["-p", "tcp", "-s", me.dist_source],
            ["-p", "tcp", "-d", me.dist_source],
        ]
        for other in self.nodes:
            if other is me:
                continue
            # Connections the other node opened to node i's distribution port.
            rules.append(["-p", "tcp", "-s", other.dist_source, "--dport", str(me.dist_port)])
            rules.append(["-p", "tcp", "-d", other.dist_source, "--sport", str(me.dist_port)])
        return rules

    def _make_chain(self) -> None:
        with self._lock:
            if self._chain_made:
                return
            if shutil.which("iptables") is None:
                raise ClusterError(
                    "partition() needs iptables (scripts/services.sh installs it): not found"
                )
            _iptables("-N", self.chain)
            _iptables("-I", "OUTPUT", "-j", self.chain)
            self._chain_made = True

    def _drop_chain(self) -> None:
        with self._lock:
            if not self._chain_made:
                return
            while _iptables("-D", "OUTPUT", "-j", self.chain, check=False) == 0:
                pass
            _iptables("-F", self.chain, check=False)
            _iptables("-X", self.chain, check=False)
            self._chain_made = False
            self._cut.clear()


# The resets REJECT sends pass through the same OUTPUT chain: they must not match, or they
# are rejected (dropped) in turn and the cut is as silent as DROP.
_TARGETS: dict[str, list[str]] = {
    "reject": ["!", "--tcp-flags", "RST", "RST", "-j", "REJECT", "--reject-with", "tcp-reset"],
    "drop": ["-j", "DROP"],
}


def _iptables_restore(commands: Sequence[Sequence[str]], check: bool = True) -> int:
    """Apply ``iptables`` commands (``-A``/``-D`` of the filter table) in one transaction:
    all of them at the same instant, or none. One at a time, the first rules of a cut would
    be in force tens of milliseconds before the last, the links cut one after another."""
    script = "*filter\n" + "".join(" ".join(c) + "\n" for c in commands) + "COMMIT\n"
    done = subprocess.run(
        ["iptables-restore", "-w", "5", "--noflush"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check and done.returncode != 0:
        raise ClusterError(f"iptables-restore {script!r}: {done.stderr.strip()}")
    return done.returncode


def _iptables(*args: str, check: bool = True) -> int:
    done = subprocess.run(
        ["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise ClusterError(f"iptables {' '.join(args)}: {done.stderr.strip()}")
    return done.returncode
