"""Completion webhooks, the sending: claims deliveries in the task, POSTs them, records them.

Why apart from the tick and the workers: a receiver that hangs or fails must cost neither a
task's start nor a worker's slot. The daemon hands this module each batch of the ``_changes``
feed (a scheduler listener, synchronous and cheap: :func:`after.webhooks.pending` on each
document); everything else happens in its own asyncio tasks, through two bounded queues:

1. *claims*: the task is read again, and the deliveries it calls for are written into its
   ``deliveries`` (state ``sending``) with the revision read. A conflict means the task
   changed (a worker's write, another daemon's claim): read again, decide again. So one
   daemon delivers each outcome, whichever wrote it.
2. *sends*: ``notify.senders`` at once; each attempt times out after ``notify.timeout``;
   a connection error, a timeout, 5xx, 408 or 429 is retried after the backoff of
   :func:`after.webhooks.backoff`, up to ``notify.attempts``. The result (state
   ``delivered`` or ``failed``, HTTP status, attempts, time, error) is written into the
   delivery's record, again re-reading on conflict, and never into a task just claimed or
   accepted (:func:`after.webhooks.writable`).

A queue that is full drops the delivery with a logged warning (and counts it,
``after_webhook_deliveries_total{outcome="dropped"}``): memory stays bounded.

Deliveries claimed and not yet recorded are kept in ``<state dir>/webhooks.json`` (rewritten
within a second of a change, and at a clean stop) with the feed position last seen: a
restarted daemon sends them again, with the same delivery id (a receiver may deduplicate on
``X-After-Delivery``), and reads the feed from that position, so that outcomes written while
it stopped (its workers finish their jobs after its feed has stopped) are delivered too. A
daemon that crashes within that second, or never comes back, leaves its claims ``sending``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from after import timing, webhooks
from after.config import Settings
from after.errors import AfterError, Conflict, NotFound, Uncertain
from after.store import Store

log = logging.getLogger("after.notifier")

FILENAME = "webhooks.json"
#: How long a record waits for a task that stays claimed before it is given up (logged).
RECORD_PATIENCE = 600.0
#: Bytes of a receiver's answer read (and ignored).
ANSWER_BYTES = 65536
#: At start, the feed since the last run is read in pages of this many changes, at most
#: MAX_CATCH_UP changes (beyond, the older outcomes are not delivered: logged).
CATCH_UP_PAGE = 1000
MAX_CATCH_UP = 100_000


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    """One claimed delivery: the bytes to send, where, and for which task's record."""

    task: str
    id: str
    url: str
    body: str
    resumed: bool = False
    #: What the attempts came to (state, status, attempts, at, error), once they are over:
    #: a resumed job that has it is only recorded, never sent again.
    result: dict[str, Any] | None = None


