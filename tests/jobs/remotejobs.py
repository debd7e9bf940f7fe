"""Jobs of the remote worker tests, run by ``python -m after.client --jobs remotejobs``.

Only ``after.client`` is imported: a remote worker host has none of the daemon. Each job
records its runs in a file (one line per run: task id, time, pid; O_APPEND), so a test
counts executions instead of inferring them. Jobs that wait, wait for a gate file the
test creates, so that the test decides when they end.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from runfile import append as _append

from after.client import Context, Permanent


def _record(ctx: Context, path: str) -> None:
    _append(path, f"{ctx.id} {time.time():.6f} {os.getpid()}")


async def record(ctx: Context, path: str) -> str:
    _record(ctx, path)
    return ctx.id


def add(ctx: Context, a: float, b: float) -> float:
    return a + b


async def gated(ctx: Context, path: str, gate: str) -> str:
    """Record the start, report progress and a log line, end once ``gate`` exists."""
    _record(ctx, path)
    ctx.progress(1, 2)
    ctx.log("waiting for the gate")
    while not Path(gate).exists():
        await asyncio.sleep(0.05)
    ctx.progress(2, 2)
    return "through"


async def hang(ctx: Context, path: str) -> None:
    """Run until cancelled; a cancel is recorded in ``path``.cancel."""
    _record(ctx, path)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _append(path + ".cancel", f"{ctx.id} {ctx.cancelled.is_set()}")
        raise


def hang_sync(ctx: Context, path: str) -> None:
    """A plain function that runs until it sees ``ctx.cancelled``."""
    _record(ctx, path)
    while not ctx.cancelled.wait(0.05):
        pass
    _append(path + ".cancel", f"{ctx.id} True")


def fail(ctx: Context, path: str, message: str = "boom") -> None:
    _record(ctx, path)
    raise RuntimeError(message)


def fail_for_good(ctx: Context, path: str) -> None:
    _record(ctx, path)
    raise Permanent("the report does not exist")


def not_json(ctx: Context) -> Any:
    return {"a set": {1, 2}}


JOBS = {f.__name__: f for f in (record, add, gated, hang, hang_sync, fail, fail_for_good, not_json)}
