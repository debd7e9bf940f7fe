"""Pause and resume through the store: what REST, the CLI (through REST) and the Python
module call. The decisions are :mod:`after.pauses`'; this is their I/O.

A task's pause is a read-modify-write of the task with the revision read (the same retry
on a conflict as the other intents: :meth:`after.service.Tasks._intent`), so a pause that
races the scheduler's claim or a worker's outcome is never lost and never overwrites
either. A worker name's pause is one document, ``pause:<name>``: written to pause,
deleted to resume; every daemon learns either from its changes feed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from after import pauses, schema
from after.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from after.config import Settings
    from after.store import Store

#: Rounds a worker name's pause or resume gets against a concurrent one (two operators at once).
TRIES = 5


def checked_name(name: str) -> str:
    if not schema.valid_name(name):
        raise InvalidInput(f"name: invalid worker name {name!r} (letters, digits, _ . @ -; at most 64)", field="name")
    return name


class Pausing:
    """The pause verbs of :class:`after.service.Tasks` (a mixin: it provides the store,
    the clock, who writes, and the intent loop)."""

    store: Store
    settings: Settings
    by: str
    clock: Callable[[], datetime]

    async def get(self, raw_id: str) -> dict[str, Any]:
        raise NotImplementedError  # after.service.Tasks

    async def _intent(self, raw_id: str, change: Callable[[dict[str, Any]], dict[str, Any]], rev: str | None = None) -> dict[str, Any]:
        raise NotImplementedError  # after.service.Tasks

    async def pause(self, raw_id: str, *, note: str | None = None, by: str | None = None, rev: str | None = None) -> dict[str, Any]:
        """Pause a task: it does not start until resumed (a run under way finishes). 409 if
        it is finished; already paused, it is returned unchanged."""
        who = by or self.by
        limit = self.settings.scheduler_history_limit

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            return pauses.paused_task(doc, by=who, now=self.clock(), note=note, limit=limit)

        current = await self.get(raw_id)
        if rev in (None, current.get("_rev")) and change(current) == current:
            return current  # already paused: no new revision for nothing (a finished task: 409)
        return await self._intent(raw_id, change, rev)

    async def resume(self, raw_id: str, *, by: str | None = None, rev: str | None = None) -> dict[str, Any]:
        """Resume a task: overdue, it follows its misfire policy. Not paused: unchanged."""
        who = by or self.by
        limit = self.settings.scheduler_history_limit
        current = await self.get(raw_id)
        if not pauses.task_paused(current) and rev in (None, current.get("_rev")):
            return current
        return await self._intent(raw_id, lambda doc: pauses.resumed_task(doc, by=who, now=self.clock(), limit=limit), rev)

    async def worker_pause(self, name: str) -> dict[str, Any] | None:
        """Worker name ``name``'s pause document, or None when it is not paused."""
        try:
            doc = await self.store.get(pauses.doc_id(checked_name(name)))
        except NotFound:
            return None
        return doc if doc.get("type") == pauses.TYPE else None

    async def pause_worker(self, name: str, *, note: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Pause worker name ``name`` on every daemon of this database; already paused: unchanged."""
        for _ in range(TRIES):
            current = await self.worker_pause(name)
            if current is not None:
                return current
            doc = pauses.worker_pause_doc(name, by=by or self.by, now=self.clock(), note=note)
            try:
                return await self.store.put(doc)
            except Conflict:
                continue  # paused meanwhile by someone else (or a stray document): read it
        raise Conflict(f"the pause of worker name {name!r} keeps changing; try again", field="name")

    async def resume_worker(self, name: str) -> dict[str, Any] | None:
        """Resume worker name ``name`` (its pause document is deleted); returns the pause
        that was lifted, or None if it was not paused."""
        for _ in range(TRIES):
            try:
                doc = await self.store.get(pauses.doc_id(checked_name(name)))
            except NotFound:
                return None
            try:
                await self.store.delete(doc["_id"], doc["_rev"])
            except NotFound:
                return None
            except Conflict:
                continue
            return doc
        raise Conflict(f"the pause of worker name {name!r} keeps changing; try again", field="name")
