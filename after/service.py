"""Task operations shared by the REST API, the CLI (through REST) and the Python module.

Intents follow the status protocol: a client writes ``waiting`` (create), ``cancel``
and ``reschedule``; the scheduler and workers do the rest. Each intent is a
read-modify-write with the revision read, retried a few times on a conflict with the
scheduler (which writes the same documents), so an intent is never lost to a race and
never overwrites a newer state blindly.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from after import model, timing
from after.config import Settings
from after.errors import Conflict, InvalidInput, NotFound
from after.store import Store

MAX_LIST = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        pad = "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(cursor + pad))
    except ValueError:
        raise InvalidInput("cursor: not a cursor this server gave out", field="cursor") from None


def task_id(raw: str) -> str:
    """Accept ids with or without the ``task:`` prefix."""
    return raw if raw.startswith("task:") else f"task:{raw}"


class Tasks:
    def __init__(self, store: Store, settings: Settings, *, by: str = "api", clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.settings = settings
        self.by = by
        self.clock = clock

    @property
    def _limit(self) -> int:
        return self.settings.scheduler_history_limit

    async def create(self, bodies: Sequence[Any]) -> list[dict[str, Any]]:
        """Validate every task first (nothing is stored if one is invalid), then one bulk write."""
        now = self.clock()
        docs = []
        for i, body in enumerate(bodies):
            try:
                docs.append(model.new_task(body, now=now, by=self.by, history_limit=self._limit))
            except InvalidInput as exc:
                if len(bodies) > 1:
                    exc.message = f"task {i}: {exc.message}"
                    exc.field = f"[{i}].{exc.field}" if exc.field else f"[{i}]"
                raise
        ids = [d["_id"] for d in docs]
        if len(set(ids)) != len(ids):
            raise InvalidInput("id: the same id is given twice", field="id")
        results = await self.store.write_many(docs)
        out = []
        for doc in docs:
            res = results[doc["_id"]]
            if isinstance(res, Conflict):
                raise Conflict(f"a task with id {doc['_id']!r} exists already")
            if not isinstance(res, dict):
                raise res
            out.append(res)
        return out

    async def get(self, raw_id: str) -> dict[str, Any]:
        doc = await self.store.get(task_id(raw_id))
        if not model.is_task(doc):
            raise NotFound(f"no task {raw_id!r}")
        return doc

    async def _intent(self, raw_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        for _ in range(5):
            doc = await self.get(raw_id)
            new = change(dict(doc))
            try:
                return await self.store.put(new)
            except Conflict:
                continue
        raise Conflict(f"task {raw_id!r} keeps changing; try again")

    async def cancel(self, raw_id: str) -> dict[str, Any]:
        """Ask for cancellation: a waiting task is acknowledged ``canceled`` by the next tick;
        a running one is stopped by its worker, which acknowledges it."""

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            status = doc.get("status")
            if status in model.TERMINAL:
                raise Conflict(f"task is already {status}; nothing to cancel")
            if status == model.CANCEL:
                return doc
            return model.set_status(doc, model.CANCEL, self.by, self.clock(), limit=self._limit)

        return await self._intent(raw_id, change)

    async def reschedule(self, raw_id: str, date: Any) -> dict[str, Any]:
        """Run again at ``date`` (also a rerun of a finished task). Not while it runs."""
        when = timing.parse_date(date)

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            status = doc.get("status")
            if status in model.HELD or status == model.CANCEL:
                raise Conflict(f"task is {status} (running or being canceled); cancel it first or wait")
            doc["date"] = timing.fmt(when)
            doc["attempts"] = 0
            return model.set_status(doc, model.RESCHEDULE, self.by, self.clock(), limit=self._limit)

        return await self._intent(raw_id, change)

    async def delete(self, raw_id: str) -> None:
        doc = await self.get(raw_id)
        if doc.get("status") in model.HELD:
            raise Conflict("task is running; cancel it first")
        await self.store.delete(doc["_id"], doc["_rev"])

    async def list(
        self,
        *,
        status: str | None = None,
        worker: str | None = None,
        job: str | None = None,
        due_from: str | None = None,
        due_to: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Tasks by due date (ascending), filtered; ``next`` is a cursor or None at the end.

        Paging is by view key (stable under inserts): the cursor is the last key returned.
        """
        if status is not None and status not in model.STATUSES:
            raise InvalidInput(f"status: expected one of {', '.join(model.STATUSES)}", field="status")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit: expected 1..{MAX_LIST}", field="limit")
        lo = timing.fmt(timing.parse_date(due_from, field="from")) if due_from else ""
        hi = timing.fmt(timing.parse_date(due_to, field="to")) if due_to else "\ufff0"
        if status:
            view, start, end = "by_status", [status, lo], [status, hi, {}]
        else:
            view, start, end = "by_date", [lo], [hi, {}]
        skip = 0
        if cursor:
            start = decode_cursor(cursor)
            skip = 1
        out: list[dict[str, Any]] = []
        last_key: Any = None
        scanned = 0
        while len(out) < limit and scanned < 20 * MAX_LIST:
            page = max(limit * 2, 100)
            extra = {"reduce": False} if view == "by_status" else {}
            reply = await self.store.view(view, startkey=start, endkey=end, include_docs=True, limit=page, skip=skip, **extra)
            rows = reply.get("rows", [])
            scanned += len(rows)
            for row in rows:
                doc = row.get("doc") or {}
                last_key = row["key"]
                if worker and doc.get("worker") != worker:
                    continue
                if job and (doc.get("job") or {}).get("name") != job:
                    continue
                out.append(doc)
                if len(out) == limit:
                    break
            if len(rows) < page:
                if len(out) < limit:
                    return out, None
                break
            start, skip = last_key, 1
        return out, (encode_cursor(last_key) if last_key is not None else None)

    async def history(self, raw_id: str) -> builtins.list[Mapping[str, Any]]:
        doc = await self.get(raw_id)
        return list(doc.get("history") or [])
