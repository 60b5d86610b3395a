"""The ``postbacks`` entry point. It takes over SIGTERM and SIGINT before anything heavy is
imported, so a stop that arrives while the process is still starting is remembered and
honoured (exit status 0) instead of killing it half-started."""

from __future__ import annotations

import signal
import sys
from types import FrameType

_requested: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _requested.append(signum)


def stop_requested() -> bool:
    """Whether SIGTERM or SIGINT arrived before the command installed its own handlers."""
    return bool(_requested)


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)
    from worker import cli

    return cli.main()


if __name__ == "__main__":  # python -m worker.entry
    # Run the copy of this module that worker.cli imports, not this __main__ one: the stop
    # flag must be the one the commands look at.
    from worker import entry

    sys.exit(entry.main())
