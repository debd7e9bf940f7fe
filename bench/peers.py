"""Peer side of the benchmark: the same workloads run on APScheduler 3.11 and huey.

Why this exists: After's figures only mean something next to what an existing
tool does on the same machine with the same workload.  This module runs three
workloads on two peers and returns one result dict per run, shaped like
``{"system": ..., "workload": "W1", "metrics": {...}, "notes": "..."}``.

Workloads (``n`` in brackets is the ``--quick`` size):

* **W1 precision** -- 1,000 one-shot no-op tasks all due at the same whole
  second, picked 3-5 s after scheduling is expected to be complete.  Lag =
  ``time.time()`` recorded inside the job minus the due time; p50/p99/max ms.
* **W2 throughput** -- 20,000 [2,000] no-op tasks, all already due, stored
  while nothing executes, then execution starts.  Tasks per second from the
  first to the last completion timestamp recorded inside the job.
* **W4 catch-up** -- 10,000 [1,000] tasks whose due times are spread evenly
  over the 60 s [10 s] before storing starts, stored while the scheduler is
  down, in a seeded random order (see :func:`w4_due_times`).  A fresh
  scheduler instance is then started on the same store.  Drain time = start to
  last execution; in-order fraction as defined in :func:`in_order_fraction`.

Peer configuration (chosen to be each tool's documented "durable, threads"
setup, with late jobs allowed to run):

* APScheduler 3.11: ``BackgroundScheduler`` + ``SQLAlchemyJobStore`` on a
  SQLite file + ``ThreadPoolExecutor(max_workers=20)``; job defaults
  ``misfire_grace_time=None`` (late jobs still run), ``coalesce=False``.
* huey: ``SqliteHuey`` with its consumer run **in-process** through the
  Consumer API (``huey.create_consumer(...).start()`` / ``.stop()``), thread
  workers (8), periodic tasks off, other consumer options at their defaults
  (scheduler interval 1 s, worker polling 0.1 s backing off x1.15 to 10 s).
  In-process rather than ``huey_consumer`` in a subprocess because executions
  are counted inside the job, in this process's memory.

Executions are counted inside the job (a list appended under a lock), never
from the library's own status.  Each run uses a fresh temporary directory.

Bounds: every phase has a soft deadline; a run that hits one stops and
reports what it measured, with a note.  The CLI additionally runs each
workload in a child process killed after a hard timeout, so a wedged library
cannot hang the suite.  This module imports APScheduler and huey lazily: the
helpers (e.g. :func:`in_order_fraction`) import from the runtime venv too.

Usage::

    .venv-bench/bin/python bench/peers.py --system apscheduler --workload w1 \
        [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

try:
    from bench.stats import (
        TableRow,
        format_table,
        in_order_fraction,
        percentile,
        summarize_ms,
    )
except ModuleNotFoundError:  # run as a script: python bench/peers.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.stats import (
        TableRow,
        format_table,
        in_order_fraction,
        percentile,
        summarize_ms,
    )

__all__ = [
    "SYSTEMS",
    "WORKLOADS",
    "Budget",
    "budget_for",
    "headline",
    "in_order_fraction",
    "percentile",
    "run_isolated",
    "run_workload",
    "w4_due_times",
]

SYSTEMS = ("apscheduler", "huey")
WORKLOADS = ("W1", "W2", "W4")

#: Thread pool size for APScheduler, as fixed by the benchmark brief.
APS_MAX_WORKERS = 20
#: huey consumer worker threads ("8 or so": four per core on the 2-core box).
HUEY_WORKERS = 8
#: Seed of the W4 insertion order, shared with After's side of the benchmark.
W4_SEED = 20240601
#: W1 plans its due second this far after scheduling is expected to end
#: (then rounds up to a whole second): 3.5-4.5 s, inside the brief's 3-5 s.
W1_PLANNED_SLACK_S = 3.5
#: A note is added when scheduling actually ended closer than this to the due
#: second, since the scheduler may then have been busy storing at due time.
W1_MIN_SLACK_S = 3.0


@dataclass(frozen=True)
class Budget:
    """Size and time bounds of one workload run.

    ``schedule_timeout_s`` bounds storing the tasks, ``run_timeout_s`` bounds
    waiting for executions (from the due second for W1, from the start of
    execution otherwise).  ``hard_timeout_s`` is the child-process kill bound
    used by :func:`run_isolated`; it leaves room for imports, calibration and
    shutdown on top of the two soft bounds.
    """

    n: int
    span_s: float
    schedule_timeout_s: float
    run_timeout_s: float

    @property
    def hard_timeout_s(self) -> float:
        return self.schedule_timeout_s + self.run_timeout_s + 45.0


_BUDGETS: dict[tuple[str, bool], Budget] = {
    ("W1", False): Budget(n=1_000, span_s=0.0, schedule_timeout_s=60, run_timeout_s=60),
    ("W1", True): Budget(n=1_000, span_s=0.0, schedule_timeout_s=30, run_timeout_s=30),
    ("W2", False): Budget(n=20_000, span_s=0.0, schedule_timeout_s=60, run_timeout_s=75),
    ("W2", True): Budget(n=2_000, span_s=0.0, schedule_timeout_s=30, run_timeout_s=30),
    ("W4", False): Budget(n=10_000, span_s=60.0, schedule_timeout_s=60, run_timeout_s=75),
    ("W4", True): Budget(n=1_000, span_s=10.0, schedule_timeout_s=30, run_timeout_s=30),
}


def budget_for(workload: str, quick: bool = False) -> Budget:
    """Return the size and bounds of ``workload`` (W1, W2 or W4)."""
    return _BUDGETS[(_norm_workload(workload), quick)]


def w4_due_times(n: int, span_s: float, end_ts: float, seed: int = W4_SEED) -> list[float]:
    """Due times of the W4 backlog, in the order they are to be stored.

    The due times are spread evenly over ``[end_ts - span_s, end_ts)`` (so
    they "fell due over the last ``span_s`` seconds"), then shuffled with a
    seeded RNG.  Why shuffle: a real backlog is created in an order unrelated
    to its due times (a job scheduled yesterday for 10:00:30 sits next to one
    scheduled a minute ago for 10:00:05).  Storing in due order would let a
    plain FIFO queue look perfectly ordered and the in-order figure would
    measure nothing.  After's side should use this function with the same seed.
    """
    step = span_s / n if n else 0.0
    dues = [end_ts - span_s + i * step for i in range(n)]
    random.Random(seed).shuffle(dues)
    return dues


# --------------------------------------------------------------------------
# In-job execution log


class ExecutionLog:
    """Thread-safe record of job executions, written by the jobs themselves.

    Each entry is ``(time.time() at job start, due time)``.  The clock is read
    while holding the lock so that list order, timestamps and "execution
    order" (used by :func:`in_order_fraction`) all agree.  The job is a no-op,
    so its start time is also its completion time (W2 counts completions).
    """

    def __init__(self, expected: int) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[float, float]] = []
        self._expected = expected
        self._done = threading.Event()

    def record(self, due: float) -> None:
        with self._lock:
            self._entries.append((time.time(), due))
            if len(self._entries) >= self._expected:
                self._done.set()

    def set_expected(self, expected: int) -> None:
        """Lower the target when fewer tasks than planned could be stored."""
        with self._lock:
            self._expected = expected
            if len(self._entries) >= expected:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        """Wait until the expected count is reached; False on timeout."""
        return self._done.wait(max(0.0, timeout))

    def snapshot(self) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._entries)


_LOG: ExecutionLog | None = None


def bench_job(due: float) -> None:
    """The benchmarked task: a no-op that records when it ran.

    Module-level (not a closure) because APScheduler's SQL job store pickles
    a textual reference ``module:function`` to the callable, and huey
    registers tasks by module and name.
    """
    log = _LOG
    if log is not None:
        log.record(due)


# --------------------------------------------------------------------------
# Backends: one small adapter per peer, so each workload is written once.


class _Backend(Protocol):
    def store_only(self) -> None:
        """Open the persistent store without executing anything."""

    def execute(self) -> None:
        """Start (or resume) executing due tasks."""

    def reopen(self) -> None:
        """Stop everything; the next execute() starts a fresh instance."""

    def add(self, due: float, eta: bool = True) -> None:
        """Store one task due at ``due`` (epoch seconds)."""

    def close(self) -> None:
        """Stop executing and release the store, within a bounded time."""

    @staticmethod
    def describe() -> str: ...


class _ApsBackend:
    """APScheduler 3.11 BackgroundScheduler on a SQLite SQLAlchemyJobStore."""

    def __init__(self, workdir: Path, filename: str = "apscheduler.sqlite") -> None:
        from apscheduler.triggers.date import DateTrigger

        self._url = f"sqlite:///{workdir / filename}"
        self._trigger_cls = DateTrigger
        self._sched: Any = None

    def _new(self) -> Any:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        return BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=self._url)},
            executors={"default": ThreadPoolExecutor(max_workers=APS_MAX_WORKERS)},
            job_defaults={"coalesce": False, "misfire_grace_time": None},
            timezone=UTC,
        )

    def store_only(self) -> None:
        # A paused scheduler writes add_job() straight to the job store but
        # does not process jobs; a stopped one would keep them in memory.
        self._sched = self._new()
        self._sched.start(paused=True)

    def execute(self) -> None:
        from apscheduler.schedulers.base import STATE_STOPPED

        if self._sched is None:
            self._sched = self._new()
        if self._sched.state == STATE_STOPPED:
            self._sched.start()
        else:
            self._sched.resume()

    def reopen(self) -> None:
        self.close()
        self._sched = None

    def add(self, due: float, eta: bool = True) -> None:
        run_date = datetime.fromtimestamp(due, tz=UTC)
        self._sched.add_job(bench_job, trigger=self._trigger_cls(run_date=run_date), args=(due,))

    def close(self) -> None:
        sched, self._sched = self._sched, None
        if sched is None or not sched.running:
            return
        # A run cut short by its bound may leave thousands of queued jobs:
        # drop them instead of letting them run after the measurement.
        logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
        sched.shutdown(wait=False)
        for executor in getattr(sched, "_executors", {}).values():
            pool = getattr(executor, "_pool", None)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def describe() -> str:
        return f"APScheduler BackgroundScheduler, SQLAlchemyJobStore(sqlite), ThreadPoolExecutor({APS_MAX_WORKERS}), misfire_grace_time=None, coalesce=False"


class _HueyBackend:
    """SqliteHuey with an in-process thread consumer (Consumer API)."""

    def __init__(self, workdir: Path, filename: str = "huey.sqlite") -> None:
        self._path = workdir / filename
        self._huey: Any = None
        self._task: Any = None
        self._consumer: Any = None

    def _open(self) -> None:
        from huey import SqliteHuey

        self._huey = SqliteHuey(name="bench", filename=str(self._path))
        self._task = self._huey.task()(bench_job)

    def store_only(self) -> None:
        self._open()

    def execute(self) -> None:
        if self._huey is None:
            self._open()
        consumer = self._huey.create_consumer(
            workers=HUEY_WORKERS,
            worker_type="thread",
            periodic=False,
            shutdown_timeout=10,
        )
        # Consumer.start() installs SIGINT/SIGTERM/SIGHUP handlers that only
        # Consumer.run()'s loop reads; the bench drives start/stop itself, and
        # signal.signal() fails outside the main thread.
        consumer._set_signal_handlers = lambda: None
        consumer.start()
        self._consumer = consumer

    def reopen(self) -> None:
        self.close()
        self._huey = None
        self._task = None

    def add(self, due: float, eta: bool = True) -> None:
        if eta:
            self._task.schedule(args=(due,), eta=datetime.fromtimestamp(due, tz=UTC))
        else:
            self._task(due)

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.stop(graceful=True)  # bounded by shutdown_timeout
        if self._huey is not None:
            self._huey.storage.close()

    @staticmethod
    def describe() -> str:
        return (
            f"huey SqliteHuey, in-process Consumer API, {HUEY_WORKERS} thread "
            f"workers, periodic=False, scheduler_interval=1 s, polling 0.1 s "
            f"x1.15 backoff to 10 s"
        )


def _make_backend(system: str, workdir: Path) -> _Backend:
    if system == "apscheduler":
        return _ApsBackend(workdir)
    if system == "huey":
        return _HueyBackend(workdir)
    raise ValueError(f"unknown system {system!r}; expected one of {SYSTEMS}")


# --------------------------------------------------------------------------
# Workloads


@dataclass
class _Ctx:
    system: str
    budget: Budget
    workdir: Path
    notes: list[str]


def _add_bounded(add: Callable[[float], None], dues: Sequence[float], deadline: float) -> int:
    """Store tasks until done or ``deadline`` (monotonic); return how many."""
    for i, due in enumerate(dues):
        if i % 64 == 0 and time.monotonic() > deadline:
            return i
        add(due)
    return len(dues)


def _calibrate_add_seconds(system: str, workdir: Path, k: int = 50) -> float:
    """Seconds per stored task on a live throwaway instance of ``system``.

    W1 needs its due second fixed before the first task is stored, yet 3-5 s
    after the last one is; storing costs differ by orders of magnitude
    between peers, so it is measured rather than guessed.  The throwaway
    instance has its own file and its tasks are due in an hour, so it never
    touches the measured run.
    """
    backend = _make_backend(system, workdir / "calibration")
    (workdir / "calibration").mkdir(exist_ok=True)
    try:
        backend.store_only()
        backend.execute()
        far = time.time() + 3600.0
        start = time.perf_counter()
        for _ in range(k):
            backend.add(far)
        return (time.perf_counter() - start) / k
    finally:
        backend.close()


def _w1(ctx: _Ctx, log: ExecutionLog) -> dict[str, Any]:
    n = ctx.budget.n
    per_add = _calibrate_add_seconds(ctx.system, ctx.workdir)
    backend = _make_backend(ctx.system, ctx.workdir)
    try:
        backend.store_only()
        backend.execute()  # W1 schedules into a live scheduler
        est = per_add * n * 1.3
        due = float(math.ceil(time.time() + est + W1_PLANNED_SLACK_S))
        t0 = time.monotonic()
        stored = _add_bounded(backend.add, [due] * n, t0 + ctx.budget.schedule_timeout_s)
        schedule_s = time.monotonic() - t0
        slack_s = due - time.time()
        if stored < n:
            ctx.notes.append(f"scheduling bound hit: stored {stored} of {n}")
            log.set_expected(stored)
        if slack_s < W1_MIN_SLACK_S:
            ctx.notes.append(f"scheduling ended only {slack_s:.2f} s before the due second")
        finished = log.wait(due + ctx.budget.run_timeout_s - time.time())
        if not finished:
            ctx.notes.append(f"run bound hit: {ctx.budget.run_timeout_s:g} s after the due second")
    finally:
        backend.close()
    entries = log.snapshot()
    lags = [t - d for t, d in entries]
    metrics: dict[str, Any] = {
        **summarize_ms(lags),
        "min_ms": round(min(lags) * 1000.0, 2) if lags else float("nan"),
        "n": n,
        "stored": stored,
        "executed": len(entries),
        "schedule_s": round(schedule_s, 3),
        "slack_s": round(slack_s, 3),
    }
    return metrics


def _w2(ctx: _Ctx, log: ExecutionLog) -> dict[str, Any]:
    n = ctx.budget.n
    backend = _make_backend(ctx.system, ctx.workdir)
    try:
        backend.store_only()
        t0 = time.monotonic()
        # Due "now" at storing time: already due when execution starts.
        # huey gets a plain enqueue (no eta), its natural "run now" path.
        stored = _add_bounded(
            lambda _d: backend.add(time.time(), eta=False),
            range(n),
            t0 + ctx.budget.schedule_timeout_s,
        )
        schedule_s = time.monotonic() - t0
        if stored < n:
            ctx.notes.append(f"storing bound hit: stored {stored} of {n}")
            log.set_expected(stored)
        start = time.time()
        backend.execute()
        if not log.wait(ctx.budget.run_timeout_s):
            ctx.notes.append(f"run bound hit after {ctx.budget.run_timeout_s:g} s; throughput is over the executions seen")
    finally:
        backend.close()
    times = sorted(t for t, _ in log.snapshot())
    executed = len(times)
    span = times[-1] - times[0] if executed >= 2 else 0.0
    return {
        "tasks_per_s": round((executed - 1) / span, 1) if span > 0 else float("nan"),
        "end_to_end_tasks_per_s": (round(executed / (times[-1] - start), 1) if executed else float("nan")),
        "first_completion_s": round(times[0] - start, 3) if executed else None,
        "last_completion_s": round(times[-1] - start, 3) if executed else None,
        "n": n,
        "stored": stored,
        "executed": executed,
        "store_s": round(schedule_s, 3),
    }


def _w4(ctx: _Ctx, log: ExecutionLog) -> dict[str, Any]:
    n, span = ctx.budget.n, ctx.budget.span_s
    backend = _make_backend(ctx.system, ctx.workdir)
    try:
        backend.store_only()  # "down": stored, nothing executes
        dues = w4_due_times(n, span, end_ts=time.time())
        t0 = time.monotonic()
        stored = _add_bounded(backend.add, dues, t0 + ctx.budget.schedule_timeout_s)
        store_s = time.monotonic() - t0
        if stored < n:
            ctx.notes.append(f"storing bound hit: stored {stored} of {n}")
            log.set_expected(stored)
        backend.reopen()  # the down scheduler is replaced by a fresh instance
        start = time.time()
        backend.execute()
        if not log.wait(ctx.budget.run_timeout_s):
            ctx.notes.append(f"run bound hit after {ctx.budget.run_timeout_s:g} s")
    finally:
        backend.close()
    entries = log.snapshot()
    executed = len(entries)
    lags = [t - d for t, d in entries]
    return {
        "drain_s": round(entries[-1][0] - start, 3) if executed else float("nan"),
        "in_order_fraction": round(in_order_fraction([d for _, d in entries]), 4),
        "first_execution_s": round(entries[0][0] - start, 3) if executed else None,
        "lag_at_start_max_s": round(max(lags), 3) if lags else None,
        "n": n,
        "span_s": span,
        "stored": stored,
        "executed": executed,
        "store_s": round(store_s, 3),
        "insert_order": f"shuffled(seed={W4_SEED})",
    }


_RUNNERS: dict[str, Callable[[_Ctx, ExecutionLog], dict[str, Any]]] = {
    "W1": _w1,
    "W2": _w2,
    "W4": _w4,
}


def _norm_workload(workload: str) -> str:
    w = workload.upper()
    if w not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")
    return w


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("APScheduler", "SQLAlchemy", "huey"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run_workload(
    system: str,
    workload: str,
    quick: bool = False,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run one workload on one peer in this process and return its result.

    Soft-bounded only: phases stop at their deadlines, but a library call that
    blocks forever would block here too, and a run cut short may leave a
    daemon thread draining.  Use :func:`run_isolated` (what the CLI does) for
    a hard bound and a clean process per run.
    """
    global _LOG
    w = _norm_workload(workload)
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; expected one of {SYSTEMS}")
    budget = budget_for(w, quick)
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix=f"after-bench-{system}-{w}-")
        workdir = Path(own_tmp.name)
    ctx = _Ctx(system=system, budget=budget, workdir=workdir, notes=[])
    log = ExecutionLog(budget.n)
    _LOG = log
    wall0 = time.monotonic()
    try:
        metrics = _RUNNERS[w](ctx, log)
    finally:
        _LOG = None
        if own_tmp is not None:
            own_tmp.cleanup()
    if metrics.get("executed", 0) < metrics.get("stored", budget.n):
        ctx.notes.append(f"only {metrics.get('executed')} of {metrics.get('stored')} stored tasks executed within the bound")
    return {
        "system": system,
        "workload": w,
        "quick": quick,
        "metrics": metrics,
        "notes": "; ".join(ctx.notes) or "ok",
        "config": (_ApsBackend if system == "apscheduler" else _HueyBackend).describe(),
        "budget": asdict(budget),
        "versions": _versions(),
        "cpus": os.cpu_count(),
        "elapsed_s": round(time.monotonic() - wall0, 3),
    }


