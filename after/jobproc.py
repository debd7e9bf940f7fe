"""A warm job process: ``python -m after.jobproc``, started by a worker's :mod:`after.jobpool`.

Why: a job is user code. In a process of its own, a job that hangs past its timeout is
killed (with its whole process group), and one that calls ``os._exit``, segfaults or
leaks costs only its own process — never its worker's other tasks, never the daemon.
The process is long-lived (like a Celery prefork child): it imports the worker's job
modules once and then runs many jobs, one at a time, so a run costs a message each way
instead of a new interpreter. The pool replaces a process that died, was killed, ran
``workers.max_tasks_per_process`` jobs or grew past ``workers.max_memory_mb``.
The built-in jobs, which are written to be cancellable (``noop``, ``sleep``, ``http``;
``shell`` starts its own process anyway), and jobs registered with
``@job(isolated=False)`` run inline in the worker instead.

Protocol, one JSON object per line each way:

- requests arrive on the pipe that was this process's stdin (moved to a private file
  descriptor at once; the job's stdin is ``/dev/null``, so a job reading stdin cannot eat
  the protocol): first ``{"modules": [...], "config_jobs": {...}}``, then one
  ``{"job", "task", "worker", "settings", "log_limit"}`` per run;
- answers go to the pipe whose file descriptor is in ``AFTER_JOBPROC_FD``:
  ``{"ready": true}`` once the modules are imported, then per run ``{"started": true}``
  as it takes the job (a process that dies before that never ran it), ``{"progress": ...}``
  and ``{"log": ...}`` as the job reports them and last ``{"result": ...}`` or
  ``{"error": {...}, "result": ...}``.

The job's own stdout and stderr go to the worker's log. End of the request pipe: the
process exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Mapping
from typing import IO, Any

from after import jobs
from after.jobs import JobFailed, JobFunc, TaskContext

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


def run_one(registry: Mapping[str, JobFunc] | BaseException, spec: Mapping[str, Any], out: IO[str]) -> dict[str, Any]:
    """Run the job of one request; the final answer (``result`` or ``error``).

    ``registry`` is the exception that loading the job modules raised, if it failed: every
    run then fails with it (the task's error names the module), and the process stays up.
    """
    try:
        if isinstance(registry, BaseException):
            raise registry
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
    return reply


def _encode(reply: dict[str, Any]) -> str:
    try:
        return json.dumps(reply)
    except (TypeError, ValueError) as exc:
        return json.dumps({"error": _error("exception", exc, "the job's result is not JSON-serialisable")})


def _private_stdin() -> IO[bytes]:
    """The request pipe, moved off fd 0 (which becomes /dev/null for the jobs)."""
    requests = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 lives as long as the process
    return requests


def main() -> None:
    out = os.fdopen(int(os.environ.get("AFTER_JOBPROC_FD", PROTOCOL_FD)), "w", buffering=1)
    requests = _private_stdin()
    init = json.loads(requests.readline() or b"{}")
    registry: Mapping[str, JobFunc] | BaseException
    try:
        registry = jobs.load(init.get("modules") or [], init.get("config_jobs") or {})
    except BaseException as exc:  # reported with each run, where the task shows it
        registry = exc
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    while line := requests.readline():
        spec = json.loads(line)
        out.write('{"started": true}\n')  # from here on, a death is the job's (before: not)
        out.flush()
        reply = run_one(registry, spec, out)
        out.write(_encode(reply) + "\n")
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
