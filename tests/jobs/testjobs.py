"""Jobs used by the end-to-end tests (loaded by workers with ``--jobs testjobs``).

Executions are counted by the jobs themselves, in files (one line per run, O_APPEND),
never inferred from statuses: that is what "ran exactly once" means.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from after.jobs import TaskContext, job


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@job()
async def count(ctx: TaskContext, path: str, sleep: float = 0.0) -> str:
    """Record this execution (task id, time) in ``path``."""
    _append(path, f"{ctx.id} {time.time():.6f} {os.getpid()}")
    if sleep:
        await asyncio.sleep(sleep)
    return ctx.id


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