def _failed(system: str, workload: str, quick: bool, note: str) -> dict[str, Any]:
    return {
        "system": system,
        "workload": _norm_workload(workload),
        "quick": quick,
        "metrics": {},
        "notes": note,
    }


def run_isolated(
    system: str,
    workload: str,
    quick: bool = False,
    python: str | None = None,
    tmp_parent: str | None = None,
) -> dict[str, Any]:
    """Run one workload in a child process, killed at the hard timeout.

    Why a child process: a fresh interpreter per run (no threads, caches or
    open databases left over by the previous run) and a bound that holds even
    if a library call never returns.  ``python`` defaults to the current
    interpreter, which must have the extras from bench/requirements.txt.
    A killed or failed child yields a result with empty metrics and a note.
    """
    w = _norm_workload(workload)
    hard = budget_for(w, quick).hard_timeout_s
    workdir = Path(tempfile.mkdtemp(prefix=f"after-bench-{system}-{w}-", dir=tmp_parent))
    out = workdir / "result.json"
    run_dir = workdir / "run"
    run_dir.mkdir()
    cmd = [
        python or sys.executable,
        str(Path(__file__).resolve()),
        "--system",
        system,
        "--workload",
        w,
        "--in-process",
        "--workdir",
        str(run_dir),
        "--json",
        str(out),
    ] + (["--quick"] if quick else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=hard, check=False)
        if proc.returncode == 0 and out.exists():
            result: dict[str, Any] = json.loads(out.read_text())
            return result
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return _failed(system, w, quick, f"child exited {proc.returncode}: " + " | ".join(tail))
    except subprocess.TimeoutExpired:
        return _failed(system, w, quick, f"killed after hard timeout {hard:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def headline(result: dict[str, Any]) -> str:
    """One-line figure of a result, for tables (W1 lag, W2 rate, W4 drain)."""
    m = result.get("metrics") or {}
    if not m:
        return "no result"
    w = result.get("workload")
    done = f"{m.get('executed')}/{m.get('n')}"
    if w == "W1":
        return f"p50 {m['p50_ms']:.0f} / p99 {m['p99_ms']:.0f} / max {m['max_ms']:.0f} ms ({done})"
    if w == "W2":
        return f"{m['tasks_per_s']:.0f} tasks/s ({done})"
    if w == "W4":
        return f"drain {m['drain_s']:.1f} s, in-order {m['in_order_fraction']:.3f} ({done})"
    return json.dumps(m)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: run the chosen peer(s) x workload(s), print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", choices=[*SYSTEMS, "all"], required=True)
    parser.add_argument("--workload", type=str.upper, choices=[*WORKLOADS, "ALL"], required=True)
    parser.add_argument("--quick", action="store_true", help="smaller W2/W4 sizes")
    parser.add_argument(
        "--json",
        metavar="OUT",
        help="write the result dict (a list of dicts when several runs) to OUT",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run here instead of in a hard-bounded child process",
    )
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    systems = SYSTEMS if args.system == "all" else (args.system,)
    workloads = WORKLOADS if args.workload == "ALL" else (args.workload,)
    results: list[dict[str, Any]] = []
    for system in systems:
        for workload in workloads:
            if args.in_process:
                wd = Path(args.workdir) if args.workdir else None
                res = run_workload(system, workload, args.quick, workdir=wd)
            else:
                res = run_isolated(system, workload, args.quick)
            results.append(res)
            if not args.in_process or not args.workdir:
                print(json.dumps(res, indent=2), flush=True)
    if args.json:
        payload: Any = results[0] if len(results) == 1 else results
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if not args.workdir:
        rows: list[TableRow] = [
            TableRow(
                system=r["system"],
                workload=r["workload"] + (" (quick)" if r.get("quick") else ""),
                figure=headline(r),
                target="-",
                met=None,
            )
            for r in results
        ]
        print(format_table(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
