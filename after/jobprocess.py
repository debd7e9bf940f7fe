"""One warm job process (:mod:`after.jobproc`), seen from its worker: its start, its pipes,
one job's round trip, its memory, and how it ends.

Why a module of its own: what happens to one process (it crashed, it was killed, it took
the job or not, it grew past the ceiling) is apart from how a worker's processes are
shared between its jobs (:mod:`after.jobpool`). The decisions are plain code over data
(:func:`retire_reason`, :func:`over_memory`); the process, pipes and signals are the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

from after import procgroup

#: How often the memory of a process that runs a job is read (seconds).
MEMORY_CHECK = 0.5

#: How long a new process gets to import the worker's job modules and say it is ready.
START_TIMEOUT = 60.0

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


class NotStarted(JobCrashed):
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

    @classmethod
    async def start(cls, init: Mapping[str, Any]) -> JobProcess:
        """Start a process, send it ``init`` (the worker's job modules and the config file's
        jobs, imported once, here) and wait until it says it is ready."""
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
        jp = cls(proc, reader, transport)
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(dict(init)).encode() + b"\n")
            await proc.stdin.drain()
            async with asyncio.timeout(START_TIMEOUT):
                line = await reader.readline()
            if not line or not json.loads(line).get("ready"):
                raise JobCrashed(f"a new job process ended before it was ready (exit {await proc.wait()})")
        except BaseException:
            await jp.close(kill=True)
            raise
        return jp

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
            raise NotStarted(f"a job process {how} before it took the job")
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


class MemoryWatch:
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
