"""Run ``after serve`` with one probe: every scheduler tick's duration written to a file.

Why: W3 compares tick durations at two store sizes, and the daemon's
``after_tick_duration_seconds`` histogram has buckets (5, 10, 20, 50 ms...) far too
coarse for a 1.2x ratio. The probe wraps :meth:`after.scheduler.Scheduler.tick` (the
same method the daemon's own metric times) and appends
``<wall time> <seconds> <tasks fired>`` per tick to ``$AFTER_BENCH_TICK_LOG``.
Nothing else changes: the process is the ordinary CLI's ``serve`` command, with the
same configuration, workers and HTTP port. Without the variable it is a plain
``python -m after serve``.

Usage (what bench/after_side.py runs): ``python bench/daemon_probe.py serve``.
"""

from __future__ import annotations

import functools
import os
import time
from datetime import datetime
from typing import Any


def install(path: str) -> None:
    """Wrap ``Scheduler.tick`` so each call appends one line to ``path``."""
    from after.scheduler import Scheduler

    original = Scheduler.tick
    # Line-buffered: a killed daemon still leaves every finished tick on disk.
    out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    @functools.wraps(original)
    async def tick(self: Scheduler, now: datetime) -> dict[str, int]:
        started = time.perf_counter()
        stats: dict[str, Any] = {}
        try:
            stats = await original(self, now)
            return stats
        finally:
            out.write(f"{time.time():.6f} {time.perf_counter() - started:.6f} {int(stats.get('fired', 0))}\n")

    Scheduler.tick = tick  # type: ignore[method-assign]


def main() -> None:
    path = os.environ.get("AFTER_BENCH_TICK_LOG")
    if path:
        install(path)
    from after.cli import main as cli

    cli(prog_name="after")


if __name__ == "__main__":
    main()
