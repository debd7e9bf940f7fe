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
import collections
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

from after import procgroup, schema
from after.config import Settings
from after.errors import Conflict, InvalidInput, NotFound
from after.logfiles import LogFile, tail

log = logging.getLogger("after.supervisor")

CRASHLOOP_EXITS = 5
CRASHLOOP_WINDOW = 60.0

#: A worker whose channel closed gets this long to exit by itself before it is killed.
CHANNEL_GRACE = 2.0
#: A worker's first start is not reported "down" by /health for this long.
FIRST_START_GRACE = 30.0

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
    #: Those of ``inflight`` whose job is over (the worker said ``started``, which it sends
    #: once the job has run) and whose outcome is being written: task id -> lease id.
    finishing: dict[str, str | None] = dataclasses.field(default_factory=dict)
    exits: deque[float] = dataclasses.field(default_factory=lambda: deque(maxlen=CRASHLOOP_EXITS))
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    keeper: asyncio.Task[None] | None = None
    stop_timeout: float = 30.0
    stopping: bool = False
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    #: Set by stop() (and by start() of a worker in backoff): ends a restart backoff at once.
    wakeup: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    logfile: LogFile | None = None
    #: Whether the current process said hello (a process that exits before it did never
    #: worked: its exit is a failure to start).
    hello: bool = False
    #: When the current process was spawned (time.monotonic()).
    spawned_at: float = 0.0
    #: The process groups its jobs run in (pgid -> task id), as the worker reported them:
    #: killed when the worker process is gone (see after.procgroup).
    groups: dict[int, str] = dataclasses.field(default_factory=dict)
    #: The worker process's loops that fail now, as it reported them (``op: loop``):
    #: loop -> (cause, message) (see after/loops.py). Cleared with each new process.
    failing: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running" and self.writer is not None

    def settle(self, task_id: Any) -> None:
        """Task ``task_id`` no longer runs here (finished, dropped, or never sent)."""
        self.inflight.pop(task_id, None)
        self.finishing.pop(task_id, None)

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
            # Warm job processes (after.jobpool): reported for their life, without a task.
            "job_processes": sum(1 for task_id in self.groups.values() if not task_id),
            "concurrency": self.concurrency,
            "jobs_modules": self.jobs,
            "jobs": self.known_jobs,
        }