class Notifier:
    """Completion webhooks of one daemon (see the module's docstring)."""

    def __init__(self, store: Store, settings: Settings, *, daemon_id: str, state_path: Path | None, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.settings = settings
        self.daemon_id = daemon_id
        self.clock = clock
        self.path = state_path / FILENAME if state_path is not None else None
        #: Deliveries by how they ended: delivered, failed, dropped (``/metrics``).
        self.counts: dict[str, int] = defaultdict(int)
        self._claims: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.notify_queue)
        self._claiming: set[str] = set()
        self._sends: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.notify_queue)
        self._inflight: dict[str, Job] = {}
        self._dirty = False
        self._tasks: list[asyncio.Task[None]] = []
        #: Claims and records under way: each waits (for a settled task, a free store) on its
        #: own, holding neither the claim queue nor a sender.
        self._side: set[asyncio.Task[None]] = set()
        self._io = asyncio.Semaphore(settings.notify_senders)
        self._session: aiohttp.ClientSession | None = None
        #: The feed position of the last batch seen: saved, so that the next start reads what
        #: changed after it (outcomes written while this daemon stopped, e.g. by its workers
        #: finishing their jobs after the scheduler's feed had stopped).
        self.seq: Any = None

    # -- the feed (synchronous, cheap) ----------------------------------------------------

    def observe(self, batch: Iterable[Mapping[str, Any]], seq: Any = None) -> None:
        """A scheduler listener: queue a claim for each task whose document calls for one."""
        if seq is not None:
            self.seq = seq
        now = self.clock()
        for change in batch:
            doc = change.get("doc")
            if not isinstance(doc, Mapping) or change.get("deleted"):
                continue
            try:
                due = webhooks.pending(doc, self.settings.notify_hooks, now=now, max_age=self.settings.notify_max_age)
            except Exception:
                log.exception("task %s: cannot tell which webhooks its outcome calls for", doc.get("_id"))
                continue
            task_id = doc.get("_id")
            if not due or not isinstance(task_id, str) or task_id in self._claiming:
                continue
            if self._claims.full() or len(self._claiming) >= self.settings.notify_queue:
                self._drop(task_id, len(due), "the claim queue is full")
                continue
            self._claiming.add(task_id)
            self._claims.put_nowait(task_id)

    def _drop(self, task_id: str, count: int, why: str) -> None:
        self.counts["dropped"] += count
        log.warning("task %s: %d webhook delivery(ies) dropped: %s (notify.queue = %d)", task_id, count, why, self.settings.notify_queue)

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Resume the deliveries of the checkpoint, then claim and send in the background."""
        if self.settings.notify_hooks and not self.settings.notify_secret:
            log.warning("notify.hooks are set but notify.secret is not: deliveries go unsigned (no %s header)", webhooks.SIGNATURE)
        self._session = aiohttp.ClientSession()
        jobs, since = self._load()
        for job in jobs:
            self._inflight[job.id] = job
            if job.result is not None:
                self._spawn(self._record_and_forget(job))
            elif not self._sends.full():
                self._sends.put_nowait(job)
        self._tasks = [asyncio.create_task(self._claimer(), name="webhook claims")]
        if since is not None:
            self._tasks.append(asyncio.create_task(self._catch_up(since), name="webhook catch-up"))
        self._tasks += [asyncio.create_task(self._sender(), name=f"webhook sender {i}") for i in range(self.settings.notify_senders)]
        self._tasks.append(asyncio.create_task(self._saver(), name="webhook checkpoint"))

    async def stop(self) -> None:
        """Stop sending; what is claimed and not recorded stays in the checkpoint."""
        every = [*self._tasks, *self._side]
        for t in every:
            t.cancel()
        for t in every:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._session is not None:  # started: a daemon that failed before leaves the last checkpoint as it was
            self._save()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- claims ----------------------------------------------------------------------------

    def _spawn(self, step: Coroutine[Any, Any, None]) -> None:
        t = asyncio.create_task(step)
        self._side.add(t)
        t.add_done_callback(self._side.discard)

    async def _claimer(self) -> None:
        while True:
            self._spawn(self._claim_and_forget(await self._claims.get()))

    async def _claim_and_forget(self, task_id: str) -> None:
        try:
            await self._claim(task_id)
        except Exception:
            log.exception("task %s: claiming its webhook deliveries failed", task_id)
        finally:
            self._claiming.discard(task_id)

    async def _claim(self, task_id: str) -> None:
        deadline = time.monotonic() + RECORD_PATIENCE
        while time.monotonic() < deadline:
            async with self._io:
                wait = await self._claim_once(task_id)
            if wait is None:
                return
            await asyncio.sleep(wait)  # holding no slot
        log.warning("task %s: its webhook deliveries were not claimed within %gs (the task stayed claimed)", task_id, RECORD_PATIENCE)

    async def _claim_once(self, task_id: str) -> float | None:
        """One try: None when it is over (claimed, nothing to claim, or dropped), else the
        seconds to wait before the next (0: at once, after a conflict)."""
        try:
            doc = await self.store.get(task_id)
        except NotFound:
            return None
        except AfterError as exc:
            log.warning("task %s: cannot read it to claim its webhook deliveries (%s); trying again", task_id, exc.message)
            return 2.0
        now = self.clock()
        due = webhooks.pending(doc, self.settings.notify_hooks, now=now, max_age=self.settings.notify_max_age)
        if not due:
            return None  # delivered, or claimed by another daemon
        if not webhooks.writable(doc, now):
            return 0.5
        if self._sends.maxsize - self._sends.qsize() < len(due):
            self._drop(task_id, len(due), "the send queue is full")
            return None
        out = webhooks.claimed(doc, due, daemon=self.daemon_id, now=now, keep=self.settings.notify_keep)
        try:
            await self.store.put(out)
        except Conflict:
            return 0.0
        except Uncertain:
            pass  # taken by fewer replicas than a cluster's quorum: ours unless a competing edit wins
        except AfterError as exc:
            log.warning("task %s: cannot claim its webhook deliveries (%s); trying again", task_id, exc.message)
            return 2.0
        for d in due:
            job = Job(task_id, d.id, d.url, webhooks.body(webhooks.payload(doc, d)).decode())
            self._inflight[d.id] = job
            self._sends.put_nowait(job)
        self._dirty = True
        return None

    # -- sends -----------------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            job = await self._sends.get()
            try:
                await self._deliver(job)
            except Exception:
                log.exception("task %s: webhook delivery %s failed unexpectedly", job.task, job.id)

    async def _deliver(self, job: Job) -> None:
        s = self.settings
        if job.resumed and not await self._still_sending(job):
            self._done(job)
            return
        status: int | None = None
        error: str | None = None
        attempt = 0
        for attempt in range(1, s.notify_attempts + 1):
            status, error = await self._post(job)
            if webhooks.verdict(status) != "retry" or attempt == s.notify_attempts:
                break
            await asyncio.sleep(webhooks.backoff(attempt, base=s.notify_backoff_base, cap=s.notify_backoff_max))
        state = "delivered" if webhooks.verdict(status) == "ok" else "failed"
        self.counts[state] += 1
        if state == "failed":
            log.warning("task %s: webhook %s failed after %d attempt(s): %s", job.task, job.url, attempt, error)
        else:
            log.info("task %s: webhook %s delivered (HTTP %s, %d attempt(s))", job.task, job.url, status, attempt)
        job.result = {"state": state, "status": status, "attempts": attempt, "at": timing.fmt(self.clock()), "error": error}
        self._dirty = True
        self._spawn(self._record_and_forget(job))  # the sender is free for the next delivery

    async def _record_and_forget(self, job: Job) -> None:
        try:
            if job.result is not None:
                await self._record(job, job.result)
        except Exception:
            log.exception("task %s: recording webhook delivery %s failed", job.task, job.id)
        self._done(job)

    def _done(self, job: Job) -> None:
        self._inflight.pop(job.id, None)
        self._dirty = True

    async def _post(self, job: Job) -> tuple[int | None, str | None]:
        """One attempt: the answer's status (None: no answer) and what went wrong."""
        assert self._session is not None
        data = job.body.encode()
        head = webhooks.headers(self.settings.notify_secret, data, job.id, int(time.time()))
        try:
            async with self._session.post(
                job.url, data=data, headers=head, timeout=aiohttp.ClientTimeout(total=self.settings.notify_timeout), allow_redirects=False
            ) as resp:
                await resp.content.read(ANSWER_BYTES)
                return resp.status, None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except TimeoutError:
            return None, f"timeout: no answer within {self.settings.notify_timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    async def _still_sending(self, job: Job) -> bool:
        """A resumed delivery: whether its record still says ``sending`` (a crash may have come
        between the record and the checkpoint)."""
        try:
            doc = await self.store.get(job.task)
        except NotFound:
            return False
        except AfterError:
            return True
        return any(isinstance(r, Mapping) and r.get("id") == job.id and r.get("state") == "sending" for r in doc.get("deliveries") or [])

    async def _record(self, job: Job, result: Mapping[str, Any]) -> None:
        deadline = time.monotonic() + RECORD_PATIENCE
        while time.monotonic() < deadline:
            async with self._io:
                wait = await self._record_once(job, result)
            if wait is None:
                return
            await asyncio.sleep(wait)  # holding no slot
        log.warning("task %s: the result of webhook delivery %s was not recorded within %gs", job.task, job.id, RECORD_PATIENCE)

    async def _record_once(self, job: Job, result: Mapping[str, Any]) -> float | None:
        """One try: None when it is over (written, or no record left to write into), else the
        seconds to wait before the next (0: at once, after a conflict)."""
        try:
            doc = await self.store.get(job.task)
        except NotFound:
            return None
        except AfterError:
            return 2.0
        if not webhooks.writable(doc, self.clock()):
            return 0.5
        out = webhooks.recorded(doc, job.id, result, keep=self.settings.notify_keep)
        if out is None:
            return None
        try:
            await self.store.put(out)
        except Uncertain:
            return None  # written, on fewer replicas than a cluster's quorum
        except Conflict:
            return 0.0
        except AfterError:
            return 2.0
        return None

    async def _catch_up(self, since: Any) -> None:
        """Read the feed from the last position this daemon saw (its previous run) to now,
        deciding on each document as the live feed does; what the live feed brings too is
        decided twice, to the same effect (claims are revision-checked)."""
        read, tries = 0, 0
        while read < MAX_CATCH_UP:
            try:
                rows, since, _ = await self.store.changes_page(since, limit=CATCH_UP_PAGE)
            except AfterError as exc:
                tries += 1
                if tries > 10:
                    log.warning("webhooks: catching up on the feed failed (%s); outcomes written while stopped may go undelivered", exc.message)
                    return
                await asyncio.sleep(2.0)
                continue
            if not rows:
                return
            read += len(rows)
            self.observe(rows)
            await asyncio.sleep(0)
        log.warning("webhooks: more than %d changes since the last run: the older outcomes are not delivered", MAX_CATCH_UP)

    # -- the checkpoint ---------------------------------------------------------------------

    async def _saver(self) -> None:
        """Within a second of a claim or a record; every five seconds while only the feed
        position moves (a crash re-reads at most that much of the feed)."""
        saved_seq, tick = self.seq, 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            if self._dirty or (tick % 5 == 0 and self.seq != saved_seq):
                self._save()
                saved_seq = self.seq

    def _save(self) -> None:
        if self.path is None:
            return
        self._dirty = False
        data = {
            "version": 1,
            "database": self.store.name,
            "seq": self.seq,
            "deliveries": [asdict(j) | {"resumed": False} for j in self._inflight.values()],
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)

    def _load(self) -> tuple[list[Job], Any]:
        """The deliveries in flight at the last stop, and the feed position then (None: none,
        or the checkpoint is another database's)."""
        if self.path is None or not self.path.exists():
            return [], None
        try:
            data = json.loads(self.path.read_text())
            if data.get("database") not in (None, self.store.name):
                log.info("ignoring %s: it is database %s's", self.path, data.get("database"))
                return [], None
            rows = data.get("deliveries", [])
            jobs = [Job(str(d["task"]), str(d["id"]), str(d["url"]), str(d["body"]), resumed=True, result=d.get("result") or None) for d in rows]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            return [], None
        if jobs:
            log.info("resuming %d webhook delivery(ies) of the last run", len(jobs))
        self.seq = data.get("seq")
        return jobs, self.seq
