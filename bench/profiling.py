"""Summaries of the py-spy profiles ``bench/run.py --profile DIR`` records.

Why: "where does the time go" must be answerable from the run's own JSON, without a
flame-graph viewer. py-spy's ``raw`` format is one collapsed stack per line,
``process P:"cmd";frame;frame;... count``, frames written ``func (file:line)``; idle
samples are left out by py-spy, so counts are on-CPU time (250 samples/s).

For each process (the daemon, each worker) this gives the samples, the functions with
the most *self* samples (where the CPU is spent: JSON, aiohttp, the event loop) and
the After functions with the most *inclusive* samples (which product code paths lead
there).

Usage: ``python bench/profiling.py DIR`` prints the summary of every profile in DIR.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_PROC = re.compile(r'^process \d+:"(?P<cmd>[^"]*)"$')
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
RATE_HZ = 250


def _role(cmd: str) -> str:
    if "after.worker" in cmd:
        return "worker"
    if "daemon_probe" in cmd or "after serve" in cmd:
        return "daemon"
    return cmd[:60]


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    """Per process role: samples, seconds, top self functions, top inclusive After functions."""
    samples: Counter[str] = Counter()
    self_time: dict[str, Counter[str]] = {}
    incl: dict[str, Counter[str]] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        role = "?"
        while frames and (m := _PROC.match(frames[0])):
            role = _role(m.group("cmd"))
            frames = frames[1:]
        if not frames:
            continue
        samples[role] += count
        self_time.setdefault(role, Counter())[_name(frames[-1])] += count
        seen = {_name(f) for f in frames if "after/" in f and "site-packages" not in f}
        bucket = incl.setdefault(role, Counter())
        for name in seen:
            bucket[name] += count
    out: dict[str, Any] = {}
    for role, n in samples.most_common():
        out[role] = {
            "samples": n,
            "cpu_s": round(n / RATE_HZ, 2),
            "top_self": [[name, c, round(100 * c / n, 1)] for name, c in self_time[role].most_common(top)],
            "top_after_inclusive": [[name, c, round(100 * c / n, 1)] for name, c in incl[role].most_common(top)],
        }
    return out


def summarize_dir(directory: Path) -> dict[str, Any]:
    """Every ``*.txt`` profile under ``directory``, by path without ``.txt`` (``embedded/W1-1``).

    ``bench/run.py`` writes one subdirectory per server, so the server is in the key.
    """
    root = Path(directory)
    return {str(p.relative_to(root).with_suffix("")): summarize(p) for p in sorted(root.rglob("*.txt"))}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: profiling.py DIR", file=sys.stderr)
        return 2
    print(json.dumps(summarize_dir(Path(args[0])), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
