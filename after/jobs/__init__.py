"""Jobs: named, reusable pieces of automation, and the context a running job gets.

A job is a callable registered by name. It is called as ``func(ctx, *arguments,
**kwargs)`` with the task's ``job.arguments`` and ``job.kwargs``; ``ctx`` is a
:class:`TaskContext` (report ``progress``, append ``log`` lines, read the task). It may
be a coroutine function (run on the worker's event loop, cancellable) or a plain
function (run in a thread of the worker). What it returns is stored as ``result``
(it must be JSON-serialisable); what it raises is stored as ``error``.

Where jobs come from, in order (a later one with the same name wins):

1. the built-ins (:mod:`after.jobs.builtin`): ``noop``, ``sleep``, ``shell``, ``http``,
   ``compact_couchdb``;
2. the entry point group ``after.jobs`` of installed packages;
3. ``[jobs.NAME] command = "..."`` tables in the config file (shell commands);
4. modules given to a worker (``after start NAME --jobs mypkg.jobs``), which register
   with the :func:`job` decorator.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from after import calendar
from after.errors import ConfigError

log = logging.getLogger("after.jobs")

JobFunc = Callable[..., Any]

#: Jobs registered with :func:`job` at import time, by name.
REGISTERED: dict[str, JobFunc] = {}


def job(name: str | None = None, *, isolated: bool = True) -> Callable[[JobFunc], JobFunc]:
    """Register a function as a job: ``@job()`` (its own name) or ``@job("send_mail")``.

    ``isolated`` (default): each run is a process of its own (:mod:`after.jobproc`), so a
    hang past the timeout is killed and a crash costs only that task. ``isolated=False``
    runs it inline in the worker: cheaper (no process start, about 0.1 s), for jobs you
    trust to be cancellable coroutines.
    """

    def decorate(func: JobFunc) -> JobFunc:
        REGISTERED[name or func.__name__] = func
        func.__after_isolated__ = isolated  # type: ignore[attr-defined]
        return func

    return decorate


def isolated(func: JobFunc) -> bool:
    """Whether runs of ``func`` get their own process. Built-ins and config shell jobs don't."""
    return bool(getattr(func, "__after_isolated__", True))


class JobFailed(Exception):
    """A job failed in a way it can describe: ``result`` is kept alongside the error.

    ``shell`` raises it for a non-zero exit (with stdout/stderr in ``result``), ``http``
    for a non-2xx answer.
    """

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class TaskContext:
    """What a running job can see and report. Writes are batched by the runner."""

    task: Mapping[str, Any]
    worker: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    log_limit: int = 200
    progress_value: dict[str, Any] | None = None
    log_lines: list[str] = field(default_factory=list)
    dirty: bool = False

    @property
    def id(self) -> str:
        return str(self.task["_id"])

    @property
    def occurrence(self) -> datetime | None:
        """The cron occurrence this run stands for (its nominal time, before jitter); None for a one-shot task.

        A job that reports on "the day" it runs for needs this, not the clock: a jittered,
        late, backfilled or concurrent (``allow``) run starts after its occurrence, maybe on
        the next day. A backfill or ``allow`` child carries its occurrence itself."""
        if self.task.get("parent") is not None:
            from after.occurrences import occurrence_of  # lazily: after.occurrences imports after.model, which is not needed to import after.jobs

            return occurrence_of(self.task)
        return calendar.nominal_of(self.task) if self.task.get("cron") else None

    @property
    def dependencies(self) -> dict[str, Any]:
        """The outcomes of the tasks this one waited for (its ``after``), as they were when it
        was claimed: ``{task_id: {"status", "result", "error"}}`` ({} without dependencies)."""
        value = self.task.get("dependencies")
        return dict(value) if isinstance(value, Mapping) else {}

    def progress(self, done: float, total: float | None = None) -> None:
        """Report progress; visible as ``progress`` in the task (``GET /tasks/{id}``)."""
        self.progress_value = {"done": done, "total": total}
        self.dirty = True

    def log(self, message: str) -> None:
        """Append one line to the task's ``log`` (the newest ``scheduler.log_limit`` are kept)."""
        self.log_lines.append(str(message))
        if len(self.log_lines) > self.log_limit:
            del self.log_lines[: len(self.log_lines) - self.log_limit]
        self.dirty = True


def shell_job(command: str | list[str]) -> JobFunc:
    """A job that runs a fixed command from the config file; arguments are appended."""
    from after.jobs.builtin import shell

    async def run(ctx: TaskContext, *args: Any, **kwargs: Any) -> Any:
        if isinstance(command, list):
            return await shell(ctx, *command, *args, **kwargs)
        if args:
            return await shell(ctx, "/bin/sh", "-c", command + ' "$@"', "sh", *args, **kwargs)
        return await shell(ctx, command, **kwargs)

    run.__after_isolated__ = False  # type: ignore[attr-defined]  # the command is its own process
    return run


def load(modules: Iterable[str] = (), config_jobs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, JobFunc]:
    """Build a worker's registry. An unimportable module is a ConfigError naming it."""
    from after.jobs import builtin

    registry: dict[str, JobFunc] = dict(builtin.BUILTINS)
    for ep in importlib.metadata.entry_points(group="after.jobs"):
        try:
            registry[ep.name] = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the worker
            log.error("cannot load job %r from entry point %s: %s", ep.name, ep.value, exc)
    for name, spec in (config_jobs or {}).items():
        registry[name] = shell_job(spec["command"])
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(f"cannot import jobs module {module!r}: {type(exc).__name__}: {exc}") from exc
    registry.update(REGISTERED)
    return registry


def is_async(func: JobFunc) -> bool:
    call = type(func).__dict__.get("__call__")  # a callable object with an async __call__
    return inspect.iscoroutinefunction(func) or (call is not None and inspect.iscoroutinefunction(call))
