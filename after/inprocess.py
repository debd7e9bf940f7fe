"""The in-process API: ``after.scheduler.connect(...)`` (re-exported there).

Why its own module: a program that schedules tasks from Python needs the store verbs
(:class:`~after.service.Tasks`) and, with ``run=``, a scheduler of its own in the
process. That is a client of :class:`~after.scheduler.Scheduler`, not part of its tick,
so it sits beside it, and the scheduler module keeps to the agenda, the claim rules and
the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from after import model, occurrences, timing
from after.config import Settings
from after.dispatch import LocalDispatcher
from after.errors import AfterError
from after.jobs import JobFunc
from after.service import Tasks
from after.store import Store

if TYPE_CHECKING:
    from after.scheduler import Scheduler


class Client(Tasks):
    """``after.scheduler.connect(...)``: schedule, cancel, reschedule and read tasks from a program.

    With ``run=``, it also runs a scheduler in this process that executes those
    workers' tasks with the given job functions (no daemon needed); it competes fairly
    with daemons for the same workers' tasks (claims are revisions).
    """

    def __init__(self, store: Store, settings: Settings, *, run: Mapping[str, Mapping[str, JobFunc]] | None = None, by: str = "python") -> None:
        super().__init__(store, settings, by=by)
        self.scheduler: Scheduler | None = None
        self._local: LocalDispatcher | None = None
        if run:
            self._local = LocalDispatcher(store, settings, run)
            from after.scheduler import Scheduler  # at run time: after.scheduler re-exports this module

            self.scheduler = Scheduler(store, settings, self._local)
            self._local.scheduler = self.scheduler

    async def schedule(
        self,
        worker: str,
        job: str,
        *,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        date: Any = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Create one task; ``options`` are any task fields (cron, timezone, priority, retry...)."""
        body = {"worker": worker, "job": {"name": job, "arguments": args or [], "kwargs": kwargs or {}}, **options}
        if date is not None:
            body["date"] = date
        elif "cron" not in options:
            body["date"] = time.time()
        (doc,) = await self.create([body])
        return doc

    async def backfill(self, task_id: str, start: Any, end: Any) -> dict[str, Any]:
        """Run a cron task's occurrences of [start, end] (``POST /tasks/{id}/backfill``):
        ``{id, count, occurrences, pending, task}``."""
        return await occurrences.backfill(self, task_id, timing.parse_date(start, field="from"), timing.parse_date(end, field="to"))

    async def wait(self, task_id: str, *, statuses: Iterable[str] = model.TERMINAL, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the task reaches one of ``statuses`` (a convenience for scripts and tests)."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            doc = await self.get(task_id)
            if doc.get("status") in wanted or time.monotonic() > deadline:
                return doc
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> Client:
        await self.store.open()
        if self.scheduler is not None:
            await self.scheduler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self._local is not None:
            await self._local.drain(self.settings.workers_shutdown_timeout)
        await self.store.close()


def connect(
    url: str | None = None,
    *,
    database: str | None = None,
    user: str | None = None,
    password: str | None = None,
    run: Mapping[str, Mapping[str, JobFunc]] | None = None,
    settings: Settings | None = None,
) -> Client:
    """A :class:`Client` for the CouchDB at ``url`` (default: the configured one).

    Use it as ``async with connect(...) as after:``. ``run`` maps worker names to
    ``{job name: function}`` to execute those workers' tasks in this process.
    """
    from after import config

    s = settings or config.load()
    url = url or s.couchdb_url
    if not url:
        raise AfterError("connect(): no CouchDB URL (pass url= or set couchdb.url / AFTER_COUCHDB_URL)")
    store = Store(url, database or s.couchdb_database, user=user or s.couchdb_user or None, password=password or s.couchdb_password or None)
    return Client(store, s, run=run)


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
