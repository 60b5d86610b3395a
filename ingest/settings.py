"""Settings: built once at start-up from the environment and flags, then passed down.

Every variable of the contract has a flag beside it; the flag wins. A bad value raises
:class:`BadSetting` naming the variable; the CLI turns that into one line and exit 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from ingest.history import DEFAULT_MAX_BYTES, MAX_BYTES_LIMIT, History, check_max_age
from ingest.names import NAMESPACE, Names

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadSetting(ValueError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Option:
    variable: str
    flag: str
    default: str | None
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("AMQP_URL", "--amqp-url", "amqp://guest:guest@127.0.0.1:5672/", "the RabbitMQ broker"),
    Option("REDIS_URL", "--redis-url", None, "shared dedup store (unset: in-process store)"),
    Option("POSTBACKS_NAMESPACE", "--namespace", "postbacks", "prefix of every exchange/queue"),
    Option("INGEST_HOST", "--host", "0.0.0.0", "where the receiver listens"),
    Option("INGEST_PORT", "--port", "8080", "where the receiver listens"),
    Option("INGEST_MAX_BODY", "--max-body", "65536", "largest accepted body, in bytes"),
    Option("INGEST_BASIC_AUTH", "--basic-auth", None, "user:password required on postbacks"),
    Option("INGEST_ALLOW_FROM", "--allow-from", None, "comma-separated CIDRs allowed to post"),
    Option("INGEST_CONFIRM_TIMEOUT", "--confirm-timeout", "5", "seconds to wait for a confirm"),
    Option("INGEST_SPOOL_DIR", "--spool-dir", None, "local spool while the broker is away"),
    Option("DEDUP_TTL", "--dedup-ttl", "604800", "seconds an event id (and a lifecycle) is kept"),
    Option(
        "DLR_TIMEOUT",
        "--dlr-timeout",
        "259200",
        "seconds without a final status before a timed_out event (0: off; below DEDUP_TTL)",
    ),
    Option("WORKER_METRICS_PORT", "--metrics-port", "9101", "worker /metrics and /healthz"),
    Option(
        "HISTORY_MAX_AGE",
        "--history-max-age",
        None,
        "keep every event in the stream NS.history this long (x-max-age: 7D, 12h); unset: none",
    ),
    Option(
        "HISTORY_MAX_BYTES",
        "--history-max-bytes",
        str(DEFAULT_MAX_BYTES),
        "the most NS.history keeps, in bytes (oldest segments go first)",
    ),
    Option("LOG_LEVEL", "--log-level", "INFO", "DEBUG, INFO, WARNING or ERROR"),
)
BY_VARIABLE = {opt.variable: opt for opt in OPTIONS}
SECRETS = frozenset({"INGEST_BASIC_AUTH"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class Settings:
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str | None = None
    namespace: str = "postbacks"
    host: str = "0.0.0.0"
    port: int = 8080
    max_body: int = 65536
    basic_auth: tuple[str, str] | None = None
    allow_from: tuple[IPNetwork, ...] = ()
    confirm_timeout: float = 5.0
    spool_dir: Path | None = None
    dedup_ttl: int = 604800
    dlr_timeout: int = 259200
    metrics_port: int = 9101
    log_level: str = "INFO"
    history_max_age: str | None = None
    history_max_bytes: int = DEFAULT_MAX_BYTES
    names: Names = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", Names(self.namespace))

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        """The broker's nodes: ``AMQP_URL`` split at its commas."""
        return split_urls(self.amqp_url)

    @property
    def history(self) -> History | None:
        """The retention of ``NS.history``; ``None`` without ``HISTORY_MAX_AGE``: no history."""
        if self.history_max_age is None:
            return None
        return History(self.history_max_age, self.history_max_bytes)

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None
    ) -> Settings:
        """Settings from ``environ`` (default ``os.environ``) overridden by ``flags``
        (keyed by variable name; ``None`` means the flag was not given)."""
        env = os.environ if environ is None else environ
        given = flags or {}

        def raw(variable: str) -> str | None:
            flag = given.get(variable)
            if flag is not None:
                return flag
            value = env.get(variable)
            if value is not None and value.strip() != "":
                return value.strip()
            return BY_VARIABLE[variable].default

        def required(variable: str) -> str:
            value = raw(variable)
            assert value is not None, variable
            return value

        spool = raw("INGEST_SPOOL_DIR")
        dedup_ttl = _integer("DEDUP_TTL", required("DEDUP_TTL"), 1, 10 * 365 * 86400)
        return cls(
            amqp_url=_amqp_urls(required("AMQP_URL")),
            redis_url=_optional(raw("REDIS_URL"), _redis_url),
            namespace=_namespace(required("POSTBACKS_NAMESPACE")),
            host=_host(required("INGEST_HOST")),
            port=_port("INGEST_PORT", required("INGEST_PORT")),
            max_body=_integer("INGEST_MAX_BODY", required("INGEST_MAX_BODY"), 1, 1 << 30),
            basic_auth=_optional(raw("INGEST_BASIC_AUTH"), _basic_auth),
            allow_from=_cidrs(raw("INGEST_ALLOW_FROM")),
            confirm_timeout=_seconds("INGEST_CONFIRM_TIMEOUT", required("INGEST_CONFIRM_TIMEOUT")),
            spool_dir=Path(spool) if spool else None,
            dedup_ttl=dedup_ttl,
            dlr_timeout=_dlr_timeout(required("DLR_TIMEOUT"), dedup_ttl),
            metrics_port=_port("WORKER_METRICS_PORT", required("WORKER_METRICS_PORT")),
            log_level=_log_level(required("LOG_LEVEL")),
            history_max_age=_optional(raw("HISTORY_MAX_AGE"), _history_max_age),
            history_max_bytes=_integer(
                "HISTORY_MAX_BYTES", required("HISTORY_MAX_BYTES"), 1, MAX_BYTES_LIMIT
            ),
        )

    def effective(self) -> dict[str, str | None]:
        """The configuration as variables, secrets masked: for the start-up log line."""
        values: dict[str, str | None] = {
            "AMQP_URL": ",".join(mask_url(url) for url in self.amqp_urls),
            "REDIS_URL": mask_url(self.redis_url) if self.redis_url else None,
            "POSTBACKS_NAMESPACE": self.namespace,
            "INGEST_HOST": self.host,
            "INGEST_PORT": str(self.port),
            "INGEST_MAX_BODY": str(self.max_body),
            "INGEST_BASIC_AUTH": f"{self.basic_auth[0]}:***" if self.basic_auth else None,
            "INGEST_ALLOW_FROM": ",".join(str(n) for n in self.allow_from) or None,
            "INGEST_CONFIRM_TIMEOUT": f"{self.confirm_timeout:g}",
            "INGEST_SPOOL_DIR": str(self.spool_dir) if self.spool_dir else None,
            "DEDUP_TTL": str(self.dedup_ttl),
            "DLR_TIMEOUT": str(self.dlr_timeout),
            "WORKER_METRICS_PORT": str(self.metrics_port),
            "LOG_LEVEL": self.log_level,
            "HISTORY_MAX_AGE": self.history_max_age,
            "HISTORY_MAX_BYTES": str(self.history_max_bytes),
        }
        return values


