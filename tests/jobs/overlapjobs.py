"""Jobs for the overlap and backfill tests (tests/test_overlap_e2e.py)."""

from __future__ import annotations

import os
import time

from after.jobs import TaskContext, job


@job()
def note(ctx: TaskContext, path: str, seconds: float = 0.0) -> str | None:
    """Append ``<occurrence> <task id> <pid> start`` to ``path``, sleep, then the same line with
    ``end``: the file shows which occurrence ran when, and which ran at the same time."""
    at = ctx.occurrence.isoformat() if ctx.occurrence else None
    with open(path, "a") as f:
        f.write(f"{at} {ctx.id} {os.getpid()} start\n")
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"{at} {ctx.id} {os.getpid()} end\n")
    return at
