"""Keeps this host's named worker processes alive and talks to them.

One :class:`Supervisor` per daemon. Each worker has a keeper task that spawns the
process, reads its messages and its output, and when the process exits unexpectedly:
hands the tasks it was running back to the scheduler (``on_lost``: retried or ended
``err`` "worker died" by their retry policy), then restarts it with exponential backoff
(0.5 s doubling up to ``workers.restart_max_delay``). Five exits within a minute mark it
``crashloop``: still restarted, at the slowest pace, and reported by ``after list``,
``GET /workers`` and ``GET /health``. A pid that vanished is tolerated, never fatal.

Workers are kept by name (one process per name on a host). The set of started workers
is saved in ``<state>/workers.json`` so that a daemon restart (crash, systemd) brings
the same workers back.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from after.config import Settings
from after.errors import Conflict, InvalidInput, NotFound
from after.logfiles import LogFile, tail

log = logging.getLogger("after.supervisor")

CRASHLOOP_EXITS = 5
CRASHLOOP_WINDOW = 60.0

OnLost = Callable[[str, list[dict[str, Any]]], Awaitable[None]]
OnChange = Callable[[str], None]


@dataclasses.dataclass
class WorkerProc:
    name: str
    concurrency: int = 4
    jobs: list[str] = dataclasses.field(default_factory=list)
    state: str = "starting"  # starting | running | backoff | crashloop | stopping | stopped
    pid: int | None = None
    started_at: float = 0.0
    tasks_run: int = 0
    last_error: str | None = None
    restarts: int = 0
    known_jobs: list[str] | None = None
    inflight: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    exits: deque[float] = dataclasses.field(default_factory=lambda: deque(maxlen=CRASHLOOP_EXITS))
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    keeper: asyncio.Task[None] | None = None
    stop_timeout: float = 30.0
    stopping: bool = False
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    #: Set by stop(): ends a restart backoff at once.
    stop_requested: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    logfile: LogFile | None = None

    @property
    def running(self) -> bool:
        return self.state == "running" and self.writer is not None

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "running": self.running,
            "pid": self.pid,
            "uptime": round(time.time() - self.started_at, 1) if self.running else None,
            "tasks_run": self.tasks_run,
            "running_tasks": len(self.inflight),
            "last_error": self.last_error,
            "restarts": self.restarts,
            "concurrency": self.concurrency,
            "jobs_modules": self.jobs,
            "jobs": self.known_jobs,
        }


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        worker_settings: dict[str, Any],
        on_lost: OnLost,
        on_change: OnChange,
    ) -> None:
        self.settings = settings
        self.worker_settings = worker_settings
        self.on_lost = on_lost
        self.on_change = on_change
        self.workers: dict[str, WorkerProc] = {}
        self.logdir = settings.state_path / "logs"
        self.saved = settings.state_path / "workers.json"
        #: Called with (worker, job name, seconds after its due time) for every job started.
        self.start_observers: list[Callable[[str, str, float], None]] = []
        #: Called with (worker, job name, status) for every task a worker finished (metrics).
        self.finish_observers: list[Callable[[str, str, str | None], None]] = []

    # -- public API ------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.logdir / f"{name}.log"

    def knows(self, name: str) -> bool:
        wp = self.workers.get(name)
        return wp is not None and wp.running

    def capacity(self, name: str) -> int:
        """How many more tasks worker ``name`` can take now (a small prefetch included)."""
        wp = self.workers.get(name)
        if wp is None or not wp.running:
            return 0
        return max(0, wp.concurrency * 2 - len(wp.inflight))

    def dispatch(self, name: str, doc: dict[str, Any]) -> bool:
        wp = self.workers.get(name)
        if wp is None or not wp.running or wp.writer is None:
            return False
        wp.inflight[doc["_id"]] = doc
        wp.writer.write(json.dumps({"op": "run", "task": doc}).encode() + b"\n")
        return True

    def cancel(self, name: str, task_id: str) -> bool:
        wp = self.workers.get(name)
        if wp is None or wp.writer is None or task_id not in wp.inflight:
            return False
        wp.writer.write(json.dumps({"op": "cancel", "id": task_id}).encode() + b"\n")
        return True

    def running_here(self, name: str, task_id: str) -> bool:
        wp = self.workers.get(name)
        return wp is not None and task_id in wp.inflight

    def list(self) -> builtins.list[dict[str, Any]]:
        return [wp.info() for wp in sorted(self.workers.values(), key=lambda w: w.name)]

    def get(self, name: str) -> WorkerProc:
        wp = self.workers.get(name)
        if wp is None:
            raise NotFound(f"no worker named {name!r} on this daemon")
        return wp

    async def start(self, name: str, *, concurrency: int = 4, jobs: builtins.list[str] | None = None, wait: float = 15.0) -> WorkerProc:
        """Start worker ``name``; wait until it said hello (or failed to start)."""
        from after.model import _NAME

        if not _NAME.match(name):
            raise InvalidInput(f"name: invalid worker name {name!r} (letters, digits, _ . @ -)", field="name")
        if concurrency < 1 or concurrency > 1000:
            raise InvalidInput("concurrency: expected 1..1000", field="concurrency")
        existing = self.workers.get(name)
        if existing is not None and existing.state not in ("stopped",):
            raise Conflict(f"worker {name!r} is already running (pid {existing.pid})")
        wp = WorkerProc(name=name, concurrency=concurrency, jobs=list(jobs or []), stop_timeout=self.settings.workers_shutdown_timeout)
        wp.logfile = LogFile(self.log_path(name), max_bytes=self.settings.workers_log_max_bytes, backups=self.settings.workers_log_backups)
        self.workers[name] = wp
        wp.keeper = asyncio.create_task(self._keep(wp), name=f"keeper {name}")
        self._save()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await wp.ready.wait()
        if not wp.running and wp.last_error:
            raise InvalidInput(f"worker {name!r} failed to start: {wp.last_error}", field="jobs")
        return wp

    async def stop(self, name: str, *, timeout: float | None = None) -> WorkerProc:
        """Stop a worker gracefully: running jobs get ``timeout`` seconds to finish."""
        wp = self.get(name)
        wp.stopping = True
        wp.stop_requested.set()
        wp.state = "stopping"
        if timeout is not None:
            wp.stop_timeout = timeout
        self._save()
        if wp.writer is not None and not wp.writer.is_closing():
            wp.writer.write(json.dumps({"op": "stop", "timeout": wp.stop_timeout}).encode() + b"\n")
        elif wp.proc is not None and wp.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                wp.proc.terminate()
        if wp.keeper is not None:
            try:
                await asyncio.wait_for(asyncio.shield(wp.keeper), wp.stop_timeout + 40)
            except TimeoutError:
                if wp.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        wp.proc.kill()
                await wp.keeper
        wp.state = "stopped"
        return wp

    async def stop_all(self, timeout: float | None = None) -> None:
        """Stop every worker, keeping them in workers.json: they come back with the daemon.

        The file is read once before and written once after: each ``stop`` rewrites it
        without its worker, and stops running side by side would otherwise each restore a
        copy read after another had already removed its worker (one worker lost, 1 in 2).
        """
        saved = self._load()
        names = [n for n, w in self.workers.items() if w.state != "stopped"]
        await asyncio.gather(*(self.stop(n, timeout=timeout) for n in names))
        self._write_saved(saved)

    async def restore(self) -> None:
        """Start the workers that were running when the daemon last stopped, and configured ones."""
        wanted = dict(self.settings.workers_autostart)
        wanted.update(self._load())
        for name, spec in wanted.items():
            if name in self.workers:
                continue
            try:
                await self.start(name, concurrency=int(spec.get("concurrency", 4)), jobs=list(spec.get("jobs") or []), wait=0)
            except Exception as exc:
                log.error("cannot restore worker %s: %s", name, exc)

    def clean_log(self, name: str) -> None:
        wp = self.workers.get(name)
        if wp is not None and wp.logfile is not None:
            wp.logfile.truncate()
            return
        path = self.log_path(name)
        if not path.exists():
            raise NotFound(f"no log for worker {name!r}")
        with open(path, "r+b") as f:
            f.truncate(0)

    # -- persistence -------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.saved.read_text())
            return {k: v for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            return {}

    def _write_saved(self, data: dict[str, dict[str, Any]]) -> None:
        self.saved.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.saved.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.saved)

    def _save(self) -> None:
        data = {n: {"concurrency": w.concurrency, "jobs": w.jobs} for n, w in self.workers.items() if not w.stopping and w.state != "stopped"}
        self._write_saved(data)

    # -- the keeper --------------------------------------------------------------------------

    async def _spawn(self, wp: WorkerProc) -> asyncio.StreamReader:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["AFTER_WORKER_SETTINGS"] = json.dumps(self.worker_settings)
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = [sys.executable, "-P", "-m", "after.worker", "--name", wp.name, "--fd", str(child.fileno()), "--concurrency", str(wp.concurrency)]
        for module in wp.jobs:
            argv += ["--jobs", module]
        try:
            wp.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(child.fileno(),),
                env=env,
                # Its own session: a terminal's Ctrl-C reaches the daemon only, which
                # then stops workers in order.
                start_new_session=True,
            )
        finally:
            child.close()
        wp.pid = wp.proc.pid
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=64 * 1024 * 1024)
        wp.writer = writer
        return reader

    async def _pump_output(self, wp: WorkerProc) -> None:
        assert wp.proc is not None and wp.proc.stdout is not None
        while True:
            chunk = await wp.proc.stdout.read(65536)
            if not chunk:
                return
            if wp.logfile is not None:
                wp.logfile.write(chunk)

    async def _read(self, wp: WorkerProc, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            op = msg.get("op")
            if op == "hello":
                wp.known_jobs = msg.get("jobs")
                wp.state = "running"
                wp.started_at = time.time()
                wp.ready.set()
                self.on_change(wp.name)
            elif op == "started":
                for sobs in self.start_observers:
                    sobs(wp.name, str(msg.get("job") or ""), float(msg.get("lag") or 0.0))
            elif op == "finished":
                sent = wp.inflight.get(msg.get("id"))
                if sent is not None and msg.get("lease") not in (None, (sent.get("lease") or {}).get("id")):
                    sent = None  # the end of an earlier claim of a task whose next claim runs now
                else:
                    wp.inflight.pop(msg.get("id"), None)
                if sent is not None:
                    wp.tasks_run += 1
                # The worker names the job; an older worker does not, the claimed task does.
                job = msg.get("job") or ((sent or {}).get("job") or {}).get("name") or ""
                for obs in self.finish_observers:
                    obs(wp.name, str(job), msg.get("status"))
                self.on_change(wp.name)

    async def _keep(self, wp: WorkerProc) -> None:
        delay = 0.5
        while not wp.stopping:
            wp.state = "starting"
            wp.ready.clear()
            try:
                reader = await self._spawn(wp)
            except OSError as exc:
                wp.last_error = f"cannot start: {exc}"
                wp.ready.set()
                log.error("worker %s: %s", wp.name, wp.last_error)
                return
            pump = asyncio.create_task(self._pump_output(wp))
            try:
                await self._read(wp, reader)
                assert wp.proc is not None
                code = await wp.proc.wait()
                await pump
            finally:
                if wp.writer is not None:
                    wp.writer.close()
                wp.writer = None
            lost = list(wp.inflight.values())
            wp.inflight.clear()
            if wp.stopping:
                if lost:
                    await self.on_lost(wp.name, lost)
                break
            now = time.monotonic()
            wp.exits.append(now)
            wp.restarts += 1
            reason = f"exited with {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
            if wp.state == "starting":
                wp.last_error = f"worker process {reason} before it was ready"
                if code == 3:
                    # The worker's own "bad configuration" exit (e.g. --jobs module not
                    # importable): restarting cannot help. Say why, from its log.
                    last = tail(self.log_path(wp.name), 1).decode(errors="replace").strip()
                    wp.last_error = last.split("] ", 1)[-1] or wp.last_error
                    wp.stopping = True
                    wp.ready.set()
                    self._save()
                    break
            else:
                wp.last_error = f"worker process {reason}"
            crashloop = len(wp.exits) >= CRASHLOOP_EXITS and now - wp.exits[0] < CRASHLOOP_WINDOW
            wp.state = "crashloop" if crashloop else "backoff"
            log.error("worker %s %s with %d running task(s); restarting in %.1fs%s", wp.name, reason, len(lost), delay, " (crash loop)" if crashloop else "")
            if wp.logfile is not None:
                wp.logfile.write(f"--- after: worker process {reason}; restarting in {delay:.1f}s\n".encode())
            wp.ready.set()
            self.on_change(wp.name)
            if lost:
                await self.on_lost(wp.name, lost)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wp.stop_requested.wait(), delay)
            if crashloop:
                delay = self.settings.workers_restart_max_delay
            elif wp.started_at and time.time() - wp.started_at > CRASHLOOP_WINDOW:
                delay = 0.5
            else:
                delay = min(delay * 2, self.settings.workers_restart_max_delay)
        wp.state = "stopped"
        wp.pid = None
        if wp.logfile is not None:
            wp.logfile.close()
            wp.logfile = None
        self.on_change(wp.name)

    def crashlooping(self) -> builtins.list[str]:
        """Workers that exited ``CRASHLOOP_EXITS`` times within the last ``CRASHLOOP_WINDOW`` s.

        Judged on the exits, not on ``state``: between two crashes a crash-looping worker
        is briefly ``starting`` or ``running`` again, and /health must not flap with it.
        """
        now = time.monotonic()
        return [
            w.name
            for w in self.workers.values()
            if not w.stopping and w.state != "stopped" and len(w.exits) >= CRASHLOOP_EXITS and now - w.exits[0] < CRASHLOOP_WINDOW
        ]