_REDIS = ("redis", "rediss", "unix")
T = TypeVar("T")


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _optional(value: str | None, convert: Callable[[str], T]) -> T | None:
    return None if value is None else convert(value)


def split_urls(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _amqp_urls(value: str) -> str:
    """One broker URL or a cluster's nodes, comma-separated; each one checked."""
    urls = split_urls(value)
    if not urls:
        raise BadSetting("AMQP_URL", "no URL given")
    for url in urls:
        _url("AMQP_URL", url, ("amqp", "amqps"))
    return ",".join(urls)


def _url(variable: str, value: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError as exc:
        raise BadSetting(variable, f"not a valid URL ({exc})") from None
    if parts.scheme not in schemes:
        raise BadSetting(
            variable, f"URL scheme must be one of {', '.join(schemes)}: {mask_url(value)!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise BadSetting(variable, f"URL has no host: {mask_url(value)!r}")
    del port
    return value


_REDIS_DB_PATH = re.compile(r"^/?([0-9]{1,10})?$")
_MAX_REDIS_DB = 2**31 - 1


def _redis_url(value: str) -> str:
    """A URL redis-py accepts as it is meant: its own parser finds bad options
    (``?socket_timeout=abc``); the path it reads a database from quietly (``/abc`` would
    be database 0) must be empty, ``/`` or ``/N``. A database the server does not have is
    reported by the worker's readiness once it connects."""
    from redis.connection import parse_url  # here: only a configured REDIS_URL needs it

    _url("REDIS_URL", value, _REDIS)
    try:
        parsed: dict[str, object] = parse_url(value)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as exc:
        raise BadSetting(
            "REDIS_URL", f"not a valid Redis URL ({exc}): {mask_url(value)!r}"
        ) from None
    parts = urlsplit(value)
    if parts.scheme == "unix":
        if not parsed.get("path"):
            raise BadSetting("REDIS_URL", f"unix:// needs a socket path: {mask_url(value)!r}")
    else:
        match = _REDIS_DB_PATH.match(parts.path)
        if match is None or (match.group(1) and int(match.group(1)) > _MAX_REDIS_DB):
            raise BadSetting(
                "REDIS_URL",
                f"the path must be empty or /N, N a database number: {mask_url(value)!r}",
            )
    return value


_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _host(value: str) -> str:
    """An IP address or a host name (labels of letters, digits and inner hyphens)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.removesuffix(".").split(".")
        if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
            raise BadSetting("INGEST_HOST", f"not an IP address or host name: {value!r}") from None
        if all(label.isdigit() for label in labels):
            raise BadSetting("INGEST_HOST", f"not a valid IP address: {value!r}") from None
    return value


def check_spool_dir(directory: Path) -> None:
    """Make sure the spool directory exists and is writable (start-up of a receiver)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"cannot create {str(directory)!r}: {exc.strerror}"
        raise BadSetting("INGEST_SPOOL_DIR", problem) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BadSetting("INGEST_SPOOL_DIR", f"{str(directory)!r} is not writable")


def _integer(variable: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadSetting(variable, f"not an integer: {value!r}") from None
    if not low <= number <= high:
        raise BadSetting(variable, f"{number} is out of range {low}..{high}")
    return number


def _dlr_timeout(value: str, dedup_ttl: int) -> int:
    """Seconds until a receipt timeout; 0 turns timeouts off. A lifecycle is kept
    ``DEDUP_TTL`` seconds: its timer must fire before it is forgotten."""
    seconds = _integer("DLR_TIMEOUT", value, 0, 10 * 365 * 86400)
    if seconds and seconds >= dedup_ttl:
        raise BadSetting("DLR_TIMEOUT", f"{seconds} must be below DEDUP_TTL ({dedup_ttl})")
    return seconds


def _port(variable: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadSetting(variable, f"not a port number: {value!r}") from None
    if not 0 <= number <= 65535:
        raise BadSetting(variable, f"port {number} is out of range 0..65535")
    return number


def _seconds(variable: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise BadSetting(variable, f"not a number of seconds: {value!r}") from None
    if not 0 < seconds <= 300:
        raise BadSetting(variable, f"{value} seconds is out of range (0, 300]")
    return seconds


def _namespace(value: str) -> str:
    if not NAMESPACE.match(value):
        raise BadSetting("POSTBACKS_NAMESPACE", f"use letters, digits, '_', '-', '.': {value!r}")
    return value


def _basic_auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise BadSetting("INGEST_BASIC_AUTH", "expected user:password")
    return user, password


def _cidrs(value: str | None) -> tuple[IPNetwork, ...]:
    if value is None:
        return ()
    networks = []
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError as exc:
            raise BadSetting("INGEST_ALLOW_FROM", f"bad CIDR {part.strip()!r}: {exc}") from None
    if not networks:
        raise BadSetting("INGEST_ALLOW_FROM", "no CIDR given")
    return tuple(networks)


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise BadSetting("LOG_LEVEL", f"one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return level


def _history_max_age(value: str) -> str:
    try:
        return check_max_age(value)
    except ValueError as exc:
        raise BadSetting("HISTORY_MAX_AGE", str(exc)) from None
