"""Small statistics and reporting helpers shared by every benchmark side.

Both our own benchmark runner and the peer runner (``bench/peers.py``) must
compute figures the same way, otherwise a comparison between After and its
peers would measure the helpers rather than the schedulers.  That is why these
definitions live in one dependency-free module (standard library only): it can
be imported from the project's runtime venv, where the benchmark-only extras
(APScheduler, huey) are not installed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from typing import IO, TypedDict

__all__ = [
    "TableRow",
    "format_table",
    "in_order_fraction",
    "percentile",
    "print_table",
    "summarize_ms",
]


def percentile(values: Iterable[float], p: float) -> float:
    """Return the ``p``-th percentile of ``values`` by the nearest-rank method.

    Definition: sort the n values ascending; the result is the value at
    1-based rank ``ceil(p / 100 * n)`` (rank 1 when ``p == 0``).  So p50 of
    ``[1, 2, 3, 4]`` is 2 and p100 is the maximum.

    Why nearest-rank rather than linear interpolation: it always returns a
    value that was actually observed (a real job's lag, not a blend of two),
    it needs no assumption about the distribution between samples, and p99 of
    1,000 samples is simply the 990th smallest, which is easy to check by hand.

    Raises ``ValueError`` for an empty input or ``p`` outside [0, 100], since
    a silent 0 would read as a perfect score in a benchmark table.
    """
    data = sorted(values)
    if not data:
        raise ValueError("percentile() of an empty sequence")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile p must be within [0, 100], got {p!r}")
    rank = max(1, math.ceil(p / 100.0 * len(data)))
    return data[rank - 1]


def in_order_fraction(due_times_in_execution_order: Sequence[float]) -> float:
    """Fraction of consecutive executed pairs that ran in due order.

    Definition (used by every side of the benchmark): let ``d[0..n-1]`` be the
    due times of the executed jobs, listed in the order the jobs *started
    executing* (the order in which the jobs appended themselves to the shared
    execution log).  A pair ``(d[i-1], d[i])`` for ``1 <= i < n`` is in order
    when ``d[i] >= d[i-1]`` (equal due times count as in order, since no order
    between them is required).  The result is::

        #{ i in 1..n-1 : d[i] >= d[i-1] } / (n - 1)

    and 1.0 when ``n < 2`` (nothing can be out of order).

    Why consecutive pairs instead of, say, Kendall's tau: it is O(n), cheap to
    explain, and it rewards a scheduler that drains a backlog oldest-first
    (1.0) while a FIFO over a randomly ordered backlog scores about 0.5.  A
    few swaps caused by a thread pool starting jobs concurrently cost only a
    few pairs, which matches how a reader would judge "mostly in order".
    """
    n = len(due_times_in_execution_order)
    if n < 2:
        return 1.0
    ordered = sum(1 for i in range(1, n) if due_times_in_execution_order[i] >= due_times_in_execution_order[i - 1])
    return ordered / (n - 1)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Return p50, p99 and max of a list of durations given in seconds, in ms.

    Used for lag figures; rounding to 0.01 ms keeps JSON results readable
    without hiding anything a wall clock can resolve.  Empty input yields NaN
    figures rather than raising, so a run that executed nothing still reports.
    """
    if not seconds:
        nan = float("nan")
        return {"p50_ms": nan, "p99_ms": nan, "max_ms": nan}
    return {
        "p50_ms": round(percentile(seconds, 50) * 1000.0, 2),
        "p99_ms": round(percentile(seconds, 99) * 1000.0, 2),
        "max_ms": round(max(seconds) * 1000.0, 2),
    }


class TableRow(TypedDict, total=False):
    """One line of the comparison table.

    ``figure`` is the measured value already rendered as the reader should see
    it (e.g. ``"p99 412 ms"``) so that each workload can choose its own unit;
    ``met`` is ``None`` when a row has no target (peers are measured for
    context, not judged).
    """

    system: str
    workload: str
    figure: str
    target: str
    met: bool | None
    profile: str  # a missed target's profile (``--profile``), where the time went


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Iterable[TableRow]) -> str:
    """Render rows as a plain-text table: system x workload, figure, target, met.

    Plain text (no third-party table library) so the runner's output can be
    pasted into an issue, a commit message or a CI log as it is.  Rows are
    kept in the given order, which lets the caller group by system or by
    workload as it prefers.  A missing target or ``met`` shows as ``-``; an
    unmet target shows as ``NO`` in capitals so it stands out. A ``profile`` column is
    added only when some row names one.
    """
    rows = list(rows)
    columns = ["system", "workload", "figure", "target", "met"]
    if any(row.get("profile") for row in rows):
        columns.append("profile")
    header = tuple(columns)
    lines = [tuple("" if col == "profile" and not row.get(col) else _cell(row.get(col)) for col in columns) for row in rows]
    widths = [max(len(header[col]), *(len(line[col]) for line in lines)) if lines else len(header[col]) for col in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [render(header), render(["-" * w for w in widths])]
    out.extend(render(line) for line in lines)
    return "\n".join(out) + "\n"


def print_table(rows: Iterable[TableRow], file: IO[str] | None = None) -> None:
    """Print :func:`format_table` output (to stdout unless ``file`` is given)."""
    (file or sys.stdout).write(format_table(rows))
