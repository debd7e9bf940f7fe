"""Jobs used by the end-to-end tests (loaded by workers with ``--jobs testjobs``).

Executions are counted by the jobs themselves, in files (one line per run, O_APPEND),
never inferred from statuses: that is what "ran exactly once" means.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from runfile import append as _append

from after.jobs import TaskContext, job


@job(isolated=False)
async def count(ctx: TaskContext, path: str, sleep: float = 0.0) -> str:
    """Record this execution (task id, time, worker pid) in ``path``.

    Inline (not isolated): the exactly-once tests run thousands of these, and the pid
    recorded must be the worker's.
    """
    _append(path, f"{ctx.id} {time.time():.6f} {os.getpid()}")
    if sleep:
        await asyncio.sleep(sleep)
    return ctx.id


@job()
def hang_sync(ctx: TaskContext, path: str | None = None, seconds: float = 3600) -> None:
    """A plain function that never returns in time: only killing its process stops it."""
    if path:
        _append(path, f"{ctx.id} {time.time():.6f} {os.getpid()}")
    time.sleep(seconds)


@job()
def segfault(ctx: TaskContext) -> None:
    import ctypes

    ctypes.string_at(0)


@job(isolated=False)
def chatter(ctx: TaskContext, lines: int = 100, width: int = 80) -> int:
    """Print to the worker's log (inline, so the output is the worker's own)."""
    for i in range(lines):
        print(f"chatter {ctx.id} line {i:06d} " + "x" * width, flush=True)
    return lines


@job()
def count_sync(ctx: TaskContext, path: str) -> str:
    _append(path, f"{ctx.id} {time.time():.6f} {os.getpid()}")
    return ctx.id


@job()
async def fail(ctx: TaskContext, path: str | None = None, message: str = "boom") -> None:
    if path:
        _append(path, f"{ctx.id} {time.time():.6f}")
    raise RuntimeError(message)


@job()
async def hang(ctx: TaskContext, path: str | None = None, seconds: float = 3600) -> None:
    if path:
        _append(path, f"{ctx.id} {time.time():.6f}")
    await asyncio.sleep(seconds)


@job()
async def crash(ctx: TaskContext, path: str | None = None) -> None:
    """Kill the worker process outright, as a segfault would."""
    if path:
        _append(path, f"{ctx.id} {time.time():.6f}")
    os._exit(17)


@job()
async def report(ctx: TaskContext, steps: int = 3) -> dict[str, Any]:
    for i in range(steps):
        ctx.log(f"step {i + 1} of {steps}")
        ctx.progress(i + 1, steps)
        await asyncio.sleep(0.6)
    return {"steps": steps}


@job()
async def echo(ctx: TaskContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@job(isolated=False)
async def crash_worker(ctx: TaskContext) -> None:
    """Inline, so it takes its whole worker process down (to test supervision)."""
    os._exit(23)
