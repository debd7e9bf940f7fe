"""Jobs for the job pool's tests (tests/test_jobpool.py): plain ``@job()`` functions, so
they run isolated, in the warm job processes."""

from __future__ import annotations

import os
import time
from typing import Any

from after.jobs import TaskContext, job

#: What ``leak`` keeps: it lives as long as its process.
_kept: list[bytes] = []


@job()
def pid(ctx: TaskContext) -> int:
    """The job process's pid: the same across runs while the process is kept warm."""
    return os.getpid()


@job()
def leak(ctx: TaskContext, mb: int) -> int:
    """Keep ``mb`` MB for good (a leak): the run is fine, the process is too big after it."""
    _kept.append(os.urandom(1024) * (mb * 1024))
    return os.getpid()


@job()
def grow(ctx: TaskContext, mb: int, path: str, hold: float = 60.0) -> None:
    """Write this process's pid to ``path``, then take ``mb`` MB and hold it."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    block = os.urandom(1024) * (mb * 1024)
    time.sleep(hold)
    del block


@job()
def exit_now(ctx: TaskContext, code: int = 17) -> None:
    os._exit(code)


@job()
def nap(ctx: TaskContext, seconds: float, path: str | None = None) -> int:
    if path:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@job()
def chat(ctx: TaskContext, steps: int = 3) -> dict[str, Any]:
    for i in range(steps):
        ctx.log(f"step {i + 1} of {steps}")
        ctx.progress(i + 1, steps)
    return {"steps": steps}


@job()
async def pid_async(ctx: TaskContext) -> int:
    return os.getpid()


@job()
def meet(ctx: TaskContext, folder: str, count: int, timeout: float = 120.0) -> int:
    """Wait until ``count`` runs of this job are in ``folder`` at once (each leaves a file):
    they can only all return if they run at the same time, in processes of their own."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, str(os.getpid())), "w"):
        pass
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {count} met")
        time.sleep(0.01)
    return os.getpid()
