"""The event history (contract section 9): the settings of the stream ``NS.history`` and
RabbitMQ's own topic matching, as pure functions.

``x-max-age`` takes RabbitMQ's form: a positive whole number and one unit of ``Y``
(years), ``M`` (months), ``D`` (days), ``h``, ``m``, ``s`` (``7D``, ``12h``, ``30m``,
``1Y``); the broker refuses anything else (``7d``, ``1W``, ``0D``) with
``invalid_max_age``, so the settings refuse it first.

Topic matching follows RabbitMQ's topic exchange: routing key and binding key are split at
every ``.`` into words (``""`` is no word at all, ``"a."`` is ``a`` and an empty word); in a
binding key ``*`` stands for exactly one word, ``#`` for zero or more; any other word, an
empty one included, matches itself only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pamqp.common import Arguments

DEFAULT_MAX_BYTES = 20_000_000_000
MAX_BYTES_LIMIT = 2**63 - 1  # x-max-length-bytes is a signed 64-bit integer
_MAX_AGE = re.compile(r"^([0-9]+)([YMDhms])$")
# RabbitMQ's own lengths of each unit (rabbit_amqqueue): a month is 30 days, a year 365.
UNIT_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def check_max_age(value: str) -> str:
    """``value`` when RabbitMQ takes it as ``x-max-age``, else ``ValueError`` saying why."""
    match = _MAX_AGE.match(value)
    if match is None:
        raise ValueError(
            f"not RabbitMQ's x-max-age form (a number and one of Y, M, D, h, m, s, "
            f"e.g. 7D, 12h, 30m): {value!r}"
        )
    if int(match.group(1)) == 0:
        raise ValueError(f"must be more than zero: {value!r}")
    return value


def max_age_seconds(value: str) -> int:
    """The seconds of an ``x-max-age`` value as RabbitMQ counts them."""
    match = _MAX_AGE.match(check_max_age(value))
    assert match is not None
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True, slots=True)
class History:
    """The retention of ``NS.history``: ``HISTORY_MAX_AGE`` and ``HISTORY_MAX_BYTES``."""

    max_age: str
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def arguments(self) -> Arguments:
        return {
            "x-queue-type": "stream",
            "x-max-age": self.max_age,
            "x-max-length-bytes": self.max_bytes,
        }

    @property
    def max_age_seconds(self) -> int:
        return max_age_seconds(self.max_age)


def words(key: str) -> tuple[str, ...]:
    """A routing or binding key split as RabbitMQ splits it: ``""`` has no word."""
    return tuple(key.split(".")) if key else ()


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> tuple[str, ...]:
    return words(pattern)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic exchange routes ``routing_key`` to a queue bound with ``pattern``."""
    return _match(_compiled(pattern), words(routing_key))


def _match(pattern: Sequence[str], key: Sequence[str]) -> bool:
    # Positions (i in pattern, j in key) still alive, walked word by word: linear in
    # len(pattern) * len(key), whatever the number of '#'.
    alive = {0}
    alive = _close(pattern, alive)
    for word in key:
        step: set[int] = set()
        for i in alive:
            if i == len(pattern):
                continue
            part = pattern[i]
            if part == "#":
                step.add(i)  # '#' takes this word and stays
            elif part == "*" or part == word:
                step.add(i + 1)
        if not step:
            return False
        alive = _close(pattern, step)
    return len(pattern) in alive


def _close(pattern: Sequence[str], alive: set[int]) -> set[int]:
    """Add the positions reached by letting each '#' take zero words."""
    out = set(alive)
    todo = list(alive)
    while todo:
        i = todo.pop()
        if i < len(pattern) and pattern[i] == "#" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return out


class TopicFilter:
    """Any of several binding keys, with each routing key's answer remembered (event
    routing keys are few: origin, family, status and code)."""

    CACHE = 65536

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(patterns))
        self._seen: dict[str, bool] = {}

    def __call__(self, routing_key: str) -> bool:
        known = self._seen.get(routing_key)
        if known is not None:
            return known
        answer = any(topic_matches(pattern, routing_key) for pattern in self.patterns)
        if len(self._seen) >= self.CACHE:
            self._seen.clear()
        self._seen[routing_key] = answer
        return answer
