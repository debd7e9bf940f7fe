"""The reads and writes that :mod:`after.overlap`'s decisions call for, on one daemon.

Why apart from the scheduler: the tick keeps its one job (claim what is due); this module
is told by small hooks what the tick and the changes feed saw, and once a tick
(:meth:`Occurrences.run`) writes what follows from it:

- a running ``replace`` task whose next occurrence came (on the daemon holding its
  lease): its cancel intent, marked ``replacing``;
- a due ``allow`` task, a pending backfill, a child that finished: one
  :func:`after.overlap.step` of its parent — children created first (201, or 409:
  spawned already, by this daemon or another), then the parent (revision-checked:
  a conflict means another daemon did it, and the feed brings the new state), then the
  recorded children removed. Each step re-reads the parent and its children, so a daemon
  that died half-way is finished by the next one.

Failures are contained to the task (logged; tried again next tick), never the tick.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from after import model, overlap, timing
from after.errors import AfterError, Conflict, NotFound, Uncertain, Unprocessable

if TYPE_CHECKING:
    from after.scheduler import Scheduler
    from after.service import Tasks

log = logging.getLogger("after.occurrences")

#: Parents stepped per tick, concurrently (the rest wait for the next one).
STEPS_PER_TICK = 20
#: Writes of a backfill request retried on a conflict (its scheduler or worker writing it meanwhile).
TRIES = 8


class Occurrences:
    """What one scheduler has to do for overlap policies and backfills."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.s = scheduler
        #: Parents to step (id -> the worker, for the preferred-daemon check).
        self._dirty: dict[str, str] = {}
        #: Running replace tasks whose next occurrence came: id -> (doc, occurrence).
        self._replace: dict[str, tuple[dict[str, Any], datetime]] = {}

    # -- hooks -----------------------------------------------------------------------------

    def observe(self, doc: Mapping[str, Any]) -> datetime | None:
        """A task's new state (from the feed or a window query): note what concerns us.
        Returns when the scheduler must look at it again for us (a replace), or None."""
        parent = overlap.parent_of(doc)
        if parent is not None and doc.get("status") in overlap.FINISHED:
            self._mark(parent, str(doc.get("worker", "")))
        if overlap.pending(doc) or (overlap.policy(doc) == "allow" and doc.get("status") in (model.CANCEL, model.CANCELED)):
            self._mark(str(doc["_id"]), str(doc.get("worker", "")))
        return overlap.replace_at(doc)

    def fire(self, doc: Mapping[str, Any]) -> bool:
        """A due task the tick would claim: True if it is an ``allow`` task (its occurrence
        runs as a child instead). Called after the preferred-daemon check."""
        if overlap.policy(doc) != "allow" or not doc.get("cron") or overlap.parent_of(doc):
            return False
        self._dirty[str(doc["_id"])] = ""  # the tick already found it ours
        self.s.kick()
        return True

    def due(self, doc: Mapping[str, Any], now: datetime) -> bool:
        """A held task popped by the tick: True if its replacement is due and ours to ask."""
        occurrence = overlap.replace_at(doc)
        if occurrence is None:
            return False
        lease = doc.get("lease") or {}
        if lease.get("daemon") not in (None, self.s.daemon_id):
            return False  # the daemon that holds it replaces it
        if occurrence > now:
            # Popped early (the tick looks claim_ahead seconds ahead): back at its time,
            # unless its lease is over (then the plan recovers it).
            until = timing.agenda_time(doc)
            if until is not None and until <= now:
                return False
            self.s._requeue(dict(doc), occurrence.timestamp())
            return True
        self._replace[str(doc["_id"])] = (dict(doc), occurrence)
        return True

    def settle(self, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
        """:func:`settle` as this daemon writes it."""
        settings = self.s.settings
        return settle(doc, by=self.s.daemon_id, now=now, limit=settings.scheduler_history_limit, runs_limit=settings.scheduler_runs_limit)

    def _mark(self, parent_id: str, worker: str) -> None:
        if self.s.preferred({"_id": parent_id, "worker": worker}) in (None, self.s.daemon_id):
            self._dirty[parent_id] = worker
            self.s.kick()

    # -- once a tick -------------------------------------------------------------------------

    async def run(self, now: datetime) -> None:
        """What the tick and the feed noted since the last tick. The steps run concurrently
        (each is a few round trips), at most :data:`STEPS_PER_TICK` a tick; one that fails
        is tried again at the next tick (not at once: a store that is down is not hammered)."""
        if self._replace:
            await self._ask_replacements(now)
        batch = list(self._dirty)[:STEPS_PER_TICK]
        if not batch:
            return
        for parent_id in batch:
            self._dirty.pop(parent_id, None)
        room = max(1, overlap.MAX_SPAWNS_PER_TICK // len(batch))
        results = await asyncio.gather(*(self.step(parent_id, now, room=room) for parent_id in batch), return_exceptions=True)
        failed = []
        for parent_id, res in zip(batch, results, strict=True):
            if isinstance(res, AfterError):
                log.warning("task %s: overlap/backfill step failed (%s); tried again next tick", parent_id, res.message)
            elif isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res  # cancelled: the scheduler stops
                log.error("task %s: overlap/backfill step failed; tried again next tick", parent_id, exc_info=res)
            else:
                continue
            failed.append(parent_id)
        if len(self._dirty) > 0:
            self.s.kick()  # more than a batch (or changed meanwhile): the next tick at once
        for parent_id in failed:
            self._dirty.setdefault(parent_id, "")

    async def _ask_replacements(self, now: datetime) -> None:
        limit = self.s.settings.scheduler_history_limit
        intents = [overlap.replace_intent(doc, at, by=self.s.daemon_id, now=now, limit=limit) for doc, at in self._replace.values()]
        self._replace.clear()
        try:
            results = await self.s.store.write_many(intents)
        except AfterError as exc:
            log.warning("replace intents not written (%s): asked again when their tasks are looked at", exc.message)
            return
        for task_id, res in results.items():
            if isinstance(res, dict):
                log.info("task %s: its occurrence %s replaces the running one", task_id, res["replacing"]["occurrence"])
                self.s.observe(res)

    async def step(self, parent_id: str, now: datetime, *, room: int) -> int:
        """One :func:`after.overlap.step` of ``parent_id``; returns how many children it spawned."""
        children = await self.s.store.by_prefix(parent_id + overlap.SEP, limit=overlap.MAX_BACKFILL + overlap.MAX_LIVE_CHILDREN)
        try:
            parent = await self.s.store.get(parent_id)
        except NotFound:
            # Deleted: its unfinished children end on their own; the finished ones go.
            ended = [c for c in children if c.get("status") in overlap.FINISHED and overlap.parent_of(c) == parent_id]
            if ended:
                await self.s.store.write_many([{"_id": c["_id"], "_rev": c["_rev"], "_deleted": True} for c in ended])
            return 0
        settings = self.s.settings
        plan = overlap.step(
            parent,
            children,
            now=now,
            by=self.s.daemon_id,
            limit=settings.scheduler_history_limit,
            runs_limit=settings.scheduler_runs_limit,
            room=room,
            ahead=settings.scheduler_claim_ahead,
        )
        if plan.spawn:
            made = await self.s.store.write_many(plan.spawn)
            for res in made.values():
                if isinstance(res, AfterError) and not isinstance(res, Conflict):
                    raise res  # not spawned: the parent must keep this occurrence
                if isinstance(res, dict):
                    self.s.observe(res)
        if plan.parent is not None:
            written = (await self.s.store.write_many([plan.parent])).get(parent_id)
            if isinstance(written, Conflict):
                self._dirty[parent_id] = ""  # changed meanwhile: stepped again with its new state
                return len(plan.spawn)
            if isinstance(written, AfterError):
                raise written
            if written is not None:
                self.s.observe(written)
        if plan.cancel:
            for res in (await self.s.store.write_many(plan.cancel)).values():
                if isinstance(res, dict):
                    self.s.observe(res)  # acknowledged (or stopped where it runs) by the next tick
        if plan.remove:
            await self.s.store.write_many([{"_id": c["_id"], "_rev": c["_rev"], "_deleted": True} for c in plan.remove])
        return len(plan.spawn)


def settle(doc: dict[str, Any], *, by: str, now: datetime, limit: int, runs_limit: int) -> dict[str, Any]:
    """A document about to be written: a ``canceled`` that acknowledges a replace is the
    replaced run and the new occurrence instead (:func:`after.overlap.as_replaced`)."""
    if doc.get("status") != model.CANCELED or not doc.get("replacing"):
        return doc
    return overlap.as_replaced(doc, by=by, now=now, limit=limit, runs_limit=runs_limit)


def occurrence_of(task: Mapping[str, Any]) -> datetime | None:
    """The occurrence a job run stands for (``ctx.occurrence``): the task's ``occurrence``
    (a child's, or one set by After), else a cron task's ``date``; None for a one-shot."""
    for value in (task.get("occurrence"), task.get("date") if task.get("cron") else None):
        if value is not None:
            try:
                return timing.parse_date(value)
            except AfterError:
                return None
    return None


async def backfill(tasks: Tasks, raw_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Add the occurrences of [start, end] to the task's pending backfill; the answer's body."""
    for attempt in range(TRIES):
        doc = await tasks.get(raw_id)
        if not doc.get("cron"):
            raise Conflict(f"task {doc['_id']!r} is a one-shot task (no cron): it has no occurrences to backfill")
        if overlap.parent_of(doc):
            raise Conflict(f"task {doc['_id']!r} runs one occurrence of {doc['parent']!r}: backfill that task")
        if doc.get("status") in model.TERMINAL or doc.get("status") == model.CANCEL:
            raise Conflict(f"task {doc['_id']!r} is {doc.get('status')}: reschedule it before a backfill")
        found = overlap.occurrences_between(doc, start, end)
        if found and len(overlap.child_id(str(doc["_id"]), found[-1])) > 200:
            raise Unprocessable(f"id: {doc['_id']!r} is too long for its occurrences' ids (<id>@<epoch>, at most 200 characters)", field="id")
        answer = {"id": doc["_id"], "count": len(found), "occurrences": [timing.fmt(d) for d in found], "pending": len(overlap.pending(doc))}
        if not found:
            return answer
        new = dict(doc)
        new["backfill"] = overlap.merge_backfill(doc, found)
        now = datetime.now(UTC)
        model.add_history(
            new, str(doc.get("status")), tasks.by, now, limit=tasks.settings.scheduler_history_limit, reason=f"backfill of {len(found)} occurrence(s)"
        )
        new["updated"] = timing.fmt(now)
        res = (await tasks.store.write_many([new]))[new["_id"]]
        if isinstance(res, Conflict):
            await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
            continue
        if isinstance(res, Uncertain):
            res = res.doc
        if not isinstance(res, dict):
            raise res
        answer["pending"] = len(new["backfill"])
        answer["task"] = res
        return answer
    raise Conflict(f"task {raw_id!r} keeps changing; try again")
