"""Jobs of the dependency tests (``--jobs depjobs``): each run is recorded in a file with
its start and end times, and returns what it saw of its dependencies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runfile import append as _append

from after.jobs import TaskContext, job


async def _step(ctx: TaskContext, path: str, value: Any, sleep: float) -> dict[str, Any]:
    _append(path, f"{ctx.id} start {time.time():.6f}")
    if sleep:
        await asyncio.sleep(sleep)
    _append(path, f"{ctx.id} end {time.time():.6f}")
    dependencies = ctx.dependencies
    return {"value": value, "seen": {k: v.get("result") for k, v in dependencies.items()}, "statuses": {k: v.get("status") for k, v in dependencies.items()}}


@job(isolated=False)
async def step(ctx: TaskContext, path: str, value: Any = None, sleep: float = 0.0) -> dict[str, Any]:
    """Inline: record the run, return ``value`` and the dependencies' results."""
    return await _step(ctx, path, value, sleep)


@job()
async def step_isolated(ctx: TaskContext, path: str, value: Any = None, sleep: float = 0.0) -> dict[str, Any]:
    """The same in a job process (``ctx.dependencies`` crosses the process boundary)."""
    return await _step(ctx, path, value, sleep)


@job(isolated=False)
async def boom(ctx: TaskContext) -> None:
    raise RuntimeError("dependency boom")
