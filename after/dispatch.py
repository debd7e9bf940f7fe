"""Where a scheduler's claimed tasks go: this host's worker processes (the daemon's
:class:`after.supervisor.Supervisor`), runners in this process (:class:`LocalDispatcher`,
the in-process API's ``run=``), or nowhere (:class:`NoDispatcher`, a client that only
schedules). Split out of :mod:`after.scheduler`, which re-exports them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from after.config import Settings
from after.jobs import JobFunc
from after.runner import Runner
from after.store import Store

if TYPE_CHECKING:
    from after.scheduler import Scheduler


class Dispatcher(Protocol):
    """Where claimed tasks go: this host's worker processes, or in-process runners."""

    def knows(self, worker: str) -> bool: ...
    def capacity(self, worker: str) -> int: ...
    def dispatch(self, worker: str, doc: dict[str, Any]) -> bool: ...
    def cancel(self, worker: str, task_id: str) -> bool: ...
    def running_here(self, worker: str, task_id: str) -> bool: ...


class LocalDispatcher:
    """Runs tasks in this process with :class:`Runner` s: no daemon, no worker processes."""

    def __init__(self, store: Store, settings: Settings, jobs: Mapping[str, Mapping[str, JobFunc]], *, concurrency: int = 4) -> None:
        self.scheduler: Scheduler | None = None
        self.runners: dict[str, Runner] = {}
        for worker, registry in jobs.items():
            self.runners[worker] = Runner(store, name=worker, registry=registry, settings=settings, concurrency=concurrency, notify=self._notify, isolate=False)

    def _notify(self, msg: dict[str, Any]) -> None:
        if self.scheduler is None:
            return
        if msg.get("op") == "finished":
            self.scheduler.kick()
        elif msg.get("op") == "started":
            self.scheduler.fire_lags.append((time.time(), float(msg.get("lag") or 0.0)))

    def knows(self, worker: str) -> bool:
        return worker in self.runners

    def capacity(self, worker: str) -> int:
        r = self.runners.get(worker)
        return 0 if r is None else max(0, r.concurrency * 2 - len(r.running))

    def dispatch(self, worker: str, doc: dict[str, Any]) -> bool:
        r = self.runners.get(worker)
        if r is None:
            return False
        r.submit(doc)
        return True

    def cancel(self, worker: str, task_id: str) -> bool:
        r = self.runners.get(worker)
        return r is not None and r.cancel(task_id)

    def running_here(self, worker: str, task_id: str) -> bool:
        r = self.runners.get(worker)
        return r is not None and task_id in r.running

    async def drain(self, timeout: float) -> None:
        await asyncio.gather(*(r.drain(timeout) for r in self.runners.values()))


class NoDispatcher:
    """A client that only schedules: tasks are run by daemons' workers."""

    def knows(self, worker: str) -> bool:
        return False

    def capacity(self, worker: str) -> int:
        return 0

    def dispatch(self, worker: str, doc: dict[str, Any]) -> bool:
        return False

    def cancel(self, worker: str, task_id: str) -> bool:
        return False

    def running_here(self, worker: str, task_id: str) -> bool:
        return False


class Dispatchers:
    """Several dispatchers as one: this host's worker processes and its remote workers'
    sessions. A name is served by whichever knows it; a task goes to the first with room."""

    def __init__(self, *parts: Dispatcher) -> None:
        self.parts = parts

    def knows(self, worker: str) -> bool:
        return any(p.knows(worker) for p in self.parts)

    def capacity(self, worker: str) -> int:
        return sum(p.capacity(worker) for p in self.parts)

    def dispatch(self, worker: str, doc: dict[str, Any]) -> bool:
        for p in self.parts:
            if p.knows(worker) and p.capacity(worker) > 0 and p.dispatch(worker, doc):
                return True
        return any(p.knows(worker) and p.dispatch(worker, doc) for p in self.parts)

    def cancel(self, worker: str, task_id: str) -> bool:
        return any(p.cancel(worker, task_id) for p in self.parts)

    def running_here(self, worker: str, task_id: str) -> bool:
        return any(p.running_here(worker, task_id) for p in self.parts)
