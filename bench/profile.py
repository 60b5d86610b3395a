"""``python -m bench.profile FILE``: where a py-spy profile (raw, collapsed stacks) went.

The worker phase writes one with ``--profile DIR`` (``py-spy record -f raw`` around each
``postbacks work``). Samples whose innermost frame is the event loop waiting are dropped;
the rest are shown by function, own time first, then inclusive.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def _name(frame: str) -> str:
    """``func (path/file.py:line)`` -> ``func (file.py)``."""
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else func


def summarize(path: Path, own: int = 25, inclusive: int = 40) -> str:
    mine: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_name(f) for f in stack.split(";")]
        if frames[-1].startswith(("run_forever", "select", "poll")):
            continue  # the loop waiting for I/O
        n = int(count)
        busy += n
        mine[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{busy} busy samples", "own time:"]
    lines += [f"{100 * n / busy:5.1f}%  {f}" for f, n in mine.most_common(own)]
    lines.append("inclusive:")
    lines += [f"{100 * n / busy:5.1f}%  {f}" for f, n in total.most_common(inclusive)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("file", type=Path)
    ap.add_argument("--own", type=int, default=25)
    ap.add_argument("--inclusive", type=int, default=40)
    args = ap.parse_args(argv)
    print(summarize(args.file, args.own, args.inclusive))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
