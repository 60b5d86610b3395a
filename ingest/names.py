"""RabbitMQ names, all derived from the namespace ``NS``."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A subscriber's NAME becomes part of a queue name: keep it to safe characters.
SUBSCRIBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")

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