def room(concurrency: int, *, inflight: int, finishing: int) -> int:
    """How many more tasks a worker can be sent: twice its slots (a prefetch of one slot's
    worth each), less the tasks it holds whose job has not run yet.

    Tasks whose job is over and whose outcome is being written (``finishing``) take no
    slot: counting them kept a worker of short jobs waiting on its own writes (W6 of the
    benchmark: 8 slots, a write taking tens of ms, ~60 tasks/s). Tasks queued behind busy
    slots stay bounded by the slots, so none waits long enough to outlive its lease.
    """
    return max(0, 2 * concurrency - max(0, inflight - finishing))


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
        #: Tasks each worker's runner ended err (internal): a failure contained to the task.
        self.contained: dict[str, int] = collections.defaultdict(int)

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
        return room(wp.concurrency, inflight=len(wp.inflight), finishing=len(wp.finishing))

    def dispatch(self, name: str, doc: dict[str, Any]) -> bool:
        wp = self.workers.get(name)
        if wp is None or not wp.running or wp.writer is None:
            return False
        wp.inflight[doc["_id"]] = doc
        wp.finishing.pop(doc["_id"], None)  # a new claim: its job has not run
        try:
            wp.writer.write(json.dumps({"op": "run", "task": doc}).encode() + b"\n")
        except Exception as exc:  # a channel that broke, a document json cannot write
            wp.settle(doc["_id"])
            log.error("task %s: cannot send it to worker %s: %r", doc["_id"], name, exc)
            return False
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
        """Start worker ``name``; wait until it said hello (or failed to start).

        Works in every state: a worker being stopped is started again once its stop is
        over; one being restarted (in a backoff, crash-looping) is restarted now. Only a
        worker that runs, or whose first start is under way, is a conflict.
        """
        if not schema.valid_name(name):
            raise InvalidInput(f"name: invalid worker name {name!r} (letters, digits, _ . @ -)", field="name")
        if concurrency < 1 or concurrency > 1000:
            raise InvalidInput("concurrency: expected 1..1000", field="concurrency")
        existing = self.workers.get(name)
        if existing is not None and existing.stopping and existing.keeper is not None and not existing.keeper.done():
            # A stop in progress: starting means starting again once it is over.
            try:
                await asyncio.wait_for(asyncio.shield(existing.keeper), existing.stop_timeout + 45)
            except TimeoutError:
                raise Conflict(f"worker {name!r} is still stopping (pid {existing.pid}); try again") from None
            except Exception:
                pass  # its keeper's failure is logged by it; the worker is gone all the same
        elif existing is not None and not existing.stopping and _restarting(existing):
            # Being restarted: restart it now (no more backoff) rather than refuse, and wait
            # (as for a first start) until the new process said hello or died too.
            t0 = time.monotonic()
            existing.wakeup.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    while not existing.running and existing.state != "stopped":
                        if existing.spawned_at >= t0 and existing.exits and existing.exits[-1] >= existing.spawned_at:
                            break  # the new process died as well; its keeper goes on
                        await asyncio.sleep(0.05)
            return existing
        elif existing is not None and not existing.stopping and existing.state != "stopped":
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

    async def stop(self, name: str, *, timeout: float | None = None, save: bool = True) -> WorkerProc:
        """Stop a worker gracefully: running jobs get ``timeout`` seconds to finish.

        Works in every state (running, starting, in backoff, dead, already stopping or
        stopped) and always ends ``stopped``: a keeper that failed is logged, not raised,
        and a process that does not stop in time is killed. ``save=False`` leaves
        workers.json alone (the daemon's shutdown keeps every worker in it).
        """
        wp = self.get(name)
        wp.stopping = True
        wp.wakeup.set()
        if wp.state != "stopped":
            wp.state = "stopping"
        if timeout is not None:
            wp.stop_timeout = timeout
        if save:
            self._save()
        try:
            if wp.hello and wp.writer is not None and not wp.writer.is_closing():
                wp.writer.write(json.dumps({"op": "stop", "timeout": wp.stop_timeout}).encode() + b"\n")
            elif wp.proc is not None and wp.proc.returncode is None:
                # Not reading its channel (still starting, or stopping by itself): a signal.
                wp.proc.terminate()
        except Exception as exc:  # the channel broke just now: the process is told by signal
            log.warning("worker %s: cannot ask it to stop (%r); terminating it", name, exc)
            self._signal(wp, signal.SIGTERM)
        keeper = wp.keeper
        if keeper is not None and not keeper.done():
            try:
                await asyncio.wait_for(asyncio.shield(keeper), wp.stop_timeout + 40)
            except TimeoutError:
                log.error("worker %s did not stop within %gs; killing it", name, wp.stop_timeout + 40)
                self._signal(wp, signal.SIGKILL)
                try:
                    await asyncio.wait_for(asyncio.shield(keeper), 15)
                except TimeoutError:
                    keeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await keeper
            except Exception:
                log.exception("worker %s: its keeper failed while it stopped", name)
        wp.state = "stopped"
        wp.pid = None
        return wp

    def _signal(self, wp: WorkerProc, sig: signal.Signals) -> None:
        """Send ``sig`` to the worker's process, if it still runs."""
        if wp.proc is not None and wp.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                wp.proc.send_signal(sig)

    async def stop_all(self, timeout: float | None = None) -> builtins.list[str]:
        """Stop every worker, keeping them in workers.json: they come back with the daemon.

        Every worker this daemon was keeping is kept: running ones, and ones dead or in
        a restart backoff at this moment. workers.json is written once, after the stops
        (write, fsync, rename), and not rewritten by each stop: stops running side by
        side each rewrote it, and a worker went missing in about one restart in two.
        Never raises: returns what failed (each logged), so the daemon's shutdown goes
        on with its other steps.
        """
        failures: builtins.list[str] = []
        keep = self._load()
        keep.update(self._wanted())
        names = [n for n, w in self.workers.items() if w.state != "stopped"]
        results = await asyncio.gather(*(self.stop(n, timeout=timeout, save=False) for n in names), return_exceptions=True)
        for name, res in zip(names, results, strict=True):
            if isinstance(res, BaseException):
                log.error("stopping worker %s failed: %r", name, res)
                failures.append(f"stopping worker {name}: {res!r}")
        try:
            self._write_saved(keep)
        except OSError as exc:
            log.error("cannot write %s: %s", self.saved, exc)
            failures.append(f"writing {self.saved}: {exc}")
        return failures

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

    def _wanted(self) -> dict[str, dict[str, Any]]:
        """The workers to bring back with the daemon: every one not being stopped, whatever its state."""
        return {n: {"concurrency": w.concurrency, "jobs": w.jobs} for n, w in self.workers.items() if not w.stopping and w.state != "stopped"}

    def _save(self) -> None:
        try:
            self._write_saved(self._wanted())
        except OSError as exc:  # the worker still starts or stops; only its return with the daemon is at risk
            log.error("cannot write %s: %s", self.saved, exc)

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
                try:
                    wp.logfile.write(chunk)
                except OSError as exc:  # a full disk loses log lines, never the worker
                    log.error("worker %s: cannot write its log: %s", wp.name, exc)

    def _log_line(self, wp: WorkerProc, text: str) -> None:
        """A line of the supervisor's own in the worker's log (``--- after: ...``)."""
        if wp.logfile is not None:
            with contextlib.suppress(OSError):
                wp.logfile.write(f"--- after: {text}\n".encode())

    async def _read(self, wp: WorkerProc, reader: asyncio.StreamReader) -> None:
        """Handle the worker's messages until its channel closes.

        A message that cannot be handled (a shape this daemon does not expect, a failing
        observer) is logged with its task id and skipped: it must never end the
        supervision of the worker, which would leave it listed as running, unrestarted.
        """
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                msg = json.loads(line)
            except ValueError:
                log.error("worker %s: bad message %r", wp.name, line[:200])
                continue
            try:
                self._handle(wp, msg)
            except Exception:
                task_id = msg.get("id") if isinstance(msg, dict) else None
                log.exception("worker %s: cannot handle its message %r (task %s)", wp.name, line[:200], task_id)

    def _handle(self, wp: WorkerProc, msg: Any) -> None:
        """Act on one message of the worker (a JSON object, as it sent it: unchecked)."""
        op = msg.get("op")
        if op == "hello":
            wp.known_jobs = msg.get("jobs")
            wp.hello = True
            if not wp.stopping:
                wp.state = "running"
            wp.started_at = time.time()
            wp.ready.set()
            self.on_change(wp.name)
        elif op == "started":
            task_id = msg.get("id")
            sent = wp.inflight.get(task_id)
            if sent is not None and msg.get("lease") in (None, (sent.get("lease") or {}).get("id")):
                # Its job is over; only its outcome's write is left: no longer a slot taken.
                full = self.capacity(wp.name) == 0
                wp.finishing[task_id] = msg.get("lease")
                if full:
                    # Room again for a worker that had none: the scheduler may send more now.
                    # Only then: a thousand jobs starting at one second must not each wake it.
                    self.on_change(wp.name)
            for sobs in self.start_observers:
                sobs(wp.name, str(msg.get("job") or ""), float(msg.get("lag") or 0.0))
        elif op == "finished":
            sent = wp.inflight.get(msg.get("id"))
            if sent is not None and msg.get("lease") not in (None, (sent.get("lease") or {}).get("id")):
                sent = None  # the end of an earlier claim of a task whose next claim runs now
            else:
                wp.settle(msg.get("id"))
            if sent is not None:
                wp.tasks_run += 1
            # The worker names the job; an older worker does not, the claimed task does.
            job = msg.get("job") or _job_name(sent)
            for obs in self.finish_observers:
                obs(wp.name, str(job), msg.get("status"))
            if msg.get("contained"):
                self.contained[wp.name] += 1  # the runner ended it err (internal)
            self.on_change(wp.name)
        elif op == "dropped":
            # A task the worker could not take (it logged why): not running there.
            wp.settle(msg.get("id"))
            self.on_change(wp.name)
        elif op == "job_group":
            pgid = int(msg["pgid"])
            if msg.get("running"):
                wp.groups[pgid] = str(msg.get("id"))
            else:
                wp.groups.pop(pgid, None)
        elif op == "loop":
            # One of its loops (its writes to CouchDB) fails, or works again: for /health.
            loop = str(msg.get("loop"))
            if msg.get("cause"):
                wp.failing[loop] = (str(msg.get("cause")), str(msg.get("message") or ""))
            else:
                wp.failing.pop(loop, None)
                self.on_change(wp.name)  # its writes land again: the daemon's loops may retry now
        elif op == "stopping" and not wp.stopping:
            # It stops by itself (SIGTERM from someone, a broken channel): no more work for
            # it; it is restarted once it has exited.
            wp.state = "backoff"
            wp.last_error = f"worker process stopping by itself ({msg.get('reason')})"
            self._log_line(wp, wp.last_error)
            self.on_change(wp.name)

    async def _keep(self, wp: WorkerProc) -> None:
        """Keep one worker process alive until it is stopped; never raises.

        Whatever goes wrong inside (a message, a callback, a store error while handing
        tasks back), the worker stays supervised: its process is made sure gone, its job
        groups are killed, it is reported and restarted. Its state ends ``stopped`` only
        when it was stopped (or cannot start at all).
        """
        delay = 0.5
        try:
            while not wp.stopping:
                try:
                    try:
                        code = await self._run_once(wp)
                    except _SpawnFailed as exc:
                        wp.last_error = f"cannot start: {exc.__cause__}"
                        log.error("worker %s: %s", wp.name, wp.last_error)
                        await self._ensure_gone(wp)
                        return
                    except Exception as exc:
                        log.exception("worker %s: supervising its process failed", wp.name)
                        code = await self._ensure_gone(wp)
                        wp.last_error = f"supervisor error: {exc!r}"
                    lost = list(wp.inflight.values())
                    wp.inflight.clear()
                    wp.finishing.clear()
                    if wp.stopping:
                        await self._hand_back(wp, lost)
                        break
                    now = time.monotonic()
                    wp.exits.append(now)
                    wp.restarts += 1
                    reason = _exit_reason(code)
                    if not wp.hello:
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
                    log.error(
                        "worker %s %s with %d running task(s); restarting in %.1fs%s", wp.name, reason, len(lost), delay, " (crash loop)" if crashloop else ""
                    )
                    self._log_line(wp, f"worker process {reason}; restarting in {delay:.1f}s")
                    wp.ready.set()
                    self._changed(wp)
                    await self._hand_back(wp, lost)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wp.wakeup.wait(), delay)
                    wp.wakeup.clear()
                    if crashloop:
                        delay = self.settings.workers_restart_max_delay
                    elif wp.started_at and time.time() - wp.started_at > CRASHLOOP_WINDOW:
                        delay = 0.5
                    else:
                        delay = min(delay * 2, self.settings.workers_restart_max_delay)
                except Exception:
                    # A bug of ours between two runs of the process: it is still supervised.
                    log.exception("worker %s: its keeper failed; restarting it in %.1fs", wp.name, delay)
                    await self._ensure_gone(wp)
                    wp.state = "backoff"
                    wp.last_error = "supervision failed (see the daemon log)"
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wp.wakeup.wait(), delay)
                    wp.wakeup.clear()
                    delay = min(delay * 2, self.settings.workers_restart_max_delay)
        except asyncio.CancelledError:
            await self._ensure_gone(wp)
            raise
        finally:
            wp.state = "stopped"
            wp.pid = None
            wp.ready.set()
            if wp.logfile is not None:
                with contextlib.suppress(OSError):
                    wp.logfile.close()
                wp.logfile = None
            self._changed(wp)

    async def _run_once(self, wp: WorkerProc) -> int:
        """Spawn the worker process, serve its channel, and return once the process is gone.

        The moment the channel closes the worker is no longer running (nothing can be
        sent to it): unless it is being stopped, it is reported ``backoff`` at once, and
        a process that does not exit by itself within ``CHANNEL_GRACE`` s is killed. Its
        jobs' process groups are killed once the process is gone, before its tasks are
        handed back for a retry.
        """
        wp.state = "starting"
        wp.hello = False
        wp.ready.clear()
        wp.groups.clear()
        wp.failing.clear()
        wp.spawned_at = time.monotonic()
        try:
            reader = await self._spawn(wp)
        except OSError as exc:
            raise _SpawnFailed() from exc
        if wp.stopping:
            # stop() came while it was being spawned, and found no process to tell.
            self._signal(wp, signal.SIGTERM)
        pump = asyncio.create_task(self._pump_output(wp), name=f"log {wp.name}")
        try:
            try:
                await self._read(wp, reader)
                why = "its channel to the daemon closed"
            except Exception as exc:  # a line beyond the limit, a reset connection
                why = f"its channel to the daemon failed ({exc!r})"
                log.error("worker %s: %s", wp.name, why)
            self._close_channel(wp)
            if not wp.stopping and wp.state in ("starting", "running"):
                wp.state = "backoff"
                wp.last_error = f"worker process lost: {why}"
                self._changed(wp)
            assert wp.proc is not None
            if wp.stopping:
                code = await wp.proc.wait()
            else:
                try:
                    code = await asyncio.wait_for(wp.proc.wait(), CHANNEL_GRACE)
                except TimeoutError:
                    log.error("worker %s: %s but its process %s still runs; killing it", wp.name, why, wp.pid)
                    self._signal(wp, signal.SIGKILL)
                    code = await wp.proc.wait()
        finally:
            self._close_channel(wp)
            await self._kill_groups(wp)
            try:
                await asyncio.wait_for(pump, 5)
            except TimeoutError:
                pass  # something it started still holds the pipe: its last output is not logged
            except Exception as exc:
                log.error("worker %s: copying its output failed: %r", wp.name, exc)
        return code

    def _close_channel(self, wp: WorkerProc) -> None:
        if wp.writer is not None:
            with contextlib.suppress(Exception):
                wp.writer.close()
        wp.writer = None

    async def _ensure_gone(self, wp: WorkerProc) -> int:
        """Kill the worker's process (and its job groups) if it still runs; its exit code."""
        self._close_channel(wp)
        code = -int(signal.SIGKILL)
        if wp.proc is not None:
            self._signal(wp, signal.SIGKILL)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    code = await wp.proc.wait()
        with contextlib.suppress(Exception):
            await self._kill_groups(wp)
        return code

    async def _kill_groups(self, wp: WorkerProc) -> None:
        """Kill the process groups the worker's jobs still had (it is gone: nobody else will)."""
        if not wp.groups:
            return
        running = procgroup.live(wp.groups)
        groups = {pgid: task_id for pgid, task_id in wp.groups.items() if pgid in running}
        wp.groups.clear()
        procgroup.kill_groups(groups)
        left = await procgroup.wait_gone(groups)
        for pgid, task_id in sorted(groups.items()):
            # A warm job process is reported for its life, without a task (after.jobpool).
            whose = f"task {task_id}'s job" if task_id else "a job process"
            log.warning("worker %s: killed the process group %d of %s", wp.name, pgid, whose)
            self._log_line(wp, f"killed the process group {pgid} of {whose} (its worker is gone)")
        if left:
            log.error("worker %s: job process groups %s still alive after SIGKILL", wp.name, left)

    async def _hand_back(self, wp: WorkerProc, lost: builtins.list[dict[str, Any]]) -> None:
        """Give the tasks of a worker that is gone back to the scheduler (retry or ``err``).

        A failure here is logged, not raised: those tasks are then recovered when their
        leases end, and the worker is restarted all the same.
        """
        if not lost:
            return
        try:
            await self.on_lost(wp.name, lost)
        except Exception:
            ids = ", ".join(str(d.get("_id")) for d in lost[:10])
            log.exception("worker %s: handing back %d task(s) failed (%s); they are recovered when their leases end", wp.name, len(lost), ids)

    def _changed(self, wp: WorkerProc) -> None:
        try:
            self.on_change(wp.name)
        except Exception:
            log.exception("worker %s: a change observer failed", wp.name)

    def down(self) -> builtins.list[tuple[str, str]]:
        """Workers that should run and do not: (name, why), for /health.

        A worker's first start (until it said hello, up to ``FIRST_START_GRACE`` s) is not
        "down": a daemon that just started is not unhealthy for it.
        """
        now = time.monotonic()
        out = []
        for w in sorted(self.workers.values(), key=lambda w: w.name):
            if w.stopping or w.state == "stopped" or w.running:
                continue
            if w.state == "starting" and w.restarts == 0 and now - w.spawned_at < FIRST_START_GRACE:
                continue
            out.append((w.name, f"{w.state}: {w.last_error or 'not running'}"))
        return out

    def loop_reasons(self) -> builtins.list[str]:
        """The failing loops the workers reported, one /health line each."""
        return [f"worker {name}: {loop} loop failing: {cause} ({message})" for name, loop, cause, message in self.failing_loops()]

    def failing_loops(self) -> builtins.list[tuple[str, str, str, str]]:
        """(worker, loop, cause, message) of every failing loop the workers reported."""
        return [(w.name, loop, *why) for w in sorted(self.workers.values(), key=lambda w: w.name) for loop, why in w.failing.items()]

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


def _restarting(wp: WorkerProc) -> bool:
    """Whether ``wp`` is between two processes: lost and waiting out its backoff, or its
    replacement starting (not its first start)."""
    return wp.state in ("backoff", "crashloop") or (wp.state == "starting" and wp.restarts > 0)


class _SpawnFailed(Exception):
    """The worker process could not be started (its cause says why): retrying cannot help."""


def _exit_reason(code: int) -> str:
    """``exited with 3`` or ``killed by SIGKILL`` (a signal Python has no name for is a number)."""
    if code >= 0:
        return f"exited with {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _job_name(doc: dict[str, Any] | None) -> str:
    """The job a claimed task names, whatever the shape of its ``job`` (a poison document's)."""
    job = (doc or {}).get("job")
    if isinstance(job, dict):
        name = job.get("name")
        return name if isinstance(name, str) else ""
    return job if isinstance(job, str) else ""
