"""Runs claimed tasks for one named worker and writes their outcome into CouchDB.

The same :class:`Runner` serves a worker process (:mod:`after.worker`) and the
in-process scheduler (:mod:`after.scheduler`). For each task it is handed (already
claimed by a scheduler: status ``schedule`` with a lease) it:

1. writes ``scheduled`` with the revision of the claim, counting an attempt and
   extending the lease to the end of the job's timeout. A conflict here means the claim
   is no longer ours (a cancel, or a lease taken over): the job does not start;
2. runs the job (coroutine on this loop, or a plain function in a thread) under its
   timeout, cancellable;
3. writes ``done`` (``result``), ``reschedule`` (a retry, or the next cron occurrence),
   ``err`` (``error`` with reason, type, message, traceback) or ``canceled``.

Every write is revision-checked. When a write conflicts, the document is read again
and our write is re-applied only if the lease on it is still ours (same lease id):
a late ``done`` from a worker whose lease was taken is rejected, never silently applied.
Writes of many tasks are batched into ``_bulk_docs`` requests by :class:`BulkWriter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from after import calendar, model, occurrences, quorum, timing, triage
from after.bulkwriter import BulkWriter
from after.config import Settings
from after.errors import AfterError, Conflict, InvalidInput, NotFound, Uncertain
from after.jobpool import JobPool
from after.jobprocess import IsolatedJobError, JobCrashed, JobOverMemory, Limits
from after.jobs import JobFailed, JobFunc, TaskContext, is_async, isolated
from after.store import Store

log = logging.getLogger("after.runner")


def utcnow() -> datetime:
    return datetime.now(UTC)


def error_info(reason: str, exc: BaseException | None = None, message: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"reason": reason}
    if exc is not None:
        info["type"] = type(exc).__name__
        info["message"] = message or str(exc) or type(exc).__name__
        info["traceback"] = "".join(traceback.format_exception(exc))[-8000:]
    else:
        info["type"] = reason
        info["message"] = message or reason
    return info


def _job_name(doc: Mapping[str, Any]) -> str:
    """The job a task names, for the ``finished`` message (metrics per worker and job)."""
    job = doc.get("job")
    name = job.get("name") if isinstance(job, Mapping) else None
    return name if isinstance(name, str) else ""


#: A task whose lease has less than its timeout plus this left when it starts gets its
#: lease renewed (a revision-checked write) first.
SAFE_LEASE = 5.0

#: A task accepted ahead of its due time sleeps until this long before it, then sleeps
#: the rest: see :meth:`Runner._sleep_until`.
WAKE_AHEAD = 0.05


class UnknownJob(Exception):
    """The task names a job this worker does not have."""


Notify = Callable[[dict[str, Any]], None]


def _landed(ours: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
    """Whether ``fresh`` (read after our write of ``ours`` conflicted) is our own write.

    A write whose request reached CouchDB just as the connection broke is applied, but
    we see an error; the writer holds it and sends it again with the old revision, which
    now conflicts with itself. It is ours if the status, the whole lease (id, until,
    worker, pid) and the last history entry (status, time, writer) are all the same.
    """
    history, fresh_history = ours.get("history") or [], fresh.get("history") or []
    return (
        bool(history)
        and bool(fresh_history)
        and fresh.get("status") == ours.get("status")
        and fresh_history[-1] == history[-1]
        and fresh.get("lease") == ours.get("lease")
    )


class Runner:
    """Executes tasks for worker ``name`` with at most ``concurrency`` at once."""

    def __init__(
        self,
        store: Store,
        *,
        name: str,
        registry: Mapping[str, JobFunc],
        settings: Settings,
        concurrency: int = 4,
        notify: Notify | None = None,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utcnow,
        modules: list[str] | None = None,
        isolate: bool = True,
    ) -> None:
        self.store = store
        self.name = name
        self.registry = dict(registry)
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.notify = notify or (lambda msg: None)
        self.rand = rand
        self.clock = clock
        self.writer = BulkWriter(store)
        # Its writes failing (held through an outage, or refused by _security): the daemon hears
        # of it for /health, once per cause, and again when they land.
        self.writer.loops.on_change.append(lambda st: self.notify({"op": "loop", "loop": st.name, "cause": st.cause, "message": st.message, "since": st.since}))
        self._sem = asyncio.Semaphore(self.concurrency)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"job-{name}")
        self.running: dict[str, asyncio.Task[None]] = {}
        #: Tasks whose job is over and whose outcome is being written (too late to cancel).
        self._finishing: set[str] = set()
        #: The next claim of a task handed over while its previous run was finishing.
        self._after: dict[str, dict[str, Any]] = {}
        self._cancel_asked: set[str] = set()
        self._interrupting = False
        self.tasks_run = 0
        self.last_error: str | None = None
        self.by = f"worker:{name}"
        #: Job modules to import in isolated job processes (the worker's --jobs).
        self.modules = list(modules or [])
        #: False runs every job inline (the in-process scheduler: its functions are not importable by name).
        self.isolate = isolate
        #: The warm processes isolated jobs run in; none start until one is needed (or prestarted).
        self.jobpool = JobPool(
            Limits(
                size=settings.workers_pool_size or self.concurrency,
                max_tasks=settings.workers_max_tasks_per_process,
                max_memory_mb=settings.workers_max_memory_mb,
            ),
            {"modules": self.modules, "config_jobs": settings.jobs},
            name=name,
        )

    def prestart(self) -> None:
        """Start one job process now if any of this worker's jobs runs isolated, so the
        first run finds it warm."""
        if self.isolate and any(isolated(f) for f in self.registry.values()):
            self.jobpool.prestart(1)

    # -- control -------------------------------------------------------------------------

    def submit(self, doc: dict[str, Any]) -> None:
        """Run a claimed task (status ``schedule``, with a lease) as soon as a slot is free."""
        task_id = doc["_id"]
        if task_id in self.running:
            if task_id in self._finishing:
                # Its previous run's outcome (a retry, the next cron run) has just been written
                # and the scheduler already claimed the next one: run it once this one is over.
                self._after[task_id] = doc
            return
        self.running[task_id] = asyncio.create_task(self._execute(doc), name=f"task {task_id}")

    def cancel(self, task_id: str) -> bool:
        """Stop a running task; it is acknowledged ``canceled``. False if not running here."""
        t = self.running.get(task_id)
        if t is None:
            return False
        if task_id in self._finishing or task_id in self._cancel_asked:
            # The job is over and its outcome is being written, or the cancel was asked
            # already: cancelling again would interrupt the write acknowledging it.
            return True
        self._cancel_asked.add(task_id)
        t.cancel()
        return True

    async def drain(self, timeout: float) -> None:
        """Graceful stop: wait up to ``timeout`` s for running jobs, then interrupt them.

        Interrupted tasks follow their retry policy (``reschedule`` if attempts are left,
        else ``err`` with reason "interrupted").
        """
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=timeout)
        if self.running:
            self._interrupting = True
            for t in list(self.running.values()):
                t.cancel()
            await asyncio.wait(list(self.running.values()), timeout=30)
        await self.writer.stop()
        await self.jobpool.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one task ---------------------------------------------------------------------------

    def _limit(self) -> int:
        return self.settings.scheduler_history_limit

    async def _execute(self, claimed: dict[str, Any]) -> None:
        task_id = claimed["_id"]
        current: dict[str, Any] = claimed
        try:
            # The scheduler hands over normalized documents; a document of any other shape
            # fails here, contained to its task (below), never in the middle of a run.
            claimed = current = model.normalized(claimed)
            # A task due now takes a slot first: it is accepted only when this worker can
            # start it, so one queued behind busy slots is still just claimed (if the worker
            # dies, it goes back to waiting, no attempt spent). A task claimed ahead of its
            # due time is accepted and prepared at once, without a slot, and takes one at
            # its time: with as little as possible left to do then (a thousand tasks due at
            # one second all wake at once; each one's start waits for the others' work), and
            # without holding a slot while it sleeps (tasks due together beyond the free
            # slots would otherwise be accepted, a round trip each, only as others finish).
            due = timing.due_at(claimed)
            if due is not None and due > self.clock():
                accepted = await self._accept(claimed)
                if accepted is None:
                    return
                current = accepted
                ctx = self._prepare(accepted)
                await self._sleep_until(due)
                async with self._sem:
                    # One line per start and end in the worker's log; the start's is written
                    # once the job has started (call_soon), not before it.
                    asyncio.get_running_loop().call_soon(log.info, "task %s: job %s started", task_id, _job_name(current))
                    ran = await self._run(ctx)
            else:
                async with self._sem:
                    accepted = await self._accept(claimed)
                    if accepted is None:
                        return
                    current = accepted
                    asyncio.get_running_loop().call_soon(log.info, "task %s: job %s started", task_id, _job_name(current))
                    ran = await self._run(self._prepare(accepted))
            # The slot is free again (it bounds running jobs, not writes): write the outcome.
            if ran is not None:
                self._finishing.add(task_id)
                base, final = ran
                await self._write_final(base, final)
                self._finished(base, final["status"])
                with contextlib.suppress(AfterError):  # a log line never costs the task
                    took = (timing.parse_date(final.get("finished")) - timing.parse_date(base.get("started"))).total_seconds()
                    why = (final.get("error") or {}).get("reason")
                    log.info("task %s: job %s ended %s%s in %.3fs", task_id, _job_name(base), final["status"], f" ({why})" if why else "", took)
        except asyncio.CancelledError:
            # Cancelled before it started (waiting for its time or a slot): acknowledge.
            if task_id in self._cancel_asked:
                await self._finish_simple(current, model.CANCELED, None)
            elif self._interrupting:
                await self._finish_simple(current, model.WAITING, None)
        except Exception as exc:
            # Contained to this task: ended err (internal) with what failed; the worker and
            # its other tasks go on.
            log.exception("task %s: unexpected failure in the runner; ending it err (internal)", task_id)
            await self._contain(current, exc)
        finally:
            self.running.pop(task_id, None)
            self._cancel_asked.discard(task_id)
            self._finishing.discard(task_id)
            queued = self._after.pop(task_id, None)
            if queued is not None:
                self.submit(queued)

    async def _contain(self, doc: dict[str, Any], exc: BaseException) -> None:
        """End a task this code failed on ``err`` (reason ``internal``), if it is still ours."""
        try:
            out = triage.ended_internal(doc, exc, where="worker", by=self.by, now=self.clock(), limit=self._limit())
            await self._write_final(doc, out)
            self._finished(doc, model.ERR, contained=True)
        except Exception:
            # The scheduler recovers it when its lease ends (or ends it, if it fails there too):
            # it must stop counting it as running here for that.
            log.exception("task %s: cannot end it err (internal); its lease will end", doc.get("_id"))
            self.notify({"op": "dropped", "id": doc.get("_id")})

    async def _sleep_until(self, due: datetime) -> None:
        """Return at ``due`` (at once if it is past), as close to it as the host allows.

        One long sleep wakes late where an idle CPU sleeps deeply (a virtual machine,
        power saving): on the 2-core VM the benchmarks ran on, a bare script's 1.5 s
        ``asyncio.sleep`` came back 11-38 ms late (1,000 at once: 25-38 ms). So the
        long part ends ``WAKE_AHEAD`` early, and the last, short sleep starts with the
        CPU awake: the script's 1,000 then woke 4-6 ms late (p50), and W1's first job
        6-9 ms instead of 16-23 ms (docs/benchmarks.md). The early wake-up costs one
        extra step per task, done before the due time.
        """
        delay = (due - self.clock()).total_seconds()
        if delay > WAKE_AHEAD:
            await asyncio.sleep(delay - WAKE_AHEAD)
            delay = (due - self.clock()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _finish_simple(self, doc: dict[str, Any], status: str, error: dict[str, Any] | None) -> None:
        out = dict(doc)
        out.pop("lease", None)
        out["error"] = error
        model.set_status(out, status, self.by, self.clock(), limit=self._limit())
        await self._write_final(doc, out)
        self._finished(doc, status)

    def _finished(self, doc: Mapping[str, Any], status: Any, *, contained: bool = False) -> None:
        """Tell the daemon this claim is over (its lease id says which claim: the next one of
        the same task may already be on its way); ``contained``: ended err (internal)."""
        lease = (doc.get("lease") or {}).get("id")
        msg = {"op": "finished", "id": doc["_id"], "status": status, "job": _job_name(doc), "lease": lease}
        if contained:
            msg["contained"] = True
        self.notify(msg)

    def _timeout(self, doc: Mapping[str, Any]) -> float:
        return float(doc.get("timeout") or self.settings.scheduler_default_timeout)

    async def _accept(self, claimed: dict[str, Any]) -> dict[str, Any] | None:
        """Write ``scheduled`` for a task handed to this worker; None if it is not ours.

        Written as soon as the worker has the task — for a task claimed ahead, before its
        due time — so that the job can start at its due time with no round trip left,
        and yet nothing ever starts before the task is recorded as this worker's: a
        worker that dies after this write leaves a task that is retried or ended by its
        retry policy, never silently run again. ``attempts`` counts these acceptances.
        """
        now = self.clock()
        expires = claimed.get("expires")
        if expires and timing.parse_date(expires, field="expires") <= now:
            await self._finish_simple(claimed, model.ERR, error_info("expired", message="expired before it could start"))
            return None
        start = max(now, timing.due_at(claimed) or now)
        doc = dict(claimed)
        doc["attempts"] = int(doc.get("attempts") or 0) + 1
        # Never reset: the branch that started the task more often wins a conflict.
        doc["starts"] = quorum.starts(doc) + 1
        lease = dict(claimed.get("lease") or {})
        lease["until"] = timing.fmt(start + timedelta(seconds=self._timeout(doc) + self.settings.scheduler_lease_seconds))
        lease.update(self._lease_owner())
        doc["lease"] = lease
        model.set_status(doc, model.SCHEDULED, self.by, now, limit=self._limit())
        try:
            return await self.writer.write(doc)
        except Uncertain as exc:
            await self._release_uncertain(claimed, exc.doc)
            return None
        except Conflict:
            fresh = await self._ours_after_conflict(doc, claimed)
            if fresh is not None and self.store.replicated:
                # Our acceptance was applied although we saw an error, but on a cluster that
                # says nothing of how many replicas took it: it is not certain, so no start.
                await self._release_uncertain(claimed, fresh)
                return None
            return fresh

    def _lease_owner(self) -> dict[str, Any]:
        """What an accepted task's lease says of who runs it."""
        return {"worker": self.name, "pid": os.getpid()}

    async def _release_uncertain(self, claimed: Mapping[str, Any], written: Mapping[str, Any]) -> None:
        """Our acceptance reached fewer CouchDB replicas than the quorum: do not start the job.

        A competing edit (a cancel, a resolution) may hold the majority. The acceptance is
        taken back on its own branch (the claim as it was: ``starts`` not counted), so that
        leaf ranks below any branch that moved on; alone, it is a claim whose lease ends and
        is recovered, never a run.
        """
        log.warning("task %s: acceptance taken by fewer CouchDB replicas than the quorum; not started", claimed["_id"])
        back = dict(claimed)
        back["_rev"] = written.get("_rev")
        model.set_status(back, model.SCHEDULE, self.by, self.clock(), limit=self._limit(), reason="acceptance uncertain (202): not started")
        with contextlib.suppress(AfterError):
            await self.writer.write(back)
        self._finished(claimed, model.SCHEDULE)

    def _prepare(self, accepted: dict[str, Any]) -> TaskContext:
        return TaskContext(task=dict(accepted), worker=self.name, settings=self._job_settings(), log_limit=self.settings.scheduler_log_limit)

    async def _run(self, ctx: TaskContext) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Run an accepted task's job under its timeout; return (its doc, the outcome doc) to write.

        The job runs in this task (cancelling the task stops the job, and ``_outcome``
        turns that into the outcome), so it starts the moment this task wakes. Until the
        job has started, as little as possible is done: when a thousand tasks are due
        at one second they all wake at once, and each start waits for the work before it.
        """
        doc = cast(dict[str, Any], ctx.task)  # _prepare made it this worker's own dict
        task_id = doc["_id"]
        now = self.clock()
        timeout = self._timeout(doc)
        until = timing.parse_date((doc.get("lease") or {}).get("until"), field="lease.until")
        if (until - now).total_seconds() < timeout + SAFE_LEASE:
            # Its lease is short of its timeout (the store was slow to answer): renew it
            # before starting (and check, by revision, that the task is still ours).
            lease = dict(doc["lease"])
            lease["until"] = timing.fmt(now + timedelta(seconds=timeout + self.settings.scheduler_lease_seconds))
            doc["lease"] = lease
            try:
                doc = ctx.task = await self.writer.write(doc)
            except Uncertain as exc:
                await self._release_uncertain(doc, exc.doc)
                return None
            except Conflict:
                fresh = await self._ours_after_conflict(doc, doc)
                if fresh is None:
                    return None
                doc = ctx.task = fresh
        doc["started"] = timing.fmt(now)
        # Progress and log lines are flushed once a second, from the first second on.
        flusher: asyncio.Task[None] | None = None

        def start_flusher() -> None:
            nonlocal flusher
            flusher = asyncio.create_task(self._flush_progress(ctx))

        later = asyncio.get_running_loop().call_later(1.0, start_flusher)
        try:
            outcome, result, error = await self._outcome(ctx, doc.get("job") or {}, timeout, task_id)
        finally:
            later.cancel()
            if flusher is not None:
                flusher.cancel()
        # Let every job due at this moment start before anyone's bookkeeping.
        await asyncio.sleep(0)
        due = timing.eligible_at(ctx.task) or now
        lease_id = (ctx.task.get("lease") or {}).get("id")
        self.notify({"op": "started", "id": task_id, "job": _job_name(ctx.task), "lag": max(0.0, (now - due).total_seconds()), "lease": lease_id})
        self.tasks_run += 1
        if error:
            self.last_error = f"{task_id}: {error.get('message')}"
        return dict(ctx.task), self._final_doc(ctx.task, ctx, outcome, result, error, started=now)

    async def _outcome(self, ctx: TaskContext, job: Mapping[str, Any], timeout: float, task_id: str) -> tuple[str, Any, dict[str, Any] | None]:
        """Run the job under its timeout; what happened as (outcome, result, error)."""
        try:
            func = self._job(job.get("name", ""))
            if func is None:
                raise UnknownJob(f"unknown job {job.get('name')!r} for worker {self.name!r}")
            # asyncio.timeout, not wait_for: the job runs in this task, at once, rather than
            # in a new task queued behind every other task woken at the same moment.
            async with asyncio.timeout(timeout):
                result = await self._call(func, ctx, job)
            return "done", result, None
        except TimeoutError as exc:
            return "fail", None, error_info("timeout", exc, f"timeout: the job ran longer than {timeout:g}s")
        except asyncio.CancelledError:
            return self._cancelled(task_id)
        except UnknownJob as exc:
            return "fail", None, error_info("unknown_job", exc)
        except IsolatedJobError as exc:
            return "fail", exc.result, exc.error
        except JobOverMemory as exc:
            return "fail", None, error_info("memory", exc)
        except JobCrashed as exc:
            return "fail", None, error_info("crashed", exc)
        except JobFailed as exc:
            return "fail", exc.result, error_info("failed", exc)
        except Exception as exc:
            return "fail", None, error_info("exception", exc)

    def _cancelled(self, task_id: str) -> tuple[str, Any, dict[str, Any] | None]:
        """The outcome of a job whose task was cancelled: a cancel we asked for, or a
        shutdown's interruption (anything else is the end of this task: re-raised)."""
        if task_id not in self._cancel_asked and not self._interrupting:
            raise asyncio.CancelledError
        # A cancel we asked for: it is this task's outcome, not the end of this task.
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        if task_id in self._cancel_asked:
            return "canceled", None, None
        return "fail", None, error_info("interrupted", message="interrupted by a shutdown")

    def _job(self, name: str) -> JobFunc | None:
        return self.registry.get(name)

    async def _call(self, func: JobFunc, ctx: TaskContext, job: Mapping[str, Any]) -> Any:
        args = list(job.get("arguments") or [])
        kwargs = dict(job.get("kwargs") or {})
        if self.isolate and isolated(func):
            return await self._call_isolated(ctx, job)
        if is_async(func):
            return await func(ctx, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(func, ctx, *args, **kwargs))

    async def _call_isolated(self, ctx: TaskContext, job: Mapping[str, Any]) -> Any:
        """Run the job in one of this worker's warm job processes (:mod:`after.jobpool`)."""
        request = {
            "job": dict(job),
            "task": dict(ctx.task),
            "worker": self.name,
            "settings": self._job_settings(),
            "log_limit": self.settings.scheduler_log_limit,
        }

        def relay(msg: dict[str, Any]) -> None:
            if "progress" in msg:
                value = msg["progress"] or {}
                ctx.progress(value.get("done", 0), value.get("total"))
            else:
                ctx.log(msg["log"])

        return await self.jobpool.run(ctx.id, request, relay)

    def _job_settings(self) -> dict[str, Any]:
        s = self.settings
        return {
            "couchdb_url": self.store.url,
            "couchdb_database": self.store.name,
            "couchdb_user": s.couchdb_user,
            "couchdb_password": s.couchdb_password,
        }

    async def _flush_progress(self, ctx: TaskContext) -> None:
        """Write progress and log lines at most once a second while the job runs."""
        refused = False
        while True:
            await asyncio.sleep(1.0)
            if not ctx.dirty:
                continue
            ctx.dirty = False
            doc = dict(ctx.task)
            doc["progress"] = ctx.progress_value
            doc["log"] = list(ctx.log_lines)
            try:
                ctx.task = await self.writer.write(doc)
            except Uncertain as exc:
                ctx.task = exc.doc  # on our branch all the same; the next write follows it
            except Conflict:
                try:
                    fresh = await self.store.get(doc["_id"])
                except AfterError:
                    ctx.dirty = True
                    continue
                if (fresh.get("lease") or {}).get("id") == (doc.get("lease") or {}).get("id"):
                    ctx.task = fresh
                    ctx.dirty = True
            except AfterError as exc:
                # Refused (validate_doc_update) or failed: progress is not worth the task; the
                # flusher goes on, and the outcome is written as usual.
                if not refused:
                    log.warning("task %s: progress not written: %s", doc["_id"], exc.message)
                refused = True
                ctx.dirty = True

    def _final_doc(
        self, cur: Mapping[str, Any], ctx: TaskContext, outcome: str, result: Any, error: dict[str, Any] | None, *, started: datetime
    ) -> dict[str, Any]:
        now = self.clock()
        doc = dict(cur)
        doc.pop("lease", None)
        doc["finished"] = timing.fmt(now)
        if ctx.progress_value is not None:
            doc["progress"] = ctx.progress_value
        if ctx.log_lines:
            doc["log"] = list(ctx.log_lines)
        doc["result"] = result
        doc["error"] = error
        if outcome == "canceled":
            return model.set_status(doc, model.CANCELED, self.by, now, limit=self._limit())
        status = model.DONE if outcome == "done" else model.ERR
        if doc.get("cron"):
            runs = list(doc.get("runs") or [])
            run = {"date": doc.get("date"), "started": timing.fmt(started), "finished": doc["finished"], "status": status, "error": error}
            runs.append({**run, **calendar.run_fields(doc)})
            doc["runs"] = runs[-self.settings.scheduler_runs_limit :]
        if outcome == "fail" and timing.can_retry(doc) and error and error.get("reason") != "unknown_job" and error.get("retryable") is not False:
            delay = timing.retry_delay(doc.get("retry") or {}, int(doc.get("attempts") or 1), rand=self.rand)
            doc["date"] = timing.fmt(now + timedelta(seconds=delay))
            return model.set_status(doc, model.RESCHEDULE, self.by, now, limit=self._limit(), reason=f"retry in {delay:.1f}s")
        try:
            nxt = timing.next_after_run(doc, started=started, finished=now) if doc.get("cron") else None
        except InvalidInput as exc:
            # No run left (the zone's rules changed so that every match is a time that
            # does not exist): this run's outcome is kept in ``runs``, the task ends.
            return triage.ended_invalid(doc, exc.message, exc.field, by=self.by, now=now, limit=self._limit())
        if nxt is not None:
            doc.update(calendar.place(doc, nxt).fields())
            doc["attempts"] = 0
            return model.set_status(doc, model.RESCHEDULE, self.by, now, limit=self._limit(), reason=f"cron run {status}")
        return model.set_status(doc, status, self.by, now, limit=self._limit())

    async def _write_final(self, cur: Mapping[str, Any], final: dict[str, Any]) -> None:
        lease_id = (cur.get("lease") or {}).get("id")
        doc = final
        for _ in range(10):
            # A cancel that acknowledges a replace (overlap ``replace``): the replaced run instead.
            doc = occurrences.settle(doc, by=self.by, now=self.clock(), limit=self._limit(), runs_limit=self.settings.scheduler_runs_limit)
            try:
                await self.writer.write(doc)
                return
            except Uncertain:
                # Written, on fewer replicas than the quorum (this worker is cut off from most of
                # the cluster). It stays a leaf; if the majority side recovered the task meanwhile,
                # the conflict's resolution decides (after.quorum.resolve) and keeps both histories.
                log.warning("task %s: outcome %s taken by fewer CouchDB replicas than the quorum", doc["_id"], final.get("status"))
                return
            except Conflict:
                try:
                    fresh = await self.store.get(doc["_id"])
                except NotFound:
                    log.warning("task %s was deleted while it ran; its outcome is dropped", doc["_id"])
                    return
                if _landed(doc, fresh):
                    return  # written before the store went away; only the answer was lost
                fresh_lease = (fresh.get("lease") or {}).get("id")
                if fresh_lease != lease_id or fresh.get("status") not in (model.SCHEDULE, model.SCHEDULED, model.CANCEL):
                    log.warning(
                        "task %s: lease taken over (now %s); our outcome %s is rejected",
                        doc["_id"],
                        fresh.get("status"),
                        final.get("status"),
                    )
                    return
                merged = dict(fresh)
                for key in ("status", "result", "error", "date", "attempts", "finished", "progress", "log", "runs", "updated", "started"):
                    if key in final:
                        merged[key] = final[key]
                merged.pop("lease", None)
                # History: what others wrote meanwhile (a client's cancel) stays; our own
                # new entries go after it.
                merged["history"] = model.merge_history(fresh.get("history"), cur.get("history"), final.get("history"), limit=self._limit())
                if fresh.get("status") == model.CANCEL and final.get("status") in (model.RESCHEDULE, model.WAITING):
                    # Canceled while this run ended: the run is over, so the cancel is
                    # acknowledged instead of the next cron run or retry it would have
                    # scheduled (which would silently drop the client's intent).
                    model.set_status(merged, model.CANCELED, self.by, self.clock(), limit=self._limit())
                doc = merged

    async def _ours_after_conflict(self, ours: dict[str, Any], claimed: Mapping[str, Any]) -> dict[str, Any] | None:
        """Our write of ``ours`` (accepting or renewing ``claimed``) conflicted: the stored
        task if it is that very write (CouchDB applied it, the answer was lost and the
        held retry met our own revision), else None: the claim is lost (see :meth:`_lost_claim`)."""
        try:
            fresh = await self.store.get(ours["_id"])
        except NotFound:
            return None
        if _landed(ours, fresh):
            return fresh
        await self._lost_claim(claimed, fresh)
        return None

    async def _lost_claim(self, claimed: Mapping[str, Any], fresh: dict[str, Any]) -> None:
        """Our ``scheduled`` write conflicted: acknowledge a cancel, otherwise let it go."""
        same_lease = (fresh.get("lease") or {}).get("id") == (claimed.get("lease") or {}).get("id")
        if fresh.get("status") == model.CANCEL and same_lease:
            await self._finish_simple(fresh, model.CANCELED, None)
            return
        log.info("task %s: claim no longer ours (status %s); not started", claimed["_id"], fresh.get("status"))
        self._finished(claimed, fresh.get("status"))
