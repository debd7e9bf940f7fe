"""The remote worker's loop: connect, long-poll, accept, run each job at its time with
heartbeats, finish; reconnect when the session is gone; stop gracefully.

Every rule of docs/worker-protocol.md that a worker must keep is kept here: a job starts
only after its accept is answered, and at its ``start_in`` (a task claimed ahead starts
on time); a task redelivered with a lease it already has is the same task; a 409 drops
the task (its job is cancelled); a lost session drops all of its tasks, since the daemon
has already taken them back; a cancel (from a heartbeat's answer or a poll's ``cancel``
list) stops the job and is acknowledged ``canceled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from after.client.finisher import Finisher
from after.client.jobs import Context, JobFunc, failure, is_async
from after.client.wire import BACKOFF_MAX, CallError, Refused, SessionGone, Stale, Transient, Wire

log = logging.getLogger("after.client")

CLIENT = "after.client/1"
#: Progress and log lines reach the daemon at most this often (as a local job's do).
REPORT_EVERY = 1.0


class _Task:
    """One delivered task, from its accept to its finish."""

    def __init__(self, delivery: Mapping[str, Any], session: str) -> None:
        self.id, self.lease = str(delivery["id"]), str(delivery["lease"])
        self.job: Mapping[str, Any] = delivery.get("job") or {}
        self.timeout = float(delivery.get("timeout") or 3600)
        self.session = session
        self.ctx = Context(delivery)
        #: Set to stop waiting for its start or for its job: a cancel, a drop, a shutdown.
        self.stop = asyncio.Event()
        self.cancel_asked = self.dropped = self.interrupted = self.beating = False

    @property
    def path(self) -> str:
        return f"/tasks/{quote(self.id, safe='')}"


class Worker:
    """A remote worker of After: ``Worker(url, name, token).run({"send_report": fn})``.

    ``concurrency`` is announced to the daemon, which sends no more tasks than that at
    once (plain functions run in a pool of as many threads). ``host`` is shown in the
    task's ``by`` (default: this host's name). ``ca_file`` verifies an https daemon
    signed by a private CA. ``shutdown_timeout``: how long a stop lets running jobs end.
    """

    def __init__(
        self,
        url: str,
        name: str,
        token: str,
        *,
        concurrency: int = 8,
        host: str | None = None,
        ca_file: str | None = None,
        poll_wait: float = 20.0,
        shutdown_timeout: float = 30.0,
        finish_window: float = 0.005,
    ) -> None:
        self.url, self.name, self.concurrency = url, name, concurrency
        self.host = host or socket.gethostname()
        self.poll_wait, self.shutdown_timeout = poll_wait, shutdown_timeout
        self._wire = Wire(url, name, token, ca_file=ca_file)
        self._finisher = Finisher(self._wire, window=finish_window)
        self.jobs: dict[str, JobFunc] = {}
        self.session: str | None = None
        self.heartbeat = 5.0
        self.tasks: dict[tuple[str, str], _Task] = {}
        self._work: set[asyncio.Task[Any]] = set()
        self._beats: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None

    # -- running and stopping -------------------------------------------------------------------

    def run(self, jobs: Mapping[str, JobFunc]) -> None:
        """Serve ``jobs`` until SIGTERM or SIGINT (a second one interrupts running jobs)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            await self.serve(jobs)

        asyncio.run(main())

    def stop(self) -> None:
        """Stop gracefully (from any thread): no more polls; running jobs get
        ``shutdown_timeout`` to end. Called again: interrupt them now."""
        if self._loop is None or self._stopping is None or self._hurry is None:
            return
        event = self._hurry if self._stopping.is_set() else self._stopping
        self._loop.call_soon_threadsafe(event.set)

    async def serve(self, jobs: Mapping[str, JobFunc]) -> None:
        """Serve ``jobs`` (name -> function) until :meth:`stop`; for asyncio programs."""
        self.jobs = dict(jobs)
        self._loop = asyncio.get_running_loop()
        self._stopping, self._hurry = asyncio.Event(), asyncio.Event()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="after-job")
        try:
            async with self._wire:
                while not self._stopping.is_set() and await self._connect():
                    await self._poll()
                await self._shutdown()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _within(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``event``; whether it is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        return event.is_set()

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, work: bool = True) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        if work:  # what a graceful stop waits for
            self._work.add(task)
            task.add_done_callback(self._work.discard)
        return task

    async def _shutdown(self) -> None:
        assert self._stopping is not None and self._hurry is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        if self._work:
            log.info("stopping: waiting for %d running task(s) (up to %gs)", len(self.tasks), self.shutdown_timeout)
        while self._work and loop.time() < deadline and not self._hurry.is_set():
            hurry = asyncio.ensure_future(self._hurry.wait())
            await asyncio.wait(self._work | {hurry}, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
            hurry.cancel()
        if self._work:
            log.warning("stopping: interrupting %d task(s)", len(self.tasks))
            for t in list(self.tasks.values()):
                t.interrupted = True
                self._halt(t)
            await asyncio.wait(set(self._work), timeout=30)
        for beat in list(self._beats):
            beat.cancel()
        if self.session is not None:
            with contextlib.suppress(CallError, Transient):
                await self._wire.call("/disconnect", {"session": self.session}, timeout=10, give_up_after=10)
                log.info("disconnected (session %s)", self.session)

    # -- the session ----------------------------------------------------------------------------

    async def _connect(self) -> bool:
        """A new session (retried while the daemon is unreachable or stopping); False if
        the worker was stopped meanwhile."""
        assert self._stopping is not None
        body = {"concurrency": self.concurrency, "host": self.host, "jobs": sorted(self.jobs), "pid": os.getpid(), "client": CLIENT}
        delay = 0.2
        while not self._stopping.is_set():
            try:
                answer = await self._wire.once("/connect", body)
            except (Transient, Stale) as exc:
                log.warning("connect: %s; again in %.1fs", exc, delay)
                if await self._within(self._stopping, delay):
                    return False
                delay = min(delay * 2, 5.0)
                continue
            self.session, self.heartbeat = str(answer["session"]), float(answer.get("heartbeat") or 5.0)
            self._wire.backoff_max = min(BACKOFF_MAX, self.heartbeat)
            log.info("connected to %s as %s (session %s, concurrency %d)", self.url, self.name, self.session, self.concurrency)
            return True
        return False

    async def _poll(self) -> None:
        """Long-poll until the worker stops or the session is gone."""
        assert self._stopping is not None and self.session is not None
        session = self.session
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            asked = loop.time()
            poll = asyncio.ensure_future(self._wire.call("/poll", {"session": session, "wait": self.poll_wait}, timeout=self.poll_wait + 15))
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not poll.done():
                poll.cancel()  # what it would have delivered goes back at the disconnect
                return
            try:
                answer = poll.result()
            except SessionGone as exc:
                self._lose(session, exc.message)
                return
            news = self._take(answer, session)
            if answer.get("stopping"):
                log.info("the daemon is stopping: polling again in %gs", self.heartbeat)
                await self._within(self._stopping, self.heartbeat)
            elif not news and answer.get("cancel") and loop.time() - asked < REPORT_EVERY / 10:
                # Answered at once with only cancels already being acted on (a daemon that
                # answers early for a pending cancel): do not spin.
                await self._within(self._stopping, REPORT_EVERY)

    def _lose(self, session: str, why: str) -> None:
        log.warning("session %s is gone (%s): its tasks are dropped; connecting again", session, why)
        self.session = None
        for t in [t for t in self.tasks.values() if t.session == session]:
            self._drop(t, "its session is gone")

    def _take(self, answer: Mapping[str, Any], session: str) -> bool:
        """Act on a poll's answer; whether it brought anything new."""
        news = False
        for task_id in answer.get("cancel") or []:
            for t in [t for t in self.tasks.values() if t.id == task_id]:
                news = self._cancel(t) or news
        accept: list[_Task] = []
        for delivery in answer.get("tasks") or []:
            key = (str(delivery["id"]), str(delivery["lease"]))
            if key in self.tasks:
                continue  # redelivered (our accept is under way)
            news = True
            t = self.tasks[key] = _Task(delivery, session)
            if t.job.get("name") in self.jobs:
                accept.append(t)
            else:
                self._spawn(self._discard(t))
        if accept:
            self._spawn(self._accept(accept))
        return news

    # -- one task -------------------------------------------------------------------------------

    def _forget(self, t: _Task) -> None:
        self.tasks.pop((t.id, t.lease), None)

    def _halt(self, t: _Task) -> None:
        t.ctx.cancelled.set()
        t.stop.set()

    def _cancel(self, t: _Task) -> bool:
        if t.cancel_asked or t.dropped:
            return False
        log.info("task %s: cancel asked", t.id)
        t.cancel_asked = True
        self._halt(t)
        return True

    def _drop(self, t: _Task, why: str) -> None:
        """The task is not this worker's any more: stop its job, report nothing."""
        if not t.dropped:
            log.info("task %s: dropped (%s)", t.id, why)
            t.dropped = True
            self._halt(t)
            self._forget(t)

    async def _discard(self, t: _Task) -> None:
        have = ", ".join(sorted(self.jobs)) or "none"
        message = f"unknown job {t.job.get('name')!r} for remote worker {self.name!r} (it has: {have})"
        await self._finisher.finish({"id": t.id, "lease": t.lease, "status": "discarded", "error": {"message": message}})
        self._forget(t)

    async def _accept(self, batch: list[_Task]) -> None:
        try:
            answer = await self._wire.call("/accept", {"tasks": [{"id": t.id, "lease": t.lease} for t in batch]}, timeout=90)
        except CallError as exc:
            log.error("accept refused (%s): %d task(s) dropped", exc, len(batch))
            for t in batch:
                self._drop(t, "accept refused")
            return
        received = asyncio.get_running_loop().time()
        for t, result in zip(batch, answer.get("results") or [], strict=False):
            if t.dropped:
                continue
            if not result.get("ok"):
                self._drop(t, f"not accepted: {result.get('message')}")
                continue
            self._spawn(self._run(t, received + float(result.get("start_in") or 0.0)))

    async def _run(self, t: _Task, start_at: float) -> None:
        loop = asyncio.get_running_loop()
        outcome: dict[str, Any] | None
        try:
            if not await self._within(t.stop, start_at - loop.time()):
                outcome = await self._execute(t)
            else:
                outcome = self._ended(t, None)
            if outcome is not None and not t.dropped:
                await self._finisher.finish({"id": t.id, "lease": t.lease, **outcome, **t.ctx.take()})
        except Exception:  # a bug here costs this task only; the daemon ends it by its lease
            log.exception("task %s: the client failed running it", t.id)
        finally:
            self._forget(t)

    def _call(self, fn: JobFunc, t: _Task) -> asyncio.Future[Any]:
        args, kwargs = list(t.job.get("arguments") or []), dict(t.job.get("kwargs") or {})
        if is_async(fn):

            async def call() -> Any:
                return await fn(t.ctx, *args, **kwargs)

            job: asyncio.Future[Any] = asyncio.ensure_future(call())
        else:
            job = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, t.ctx, *args, **kwargs))
        # Its exception is read by _ended, unless the job was cancelled, timed out or dropped.
        job.add_done_callback(lambda f: f.cancelled() or f.exception())
        return job

    async def _execute(self, t: _Task) -> dict[str, Any] | None:
        """Run the job under its timeout, with heartbeats; its finish report (None: dropped)."""
        loop = asyncio.get_running_loop()
        job = self._call(self.jobs[str(t.job.get("name"))], t)
        deadline = loop.time() + t.timeout
        last = loop.time()
        while not job.done():
            stop = asyncio.ensure_future(t.stop.wait())
            await asyncio.wait({job, stop}, timeout=min(REPORT_EVERY, max(0.0, deadline - loop.time())), return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            now = loop.time()
            if job.done():
                break
            if t.stop.is_set():
                job.cancel()
                if t.cancel_asked:  # let it end (an async job is cancelled; a thread sees the flag)
                    await asyncio.wait({job}, timeout=self.shutdown_timeout)
                return self._ended(t, None)
            if now >= deadline:
                t.ctx.cancelled.set()
                job.cancel()
                error = {"reason": "timeout", "type": "TimeoutError", "message": f"timeout: the job ran longer than {t.timeout:g}s"}
                return {"status": "failed", "error": error}
            if not t.beating and (now - last >= self.heartbeat or (t.ctx.dirty and now - last >= REPORT_EVERY)):
                last = now
                self._beats.add(beat := self._spawn(self._beat(t), work=False))
                beat.add_done_callback(self._beats.discard)
        return self._ended(t, job)

    def _ended(self, t: _Task, job: asyncio.Future[Any] | None) -> dict[str, Any] | None:
        """The report of a task whose job ended (or never started: ``job`` None)."""
        if t.dropped:
            return None
        if t.cancel_asked:
            return {"status": "canceled"}
        if t.interrupted:
            return {"status": "failed", "error": {"reason": "interrupted", "message": "the remote worker stopped before the job ended"}}
        assert job is not None
        if job.cancelled():
            return {"status": "failed", "error": {"reason": "exception", "type": "CancelledError", "message": "the job was cancelled"}}
        exc = job.exception()
        if exc is not None:
            return {"status": "failed", "error": failure(exc)}
        return {"status": "done", "result": job.result()}

    async def _beat(self, t: _Task) -> None:
        t.beating = True
        try:
            answer = await self._wire.once(t.path + "/heartbeat", {"lease": t.lease, **t.ctx.take()}, timeout=max(5.0, self.heartbeat))
        except Stale as exc:
            self._drop(t, exc.message)
            return
        except (Transient, Refused) as exc:
            log.warning("task %s: heartbeat: %s", t.id, exc)  # the next one may pass
            return
        finally:
            t.beating = False
        if answer.get("cancel"):
            self._cancel(t)
