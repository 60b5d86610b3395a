"""A private RabbitMQ node and a private Redis server for the fault suite.

Other people run tests and benchmarks against the shared broker (``rabbit@localhost``,
port 5672) and Redis (6379) at the same time, so the fault suite never touches those: it
starts its own node and server on free ports, under a temporary directory, and stops and
starts *those*. The node has its own Erlang cookie (``HOME`` is the temporary directory),
its own configuration file (the system one binds 5672), no plugins, and a node name that
carries this process id, so two runs side by side do not collide either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (SIGKILLed, not yet reaped by anyone) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def tool(name: str) -> str:
    """The real RabbitMQ script: the ``/usr/sbin`` wrappers switch to the ``rabbitmq`` user,
    whose home holds the shared node's cookie."""
    path = RABBIT_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


class PrivateRabbit:
    """``rabbitmq-server -detached`` on free ports; ``stop_app``/``start_app`` on demand."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.node = f"pbfaults{os.getpid()}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.port:
            self.dist_port = free_port()
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.base),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_PID_FILE=str(self.base / "rabbit.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(self.base / "plugins-expand"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool("rabbitmqctl"), "-q", "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
        )

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text("loopback_users = none\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        subprocess.run(
            [tool("rabbitmq-server"), "-detached"],
            env=self.env(),
            check=True,
            timeout=60,
            cwd=self.base,
            capture_output=True,
        )
        done = self.ctl("wait", str(self.base / "rabbit.pid"), "--timeout", "90", timeout=120)
        pid_file = self.base / "rabbit.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError):
                self.pid = int(pid_file.read_text().strip())
        if done.returncode != 0 or not port_open(self.port):
            self.stop()
            raise RuntimeError(
                f"private RabbitMQ node {self.node} did not start: {done.stdout} {done.stderr}"
                f"\n{self.log_tail()}"
            )

    def add_user(self, user: str, password: str) -> str:
        """A user with full rights on ``/``; returns its AMQP URL."""
        self.ctl("delete_user", user)
        for args in (
            ("add_user", user, password),
            ("set_permissions", "-p", "/", user, ".*", ".*", ".*"),
        ):
            done = self.ctl(*args)
            if done.returncode != 0:
                raise RuntimeError(f"rabbitmqctl {args[0]} failed: {done.stderr}")
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"

    def stop_app(self) -> None:
        done = self.ctl("stop_app")
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl stop_app failed: {done.stderr}")

    def start_app(self) -> None:
        done = self.ctl("start_app")
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl start_app failed: {done.stderr}\n{self.log_tail()}")
        deadline = time.monotonic() + 30
        while not port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """Halt the node; kill it when it does not go."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ctl("stop", timeout=60)
        if self.pid is not None:
            deadline = time.monotonic() + 20
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        log = self.base / "log" / f"{self.node}.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


class PrivateRedis:
    """``redis-server`` on a free port, nothing persisted; shut down and started on demand."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.base / "redis.pid"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pid_file),
                "--dir",
                str(self.base),
                "--logfile",
                str(self.base / "redis.log"),
            ],
            check=True,
            timeout=30,
            capture_output=True,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"private Redis on port {self.port} did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ping"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip() == "PONG"

    def add_user(self, user: str, password: str) -> str:
        """An ACL user allowed everything (gone when the server restarts); returns its URL."""
        subprocess.run(
            [
                *("redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ACL", "SETUSER"),
                *(user, "reset", "on", f">{password}", "~*", "&*", "+@all"),
            ],
            capture_output=True,
            timeout=10,
            check=True,
        )
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Shut the server down (nothing saved) and wait until its port is closed."""
        pid = self._pid()
        subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "shutdown", "nosave"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        deadline = time.monotonic() + 10
        while (port_open(self.port) or (pid and pid_alive(pid))) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
