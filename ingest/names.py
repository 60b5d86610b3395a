"""RabbitMQ names, all derived from the namespace ``NS``."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A subscriber's NAME becomes part of a queue name: keep it to safe characters.
SUBSCRIBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")

# AMQP's short strings (queue names, binding keys) hold at most 255 bytes.
SHORTSTR = 255

# Quorum-queue arguments shared by every declaration: a mismatch fails declaration.
DELIVERY_LIMIT = 10


@dataclass(frozen=True, slots=True)
class Names:
    namespace: str = "postbacks"

    @property
    def intake(self) -> str:
        return f"{self.namespace}.intake"

    @property
    def events(self) -> str:
        return f"{self.namespace}.events"

    @property
    def unrouted(self) -> str:
        return f"{self.namespace}.unrouted"

    @property
    def quarantine(self) -> str:
        return f"{self.namespace}.quarantine"

    def subscriber(self, name: str) -> str:
        return f"{self.namespace}.sub.{name}"

    @property
    def history(self) -> str:
        """The stream of every event (only with ``HISTORY_MAX_AGE`` set)."""
        return f"{self.namespace}.history"

    @property
    def timers(self) -> str:
        """Receipt timers that are due (dead-lettered from :meth:`waiting`): workers consume it."""
        return f"{self.namespace}.timers"

    def waiting(self, seconds: int) -> str:
        """Receipt timers of ``DLR_TIMEOUT`` = ``seconds``, each waiting out its TTL."""
        return f"{self.namespace}.waiting-{seconds}s"


def check_subscription(names: Names, name: str, patterns: list[str]) -> None:
    """Raise ``ValueError`` (one line) unless ``postbacks subscribe NAME PATTERN...`` can
    declare its queue and every binding: checked before anything is declared, so a bad
    pattern leaves no queue behind."""
    if not SUBSCRIBER_NAME.match(name):
        raise ValueError(f"subscriber name must be letters, digits, '_', '-', '.': {name!r}")
    queue = names.subscriber(name)
    if len(queue.encode()) > SHORTSTR:
        raise ValueError(f"queue name {queue!r} is over {SHORTSTR} bytes: use a shorter NAME")
    for pattern in patterns:
        if not pattern:
            raise ValueError("PATTERN is empty: use '#' for every event")
        size = len(pattern.encode("utf-8", "surrogateescape"))
        if size > SHORTSTR:
            raise ValueError(
                f"PATTERN {pattern[:40]!r}... is {size} bytes: at most {SHORTSTR} (UTF-8)"
            )
