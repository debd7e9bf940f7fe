"""A worker's warm job processes (:mod:`after.jobproc`), one job at a time each.

Why: isolation is the default for a user's job, and it used to cost a new interpreter
per run (~0.1 s of CPU: 8 runs a second). Like Celery's prefork pool or
``multiprocessing.Pool(maxtasksperchild=...)``, the processes here live for many runs;
one that crashed, was killed (timeout, cancel, memory) or is due to retire is dropped,
and a replacement starts in the background, so the cost of a crash stays its own task's.

Limits (settings, see :class:`Limits`): at most ``size`` processes (one per running
isolated job; a job beyond that waits for one), each retired after ``max_tasks`` runs,
or killed once its resident memory passes ``max_memory_mb`` (checked while a job runs,
every :data:`MEMORY_CHECK` s, and after each run).

What is decided here is plain code over data (:func:`retire_reason`, :func:`over_memory`);
the processes, pipes and signals are the I/O around it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from after import procgroup

log = logging.getLogger("after.jobpool")

#: How often the memory of a process that runs a job is read (seconds).
MEMORY_CHECK = 0.5

#: How long a new process gets to import the worker's job modules and say it is ready.
START_TIMEOUT = 60.0

#: A job that finds every process busy starts a new one only once none has come free for
#: this long (see :func:`should_grow`).
GROW_AFTER = 0.25

#: A process idle this long is ended (all but one): a burst does not keep its processes.
IDLE_SECONDS = 60.0

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024) if hasattr(os, "sysconf") else 4096 / (1024 * 1024)


class IsolatedJobError(Exception):
    """An isolated job raised: ``error`` is its description from the job's process."""

    def __init__(self, error: dict[str, Any], result: Any) -> None:
        super().__init__(error.get("message"))
        self.error = error
        self.result = result


class JobCrashed(Exception):
    """An isolated job's process ended without an answer (os._exit, a signal, a crash)."""


class JobOverMemory(JobCrashed):
    """An isolated job's process grew past ``workers.max_memory_mb`` and was killed."""


class _NotStarted(JobCrashed):
    """The process ended before it took the job (it died between two jobs): the job never
    ran, so it is handed to another process rather than failed."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """The pool's settings: ``size`` processes at most; 0 for the other two means no limit."""

    size: int
    max_tasks: int = 0
    max_memory_mb: float = 0.0


def retire_reason(limits: Limits, *, runs: int, rss_mb: float | None) -> str | None:
    """Why a process that has just answered must not run another job, or None to keep it.

    ``runs`` counts the jobs it has run, the one just over included; ``rss_mb`` is its
    resident memory now (None where it cannot be read: the ceiling then never applies).
    """
    if limits.max_tasks and runs >= limits.max_tasks:
        return f"ran {runs} jobs (workers.max_tasks_per_process)"
    if over_memory(limits, rss_mb):
        return f"uses {rss_mb:.0f} MB, over workers.max_memory_mb = {limits.max_memory_mb:g}"
    return None


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


def over_memory(limits: Limits, rss_mb: float | None) -> bool:
    """Whether a process using ``rss_mb`` MB is past the ceiling (never without one)."""
    return bool(limits.max_memory_mb) and rss_mb is not None and rss_mb > limits.max_memory_mb


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB, from ``/proc`` (None elsewhere or if gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        return None


class JobProcess:
    """One warm :mod:`after.jobproc` process: its pipes, and how many jobs it has run."""

    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self.proc = proc
        self.reader = reader
        self.transport = transport
        self.runs = 0
        #: When it last came free (time.monotonic()): idle ones are ended after IDLE_SECONDS.
        self.free_since = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def run(self, request: Mapping[str, Any], on_message: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Send one job; pass its progress/log messages on; its final answer.

        Raises :class:`JobCrashed` if the process ends before it answers. The caller kills
        the process if this is cancelled (timeout, cancel, shutdown) midway.
        """
        assert self.proc.stdin is not None
        self.runs += 1
        started = False
        with contextlib.suppress(ConnectionError):  # a dead process shows as no answer, below
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self.proc.stdin.drain()
        while line := await self.reader.readline():
            msg = json.loads(line)
            if "started" in msg:
                started = True
            elif "progress" in msg or "log" in msg:
                on_message(msg)
            else:
                return dict(msg)
        code = await self.proc.wait()
        how = f"exited with {code}" if code >= 0 else f"was killed by {signal.Signals(-code).name}"
        if not started:
            raise _NotStarted(f"a job process {how} before it took the job")
        raise JobCrashed(f"the job's process {how} before it answered")

    def kill(self) -> None:
        """SIGKILL the process's whole group: the job and whatever it started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def close(self, *, kill: bool = False, timeout: float = 2.0) -> None:
        """End the process: close its request pipe (it exits), or kill it; reap it."""
        if kill and self.alive:
            self.kill()
        elif self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
        finally:
            self.transport.close()
        procgroup.ended("", self.pid)


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
            except _NotStarted as exc:
                if attempt == 2:
                    raise JobCrashed(str(exc)) from None
                log.warning("worker %s: task %s goes to another job process: %s", self.name, task_id, exc)
        if "error" in final:
            raise IsolatedJobError(final["error"], final.get("result"))
        return final.get("result")

    async def _run_once(self, request: Mapping[str, Any], on_message: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        jp = await self._acquire()
        keep = False
        watch = _MemoryWatch(jp, self.limits)
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
            if not keep and jp.alive:
                jp.kill()
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
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # no cwd on sys.path: a directory named `after` there would shadow the package
                "-m",
                "after.jobproc",
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(wfd,),
                env={**os.environ, "AFTER_JOBPROC_FD": str(wfd)},
                **procgroup.spawn_options(),  # its own group, killed with the worker
            )
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        # Reported for the process's whole life, not per job: if the worker dies, the daemon
        # kills the group (whatever a job left running in it too), and a run costs no message.
        procgroup.started("", proc.pid)
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(rfd, "rb"))
        jp = JobProcess(proc, reader, transport)
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(self.init).encode() + b"\n")
            await proc.stdin.drain()
            async with asyncio.timeout(START_TIMEOUT):
                line = await reader.readline()
            if not line or not json.loads(line).get("ready"):
                raise JobCrashed(f"a new job process ended before it was ready (exit {await proc.wait()})")
        except BaseException:
            await jp.close(kill=True)
            raise
        self.started += 1
        log.info("worker %s: job process %d started (%d alive)", self.name, proc.pid, self._count)
        return jp


class _MemoryWatch:
    """Reads a busy process's memory every :data:`MEMORY_CHECK` s; kills it past the ceiling.

    A timer, not a task: most jobs are over before the first check, and a timer that never
    fires costs next to nothing.
    """

    def __init__(self, jp: JobProcess, limits: Limits) -> None:
        self.jp = jp
        self.limits = limits
        self.killed: str | None = None
        self._handle: asyncio.TimerHandle | None = None
        if limits.max_memory_mb:
            self._handle = asyncio.get_running_loop().call_later(MEMORY_CHECK, self._check)

    def _check(self) -> None:
        used = rss_mb(self.jp.pid)
        if over_memory(self.limits, used):
            self.killed = f"the job's process used {used:.0f} MB, over workers.max_memory_mb = {self.limits.max_memory_mb:g}: killed"
            self.jp.kill()
            self._handle = None
            return
        self._handle = asyncio.get_running_loop().call_later(MEMORY_CHECK, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
