"""What a remote job sees (:class:`Context`), how its outcome is reported, and where a
worker's jobs come from (:func:`load`): the same calling convention as a local job of
After, ``fn(ctx, *arguments, **kwargs)``, sync or async."""

from __future__ import annotations

import importlib
import inspect
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

JobFunc = Callable[..., Any]

#: The protocol's bounds on a call's log lines (after.wireschema.Heartbeat).
MAX_LINES = 1000
MAX_LINE = 10_000


class Permanent(Exception):
    """Raise it (or a subclass) from a job to fail its task for good: no retry, whatever
    the task's retry policy says (the finish report's ``retryable: false``)."""


class Context:
    """What a running job can read and report: ``ctx.progress(done, total)`` and
    ``ctx.log(message)`` reach the task with the next heartbeat (about once a second);
    ``ctx.cancelled`` (a :class:`threading.Event`) is set when the daemon asks to cancel,
    or the job's timeout or the worker's shutdown interrupts it. An async job is also
    cancelled; a plain function runs in a thread and must look at the flag itself."""

    def __init__(self, delivery: Mapping[str, Any]) -> None:
        self.id: str = str(delivery["id"])
        self.task: dict[str, Any] = dict(delivery.get("task") or {})
        self.attempt: int = int(delivery.get("attempt") or 1)
        #: The outcomes of the tasks this one waited for (its ``after``), as they were when it
        #: was claimed: ``{task_id: {"status", "result", "error"}}`` ({} without dependencies).
        self.dependencies: dict[str, Any] = dict(delivery.get("dependencies") or self.task.get("dependencies") or {})
        #: The whole delivery (lease, job, start_at, timeout), for the curious.
        self.delivery: dict[str, Any] = dict(delivery)
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._progress: dict[str, Any] | None = None
        self._lines: list[str] = []

    @property
    def occurrence(self) -> datetime | None:
        """The cron occurrence this run stands for (its nominal time: a backfilled or
        concurrent occurrence's own), as the daemon's ``ctx.occurrence``; None for a one-shot task."""
        value = self.task.get("occurrence") or (self.task.get("date") if self.task.get("cron") else None)
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None

    def progress(self, done: float, total: float | None = None) -> None:
        with self._lock:
            self._progress = {"done": done, "total": total}

    def log(self, message: Any) -> None:
        with self._lock:
            self._lines.append(str(message)[:MAX_LINE])
            del self._lines[:-MAX_LINES]

    @property
    def dirty(self) -> bool:
        return self._progress is not None or bool(self._lines)

    def take(self) -> dict[str, Any]:
        """The progress and log lines reported since the last call, for a heartbeat or finish."""
        with self._lock:
            out: dict[str, Any] = {}
            if self._progress is not None:
                out["progress"] = self._progress
            if self._lines:
                out["log"] = self._lines
            self._progress, self._lines = None, []
        return out


def failure(exc: BaseException, *, reason: str = "exception", message: str | None = None) -> dict[str, Any]:
    """A finish report's ``error`` for an exception: its type, message and traceback;
    ``retryable`` false for :class:`Permanent`."""
    return {
        "reason": reason,
        "type": type(exc).__name__,
        "message": message or str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
        "retryable": not isinstance(exc, Permanent),
    }


def is_async(fn: JobFunc) -> bool:
    """Run on the event loop (cancellable) rather than in a thread."""
    call = type(fn).__dict__.get("__call__")  # a callable object with an async __call__
    return inspect.iscoroutinefunction(fn) or (call is not None and inspect.iscoroutinefunction(call))


def load(modules: Iterable[str]) -> dict[str, JobFunc]:
    """The jobs of ``modules`` (import names), a later module's winning a name.

    A module's jobs are its ``JOBS`` dict (name -> function) if it has one; else every
    public function defined in it (not imported into it), by its own name.
    """
    out: dict[str, JobFunc] = {}
    for name in modules:
        module = importlib.import_module(name)
        table = getattr(module, "JOBS", None)
        if table is not None:
            if not isinstance(table, Mapping) or not all(isinstance(k, str) and callable(v) for k, v in table.items()):
                raise TypeError(f"{name}.JOBS: expected a dict of job name -> function")
            out.update(table)
            continue
        for attr, fn in vars(module).items():
            if not attr.startswith("_") and inspect.isfunction(fn) and fn.__module__ == module.__name__:
                out[attr] = fn
    return out
