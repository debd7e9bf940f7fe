"""The job of W7's remote worker (``python -m after.client --jobs remotejobs``, with
bench/ on PYTHONPATH): ``stamp``, as bench/benchjobs.py's, on ``after.client``'s context,
recording its start in the same line format (one O_APPEND write per run)."""

from __future__ import annotations

from benchjobs import _record

from after.client import Context


async def stamp(ctx: Context, path: str, due: float = 0.0) -> None:
    """Record when this job started and when it was due; otherwise a no-op."""
    _record(path, due, ctx.id)


JOBS = {"stamp": stamp}
