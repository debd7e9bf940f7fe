"""A worker's warm job processes (:mod:`after.jobproc`), one job at a time each.

Why: isolation is the default for a user's job, and it used to cost a new interpreter
per run (~0.1 s of CPU: 8 runs a second). Like Celery's prefork pool or
``multiprocessing.Pool(maxtasksperchild=...)``, the processes here live for many runs;
one that crashed, was killed (timeout, cancel, memory) or is due to retire is dropped,
and a replacement starts in the background, so the cost of a crash stays its own task's.

Limits (settings, see :class:`Limits`): at most ``size`` processes (one per running
isolated job; a job beyond that waits for one), each retired after ``max_tasks`` runs,
or killed once its resident memory passes ``max_memory_mb`` (checked while a job runs,
every :data:`after.jobprocess.MEMORY_CHECK` s, and after each run).

What is decided here is plain code over data (:func:`should_grow`; what retires one
process is :func:`after.jobprocess.retire_reason`); one process's start, pipes and
signals are :mod:`after.jobprocess`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from after.jobprocess import IsolatedJobError, JobCrashed, JobOverMemory, JobProcess, Limits, MemoryWatch, NotStarted, retire_reason, rss_mb

log = logging.getLogger("after.jobpool")

#: A job that finds every process busy starts a new one only once none has come free for
#: this long (see :func:`should_grow`).
GROW_AFTER = 0.25

#: A process idle this long is ended (all but one): a burst does not keep its processes.
IDLE_SECONDS = 60.0


def should_grow(limits: Limits, *, alive: int, idle: int, spawning: int, quiet: float) -> bool:
    """Whether a job that wants a process starts a new one now, rather than wait for one.

    ``alive`` counts the processes, starting ones included (``spawning`` of them); ``quiet``
    is how long since a process last came free (ended a job, or started). The pool grows
    one process at a time, and only when the busy ones stay busy: a thousand short jobs
    due at once are served by the few processes that keep coming free (each new one
    costs ~0.1 s of CPU, the price of the per-run interpreter this pool replaced), while
    jobs that sleep or wait on I/O grow it, up to ``limits.size``, ~``GROW_AFTER`` apart.
    """
    if idle or spawning or alive >= limits.size:
        return False
    return alive == 0 or quiet >= GROW_AFTER


class JobPool:
    """At most ``limits.size`` warm job processes for one worker.

    ``init`` is the first message every process gets (the worker's job modules and the
    config file's jobs), so each imports them once, when it starts.
    """

    def __init__(self, limits: Limits, init: Mapping[str, Any], *, name: str = "", idle_seconds: float = IDLE_SECONDS) -> None:
        self.limits = dataclasses.replace(limits, size=max(1, limits.size))
        self.init = dict(init)
        self.name = name
        self._idle: list[JobProcess] = []
        #: Processes alive or starting, idle or busy: never more than ``limits.size``.
        self._count = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._starting: set[asyncio.Task[None]] = set()
        self._busy: set[JobProcess] = set()
        self._closed = False
        #: Processes starting now (counted in ``_count`` too).
        self._spawning = 0
        #: When a process last came free (see :func:`should_grow`).
        self._last_free = 0.0
        self._reaper: asyncio.TimerHandle | None = None
        self._grower: asyncio.TimerHandle | None = None
        #: Jobs woken to take a process that came free, not yet resumed: it is theirs.
        self._promised = 0
        self.idle_seconds = idle_seconds
        self.started = 0

    # -- what the runner calls -------------------------------------------------------------

    async def run(self, task_id: str, request: Mapping[str, Any], on_message: Callable[[dict[str, Any]], None]) -> Any:
        """Run one job in a warm process; its result.

        Raises :class:`IsolatedJobError` (the job raised), :class:`JobCrashed` (its process
        ended without an answer), :class:`JobOverMemory`. On cancellation the process is
        killed, group and all, and replaced.
        """
        for attempt in range(3):
            try:
                final = await self._run_once(request, on_message)
                break
            except NotStarted as exc:
                if attempt == 2:
                    raise JobCrashed(str(exc)) from None
                log.warning("worker %s: task %s goes to another job process: %s", self.name, task_id, exc)
        if "error" in final:
            raise IsolatedJobError(final["error"], final.get("result"))
        return final.get("result")

    async def _run_once(self, request: Mapping[str, Any], on_message: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        jp = await self._acquire()
        keep = False
        watch = MemoryWatch(jp, self.limits)
        try:
            try:
                final = await jp.run(request, on_message)
            except JobCrashed:
                if watch.killed is not None:
                    raise JobOverMemory(watch.killed) from None
                raise
            reason = "was killed for its memory" if watch.killed else retire_reason(self.limits, runs=jp.runs, rss_mb=rss_mb(jp.pid))
            if reason is not None:
                log.info("worker %s: job process %d retires: it %s", self.name, jp.pid, reason)
            keep = reason is None
            return final
        finally:
            watch.stop()
            self._release(jp, keep=keep)

    def prestart(self, count: int = 1) -> None:
        """Start up to ``count`` processes now, in the background, so the first jobs find them warm."""
        for _ in range(max(0, min(count, self.limits.size - self._count))):
            self._count += 1
            self._start_in_background()

    async def close(self) -> None:
        """End every process: idle ones exit, busy ones (there should be none) are killed."""
        self._closed = True
        for timer in (self._reaper, self._grower):
            if timer is not None:
                timer.cancel()
        for t in list(self._starting):
            t.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        idle, self._idle = self._idle, []
        await asyncio.gather(*(jp.close() for jp in idle), *(jp.close(kill=True) for jp in list(self._busy)), return_exceptions=True)
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(JobCrashed("the worker is stopping"))

    def stats(self) -> dict[str, int]:
        return {"size": self.limits.size, "alive": self._count, "idle": len(self._idle), "busy": len(self._busy), "started": self.started}

    # -- processes -------------------------------------------------------------------------

    async def _acquire(self) -> JobProcess:
        """A process for one job: an idle one, a new one (:func:`should_grow`), or the next
        to come free, in the order the jobs asked (a job never overtakes one waiting)."""
        if not self._waiters and len(self._idle) > self._promised:
            jp = self._take_idle()
            if jp is not None:
                return jp
        if not self._waiters and self._should_grow():
            return await self._grow()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        self._arm_growth()
        try:
            while True:
                await fut
                self._promised -= 1
                jp = self._take_idle()
                if jp is not None:
                    return jp
                # What came free is gone (it died): first in line again.
                fut = loop.create_future()
                self._waiters.appendleft(fut)
                self._arm_growth()
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._promised -= 1
                self._wake()  # woken, but cancelled before it could take the process: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def _take_idle(self) -> JobProcess | None:
        """The most recently used idle process that is alive (the others age out: _reap)."""
        if self._closed:
            raise JobCrashed("the worker is stopping")
        while self._idle:
            jp = self._idle.pop()
            if jp.alive:
                self._busy.add(jp)
                return jp
            self._count -= 1
            self._in_background(jp.close())
        return None

    def _should_grow(self) -> bool:
        quiet = time.monotonic() - self._last_free
        return should_grow(self.limits, alive=self._count, idle=len(self._idle), spawning=self._spawning, quiet=quiet)

    async def _grow(self) -> JobProcess:
        """Start a process for the caller's own job."""
        self._count += 1
        self._spawning += 1
        try:
            jp = await self._spawn()
        except BaseException:
            self._count -= 1
            self._wake()
            raise
        finally:
            self._spawning -= 1
        self._busy.add(jp)
        self._last_free = time.monotonic()  # it came free, to its starter: growth steps stay GROW_AFTER apart
        return jp

    def _arm_growth(self) -> None:
        """While jobs wait, look every GROW_AFTER whether the pool must grow (one timer for
        the pool, not one per waiting job: a thousand may wait)."""
        if self._grower is None and not self._closed and self._count < self.limits.size:
            loop = asyncio.get_running_loop()
            self._grower = loop.call_later(GROW_AFTER, self._growth_check, loop.time() + GROW_AFTER)

    def _growth_check(self, due: float) -> None:
        self._grower = None
        if not self._waiters or self._closed:
            return
        # A timer that fires late means this event loop was busy (a large batch of writes
        # encoded, say): the processes may well have answered meanwhile, unread. No sign.
        on_time = asyncio.get_running_loop().time() - due < GROW_AFTER / 2
        if on_time and self._should_grow():
            self._count += 1
            self._start_in_background()  # ready: it is handed to the first in line
        self._arm_growth()

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._starting.add(task)  # held until done; cancelled with the pool
        task.add_done_callback(self._starting.discard)

    def _release(self, jp: JobProcess, *, keep: bool) -> None:
        self._busy.discard(jp)
        if keep and not self._closed and jp.alive:
            self._free(jp)
        else:
            self._count -= 1
            if jp.alive:
                jp.kill()  # now, not when the close below first runs: its job must be over at once
            self._in_background(jp.close(kill=True))
            if not self._closed:
                # The replacement starts now, so the next job finds it warm.
                self._count += 1
                self._start_in_background()
        self._wake()

    def _free(self, jp: JobProcess) -> None:
        """``jp`` is idle: hand it to the next job; end it if none comes for ``idle_seconds``."""
        jp.free_since = self._last_free = time.monotonic()
        self._idle.append(jp)
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(self.idle_seconds, self._reap)

    def _reap(self) -> None:
        """End the processes idle for ``idle_seconds`` or more, all but one."""
        self._reaper = None
        cutoff = time.monotonic() - self.idle_seconds
        stale = [jp for jp in self._idle if jp.free_since <= cutoff]
        stale = stale[: max(0, min(len(stale), self._count - 1))]
        for jp in stale:
            self._idle.remove(jp)
            self._count -= 1
            self._in_background(jp.close())
        if stale:
            log.info("worker %s: ended %d job process(es) idle for %gs", self.name, len(stale), self.idle_seconds)
        if self._idle and not self._closed:
            oldest = min(jp.free_since for jp in self._idle)
            self._reaper = asyncio.get_running_loop().call_later(max(0.0, oldest + self.idle_seconds - time.monotonic()), self._reap)

    def _wake(self) -> None:
        """Hand what came free to the first job in line (it takes it when it resumes)."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self._promised += 1
                return

    def _start_in_background(self) -> None:
        async def start() -> None:
            self._spawning += 1
            try:
                jp = await self._spawn()
            except asyncio.CancelledError:
                self._count -= 1
                raise
            except Exception:
                self._count -= 1
                log.exception("worker %s: a job process could not start", self.name)
                self._wake()
                return
            finally:
                self._spawning -= 1
            if self._closed:
                self._count -= 1
                await jp.close()
                return
            self._free(jp)
            self._wake()

        self._in_background(start())

    async def _spawn(self) -> JobProcess:
        jp = await JobProcess.start(self.init)
        self.started += 1
        log.info("worker %s: job process %d started (%d alive)", self.name, jp.pid, self._count)
        return jp
