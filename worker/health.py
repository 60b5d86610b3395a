"""Readiness: what each dependency of a worker reports, in one place.

The broker link, the stores' callers and the depth watcher report into one
:class:`Health`; ``/readyz`` and ``postbacks_dependency_up`` read it. A report that changes
a dependency's state is logged once (``dependency down`` with the error, ``dependency
back``), however often the same state is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import Gauge

log = logging.getLogger("postbacks.worker")


class Health:
    def __init__(self, gauge: Gauge, watched: Mapping[str, str]) -> None:
        """``watched``: each dependency with its problem until it first reports."""
        self._gauge = gauge
        self._problems: dict[str, str | None] = {}
        for dependency, problem in watched.items():
            self.report(dependency, problem, quiet=True)

    @property
    def problems(self) -> Mapping[str, str | None]:
        """Each dependency's problem, ``None`` when it is fine."""
        return self._problems

    @property
    def ready(self) -> bool:
        return all(problem is None for problem in self._problems.values())

    def watches(self, dependency: str) -> bool:
        return dependency in self._problems

    def down(self, dependency: str) -> bool:
        return self._problems.get(dependency) is not None

    def report(self, dependency: str, problem: str | None, *, quiet: bool = False) -> None:
        """``problem`` (``None``: fine) is now the state of ``dependency``."""
        if not quiet and self._problems.get(dependency) != problem:
            if problem is None:
                log.info("dependency back", extra={"dependency": dependency})
            else:
                log.warning("dependency down", extra={"dependency": dependency, "error": problem})
        self._problems[dependency] = problem
        self._gauge.labels(dependency=dependency).set(0 if problem else 1)
