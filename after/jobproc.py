"""Runs one job in a process of its own: ``python -m after.jobproc`` (started by the runner).

Why: a job is user code. In its own process, a job that hangs past its timeout is
killed (with its whole process group), and one that calls ``os._exit``, segfaults or
leaks costs only its own task — never its worker's other tasks, never the daemon.
The built-in jobs, which are written to be cancellable (``noop``, ``sleep``, ``http``;
``shell`` starts its own process anyway), and jobs registered with
``@job(isolated=False)`` run inline in the worker instead, which is cheaper.

Protocol: the runner writes one JSON object on stdin (``modules``, ``config_jobs``,
``job``, ``task``, ``settings``, ``log_limit``). The child answers on the pipe whose
file descriptor is in ``AFTER_JOBPROC_FD``,
one JSON object per line: ``{"progress": ...}``, ``{"log": ...}`` as the job reports
them, then ``{"result": ...}`` or ``{"error": {...}, "result": ...}``. The job's own
stdout and stderr go to the worker's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from typing import Any

from after import jobs
from after.jobs import JobFailed, TaskContext

#: The pipe to the runner; its number is passed in ``AFTER_JOBPROC_FD``.
PROTOCOL_FD = 3


class ReportingContext(TaskContext):
    """A TaskContext that forwards progress and log lines to the parent at once."""

    out: Any = None

    def progress(self, done: float, total: float | None = None) -> None:
        super().progress(done, total)
        self._send({"progress": self.progress_value})

    def log(self, message: str) -> None:
        super().log(message)
        self._send({"log": str(message)})

    def _send(self, msg: dict[str, Any]) -> None:
        if self.out is not None:
            self.out.write(json.dumps(msg) + "\n")
            self.out.flush()


def main() -> None:
    out = os.fdopen(int(os.environ.get("AFTER_JOBPROC_FD", PROTOCOL_FD)), "w", buffering=1)
    spec = json.loads(sys.stdin.read())
    try:
        registry = jobs.load(spec.get("modules") or [], spec.get("config_jobs") or {})
        job = spec["job"]
        func = registry[job["name"]]
        ctx = ReportingContext(task=spec["task"], worker=spec.get("worker", ""), settings=spec.get("settings") or {}, log_limit=int(spec.get("log_limit", 200)))
        ctx.out = out
        args = list(job.get("arguments") or [])
        kwargs = dict(job.get("kwargs") or {})
        result = asyncio.run(func(ctx, *args, **kwargs)) if jobs.is_async(func) else func(ctx, *args, **kwargs)
        reply: dict[str, Any] = {"result": result}
    except JobFailed as exc:
        reply = {"error": _error("failed", exc), "result": exc.result}
    except BaseException as exc:  # everything the job raises is the task's error
        reply = {"error": _error("exception", exc)}
    try:
        line = json.dumps(reply)
    except (TypeError, ValueError) as exc:
        line = json.dumps({"error": _error("exception", exc, "the job's result is not JSON-serialisable")})
    out.write(line + "\n")
    out.flush()


def _internal(filename: str) -> bool:
    return filename == __file__ or f"{os.sep}asyncio{os.sep}" in filename


def user_traceback(exc: BaseException) -> str:
    """The traceback without this module's and asyncio's frames: the user's job is what matters."""
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _internal(f.filename)])
    return "".join(te.format())[-8000:]


def _error(reason: str, exc: BaseException, message: str | None = None) -> dict[str, Any]:
    return {
        "reason": reason,
        "type": type(exc).__name__,
        "message": message or str(exc) or type(exc).__name__,
        "traceback": user_traceback(exc),
    }


if __name__ == "__main__":
    main()
