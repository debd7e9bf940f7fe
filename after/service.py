"""Task operations shared by the REST API, the CLI (through REST) and the Python module.

Intents follow the status protocol: a client writes ``waiting`` (create), ``cancel``
and ``reschedule``; the scheduler and workers do the rest. Each intent is a
read-modify-write with the revision read, retried a few times on a conflict with the
scheduler (which writes the same documents), so an intent is never lost to a race and
never overwrites a newer state blindly.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import random
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from after import deps, intents, model, timing
from after.bulkwriter import BulkWriter
from after.config import Settings
from after.errors import Conflict, InvalidInput, NotFound, Uncertain, Unprocessable
from after.pausing import Pausing
from after.store import Store

#: ``jobs_of(worker)``: the job names a worker declared, or None when not known here.
JobsOf = Callable[[str], Collection[str] | None]

MAX_LIST = 1000
#: Read-modify-write rounds an intent (cancel, reschedule) gets against concurrent writers.
INTENT_TRIES = 20
#: A filtered listing (worker, job) reads at most this many index rows per page, so a
#: filter that matches almost nothing cannot make one request scan the whole database:
#: the page comes back short, with a cursor to go on.
MAX_SCAN = 20 * MAX_LIST
#: Sorts after every JSON value in CouchDB's collation: the open upper end of a range,
#: and appended to a key, the smallest key strictly after it.
HIGH: dict[str, Any] = {}


def utcnow() -> datetime:
    return datetime.now(UTC)


def encode_cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        pad = "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(cursor + pad))
    except (ValueError, RecursionError):
        raise InvalidInput("cursor: not a cursor this server gave out", field="cursor") from None


def task_id(raw: str) -> str:
    """Accept ids with or without the ``task:`` prefix."""
    return raw if raw.startswith("task:") else f"task:{raw}"


_EPOCH = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?")


def query_date(value: Any) -> Any:
    """A date from a query string: epoch seconds arrive as text there (``?from=1767225600``)."""
    if isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
        return float(value)
    return value


def check_rev(doc: Mapping[str, Any], rev: str | None) -> None:
    """With ``rev`` (the client's ``If-Match``), refuse to act on a task that changed since it was read."""
    if rev is not None and doc.get("_rev") != rev:
        raise Conflict(f"stale revision: task {doc.get('_id')!r} is at revision {doc.get('_rev')}, not {rev}", field="rev")


def permitted(old: dict[str, Any], new: dict[str, Any] | None) -> dict[str, Any]:
    """``new`` if a client may replace ``old`` by it (None: delete it); else 409 naming the
    rule. The same rule CouchDB's ``validate_doc_update`` holds direct writers to
    (:mod:`after.intents`): the daemon writes with the worker's account, so it checks first."""
    why = intents.refusal(old, new)
    if why is not None:
        raise Conflict(why, field="status")
    return new if new is not None else old


class Tasks(Pausing):  # pause, resume, pause_worker, resume_worker: after.pausing
    def __init__(self, store: Store, settings: Settings, *, by: str = "api", clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.settings = settings
        self.by = by
        self.clock = clock
        # Concurrent single creates (32 clients posting one task each) share _bulk_docs
        # requests instead of queueing one request each at the server.
        self._writer = BulkWriter(store, hold_during_outage=False)

    @property
    def _limit(self) -> int:
        return self.settings.scheduler_history_limit

    async def create(self, bodies: Sequence[Any], *, jobs_of: JobsOf | None = None) -> list[dict[str, Any]]:
        """Validate every task first (nothing is stored if one is invalid), then one bulk write.

        ``jobs_of(worker)`` gives the jobs a worker declared (None when unknown, e.g. the
        worker runs on another host): a task naming a job its worker does not have is
        refused with 422 now, rather than accepted and ended ``err`` when it fires.
        Explicit ids that exist already are refused (409) before anything is written.
        """
        now = self.clock()
        docs = []
        many = len(bodies) > 1
        for i, body in enumerate(bodies):
            try:
                doc = model.new_task(body, now=now, by=self.by, history_limit=self._limit)
                if jobs_of is not None:
                    known = jobs_of(doc["worker"])
                    name = doc["job"]["name"]
                    if known is not None and name not in known:
                        raise Unprocessable(
                            f"job.name: worker {doc['worker']!r} has no job {name!r} (its jobs: {', '.join(sorted(known)) or 'none'})", field="job.name"
                        )
                docs.append(doc)
            except InvalidInput as exc:
                if many:
                    exc.message = f"task {i}: {exc.message}"
                    exc.field = f"[{i}].{exc.field}" if exc.field else f"[{i}]"
                raise
        ids = [d["_id"] for d in docs]
        if len(set(ids)) != len(ids):
            raise InvalidInput("id: the same id is given twice", field="id")
        if any(d.get("after") for d in docs):
            await self._check_deps(docs, many)
        given = [d["_id"] for d, body in zip(docs, bodies, strict=True) if isinstance(body, Mapping) and ("id" in body or "_id" in body)]
        if given:
            existing = await self.store.get_many(given)
            if existing:
                raise Conflict(f"a task with id {sorted(existing)[0]!r} exists already", field="id")
        if len(docs) == 1:
            try:
                return [await self._writer.write(docs[0])]
            except Uncertain as exc:
                return [exc.doc]  # a new document has no competing edit: it is stored
            except Conflict:
                raise Conflict(f"a task with id {docs[0]['_id']!r} exists already", field="id") from None
        results = await self.store.write_many(docs)
        out = []
        for doc in docs:
            res = results[doc["_id"]]
            if isinstance(res, Uncertain):
                res = res.doc  # a new document has no competing edit: it is stored
            if isinstance(res, Conflict):
                raise Conflict(f"a task with id {doc['_id']!r} exists already", field="id")
            if not isinstance(res, dict):
                raise res
            out.append(res)
        return out

    async def _check_deps(self, docs: Sequence[Mapping[str, Any]], many: bool) -> None:
        """422 naming the ids in ``after`` that name no task (of the store or the batch),
        or the cycle the batch would make (:func:`after.deps.check_batch`)."""
        found = await self._with_tombstones(deps.outside(docs))
        problems = deps.check_batch(docs, found)
        where = {d["_id"]: i for i, d in enumerate(docs)}
        for i, ids in problems.unknown.items():
            field = f"[{i}].after" if many else "after"
            raise Unprocessable(f"{field}: unknown task(s): {', '.join(ids)}", field=field)
        if problems.cycle is not None:
            i = where.get(problems.cycle[0], 0)
            field = f"[{i}].after" if many else "after"
            raise Unprocessable(f"{field}: dependency cycle: {' -> '.join(problems.cycle)}", field=field)

    async def waiting_on(self, doc: Mapping[str, Any]) -> builtins.list[str]:
        """The dependencies of ``doc`` (its ``after``) that do not count as done yet."""
        ids = deps.ids_of(doc)
        found = await self._with_tombstones(ids)
        return [d for d in ids if deps.kind(found.get(d)) != deps.DONE]

    async def _with_tombstones(self, ids: builtins.list[str]) -> dict[str, dict[str, Any]]:
        """The documents of ``ids``, and the tombstones of those deleted (a purged task
        counts as what it ended as: :func:`after.deps.kind`)."""
        found = await self.store.get_many(ids)
        missing = [i for i in ids if i not in found]
        return {**found, **await self.store.tombstones(missing)} if missing else found

    async def get(self, raw_id: str) -> dict[str, Any]:
        doc = await self.store.get(task_id(raw_id))
        if not model.looks_like_task(doc):
            raise NotFound(f"no task {raw_id!r}")
        return doc

    async def _intent(self, raw_id: str, change: Callable[[dict[str, Any]], dict[str, Any]], rev: str | None = None) -> dict[str, Any]:
        for attempt in range(INTENT_TRIES):
            doc = await self.get(raw_id)
            check_rev(doc, rev)
            new = change(dict(doc))
            res = (await self.store.write_many([new]))[new["_id"]]
            if isinstance(res, Conflict):
                # The scheduler and a worker write the same document (an every-second cron
                # task: three writes a second): back off a little, randomly, and read again.
                await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
                continue
            if isinstance(res, Uncertain):
                # Taken by fewer replicas than the quorum (a cluster in trouble): it is in the
                # document and counts unless a competing write won; a lost cancel is re-applied
                # when the conflict is resolved (after.quorum.resolve).
                return res.doc
            if not isinstance(res, dict):
                raise res
            return res
        raise Conflict(f"task {raw_id!r} keeps changing; try again")

    async def cancel(self, raw_id: str, *, rev: str | None = None) -> dict[str, Any]:
        """Ask for cancellation: a waiting task is acknowledged ``canceled`` by the next tick;
        a running one is stopped by its worker, which acknowledges it. With ``rev``, only
        if the task is still at that revision (409 otherwise)."""

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc.get("status") == model.CANCEL:
                return doc
            return permitted(doc, model.set_status(dict(doc), model.CANCEL, self.by, self.clock(), limit=self._limit))

        return await self._intent(raw_id, change, rev)

    async def reschedule(self, raw_id: str, date: Any, *, rev: str | None = None) -> dict[str, Any]:
        """Run again at ``date`` (also a rerun of a finished task). Not while it runs.
        With ``rev``, only if the task is still at that revision (409 otherwise)."""
        when = timing.parse_date(date)

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            new = dict(doc, date=timing.fmt(when), attempts=0)
            return permitted(doc, model.set_status(new, model.RESCHEDULE, self.by, self.clock(), limit=self._limit))

        return await self._intent(raw_id, change, rev)

    async def delete(self, raw_id: str, *, rev: str | None = None) -> None:
        """Remove a task (a CouchDB deletion: replicated as such). Not while it runs."""
        doc = await self.get(raw_id)
        check_rev(doc, rev)
        permitted(doc, None)
        # The tombstone keeps the worker, so /events can tell that worker's watchers.
        tombstone = {"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True, "type": "task", "worker": doc.get("worker")}
        res = (await self.store.write_many([tombstone]))[doc["_id"]]
        if isinstance(res, Conflict):
            raise Conflict(f"task {raw_id!r} changed meanwhile; read it again", field="rev")
        if not isinstance(res, dict):
            raise res

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
        """Tasks by due date (ascending, then id), filtered; ``next`` is a cursor, None at the end.

        Paging is by view key, never by offset: the cursor holds the last key returned and
        the next page starts strictly after it, so tasks created, changed or deleted
        between two requests never shift a page (no task is shown twice or skipped
        because another one moved). A cursor is bound to the filters it was made for.
        ``status`` and the due range are index ranges (``by_status``, ``by_date``);
        ``worker`` and ``job`` are matched on the documents read, at most
        :data:`MAX_SCAN` rows per page.
        """
        if status is not None and status not in model.STATUSES:
            raise InvalidInput(f"status: expected one of {', '.join(model.STATUSES)}", field="status")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit: expected 1..{MAX_LIST}", field="limit")
        lo = timing.fmt(timing.parse_date(query_date(due_from), field="from")) if due_from else None
        hi = timing.fmt(timing.parse_date(query_date(due_to), field="to")) if due_to else None
        if lo is not None and hi is not None and lo > hi:
            raise InvalidInput(f"from: {due_from} is after to ({due_to}): nothing can be due in that range", field="from")
        prefix: builtins.list[Any] = [status] if status else []
        view = "by_status" if status else "by_date"
        start: builtins.list[Any] = [*prefix, lo] if lo is not None else list(prefix)
        end: builtins.list[Any] = [*prefix, hi, HIGH] if hi is not None else [*prefix, HIGH]
        bound = [view, worker, job, lo, hi]
        if cursor:
            data = decode_cursor(cursor)
            key_len = len(prefix) + 2
            if not (isinstance(data, dict) and isinstance(data.get("k"), builtins.list) and len(data["k"]) == key_len):
                raise InvalidInput("cursor: not a cursor this server gave out", field="cursor")
            if data.get("q") != bound:
                raise InvalidInput("cursor: made for other filters; repeat the first request's filters", field="cursor")
            start = [*data["k"], HIGH]  # strictly after the last key returned
        # Unfiltered, one row more than asked says whether another page follows.
        page = min(max(limit * 2, 100), MAX_LIST) if worker or job else limit + 1
        extra = {"reduce": False} if view == "by_status" else {}
        out: builtins.list[dict[str, Any]] = []
        resume: Any = None  # the key the next page starts after
        more = False
        scanned = 0
        while True:
            reply = await self.store.view(view, startkey=start, endkey=end, include_docs=True, limit=page, **extra)
            rows = reply.get("rows", [])
            scanned += len(rows)
            for row in rows:
                doc = row.get("doc") or {}
                if (worker and doc.get("worker") != worker) or (job and (doc.get("job") or {}).get("name") != job):
                    continue
                if len(out) == limit:
                    more = True  # a matching row beyond this page
                    break
                out.append(doc)
                resume = row["key"]
            else:
                if len(rows) < page:
                    break  # the end of the range
                if scanned >= MAX_SCAN:
                    more, resume = True, rows[-1]["key"]  # a short page; go on from here
                    break
                start = [*rows[-1]["key"], HIGH]
                continue
            break
        nxt = encode_cursor({"k": resume, "q": bound}) if more and resume is not None else None
        return out, nxt

    async def history(self, raw_id: str) -> builtins.list[Mapping[str, Any]]:
        doc = await self.get(raw_id)
        return list(doc.get("history") or [])
