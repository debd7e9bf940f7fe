"""Jobs the benchmark's After workers run (``--jobs benchjobs``, with bench/ on PYTHONPATH).

Why a job of our own rather than the built-in ``noop``: the peers (bench/peers.py)
record ``time.time()`` *inside* the job, so After's job start must be measured at the
same point, in the job, not inferred from a status written before or after it.

``stamp`` runs inline (``isolated=False``): a no-op coroutine, the cheapest path, what
W1-W5 measure. ``plain_stamp`` is what a user writes: a plain function under ``@job()``,
at the default isolation, so the runner runs it in a job process (W6).

Each execution appends one line ``<time.time()> <due> <task id>`` to ``path`` with a
single O_APPEND write, so lines from concurrent jobs never interleave and the file's
line order is the order in which jobs started (what ``in_order_fraction`` needs).
"""

from __future__ import annotations

import os
import time

from after.jobs import TaskContext, job

# A no-op coroutine needs no process of its own: run it inline in the worker, as the
# peers run theirs in a thread of the scheduler's process.
_register = job(isolated=False)


def _record(path: str, due: float, task_id: str) -> None:
    line = f"{time.time():.6f} {due:.6f} {task_id}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@_register
async def stamp(ctx: TaskContext, path: str, due: float = 0.0) -> None:
    """Record when this job started and when it was due; otherwise a no-op."""
    _record(path, due, ctx.id)


@job()
def plain_stamp(ctx: TaskContext, path: str, due: float = 0.0) -> None:
    """``stamp`` as a user's plain function at the default isolation (a job process runs it)."""
    _record(path, due, ctx.id)
