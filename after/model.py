"""The task document: statuses, who may write which, allowed transitions, validation.

A task is kept as the plain JSON dict CouchDB stores (``_id``, ``_rev`` included), so
what the REST API returns is exactly what is stored. This module builds new documents
from user input (strictly: an unknown field is an error) and checks documents that
arrived any other way (directly written into CouchDB, replicated): those are checked
leniently and, when unusable, ended ``err`` with the reason instead of crashing anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from after import calendar, deps, schema, timing
from after.errors import InvalidInput

WAITING = "waiting"
SCHEDULE = "schedule"
SCHEDULED = "scheduled"
DONE = "done"
ERR = "err"
RESCHEDULE = "reschedule"
CANCEL = "cancel"
CANCELED = "canceled"

STATUSES = (WAITING, SCHEDULE, SCHEDULED, DONE, ERR, RESCHEDULE, CANCEL, CANCELED)
assert STATUSES == schema.STATUSES
TERMINAL = frozenset({DONE, ERR, CANCELED})
PENDING = frozenset({WAITING, RESCHEDULE})
HELD = frozenset({SCHEDULE, SCHEDULED})
#: Only a worker (a CouchDB user with the ``after_worker`` role) may write these.
WORKER_ONLY = frozenset({SCHEDULED, CANCELED})
#: The CouchDB role of the daemon's and workers' user.
WORKER_ROLE = "after_worker"

#: status -> statuses it may move to. ``None`` is "no document yet".
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({WAITING}),
    WAITING: frozenset({WAITING, SCHEDULE, ERR, RESCHEDULE, CANCEL, CANCELED}),
    RESCHEDULE: frozenset({WAITING, SCHEDULE, ERR, RESCHEDULE, CANCEL, CANCELED}),
    SCHEDULE: frozenset({SCHEDULED, WAITING, RESCHEDULE, ERR, CANCEL, CANCELED}),
    SCHEDULED: frozenset({SCHEDULED, DONE, ERR, RESCHEDULE, CANCEL, CANCELED}),
    CANCEL: frozenset({CANCEL, CANCELED, ERR, DONE, RESCHEDULE}),
    DONE: frozenset({RESCHEDULE}),
    ERR: frozenset({RESCHEDULE}),
    CANCELED: frozenset({RESCHEDULE}),
}


def allowed(old: str | None, new: str) -> bool:
    return new in TRANSITIONS.get(old, frozenset())


def new_id() -> str:
    return "task:" + uuid.uuid4().hex


def add_history(doc: dict[str, Any], status: str, by: str, at: datetime, *, limit: int, **extra: Any) -> None:
    """Append one transition; keep the first entry (creation) and the newest ``limit - 1``."""
    entry: dict[str, Any] = {"status": status, "at": timing.fmt(at), "by": by}
    entry.update({k: v for k, v in extra.items() if v is not None})
    hist = list(doc.get("history") or [])
    hist.append(entry)
    if len(hist) > limit:
        hist = hist[:1] + hist[-(limit - 1) :]
    doc["history"] = hist


def merge_history(fresh: Any, base: Any, ours: Any, *, limit: int) -> list[dict[str, Any]]:
    """Re-apply the entries ``ours`` added to ``base`` on top of ``fresh`` (after a conflict).

    A writer that lost a revision race must not replace the history it did not see.
    """
    fresh_l, base_l, ours_l = list(fresh or []), list(base or []), list(ours or [])
    added = ours_l[len(base_l) :] if ours_l[: len(base_l)] == base_l else ours_l[-1:]
    hist = fresh_l + [e for e in added if e not in fresh_l]
    if len(hist) > limit:
        hist = hist[:1] + hist[-(limit - 1) :]
    return hist


def set_status(doc: dict[str, Any], status: str, by: str, at: datetime, *, limit: int, **extra: Any) -> dict[str, Any]:
    doc["status"] = status
    doc["updated"] = timing.fmt(at)
    add_history(doc, status, by, at, limit=limit, **extra)
    return doc


def new_task(body: Any, *, now: datetime, by: str = "api", history_limit: int = 50) -> dict[str, Any]:
    """Build a stored task document from user input (:class:`after.schema.TaskInput`), or
    raise InvalidInput naming the field."""
    fields = schema.task_input(body)
    task_id = _task_id(fields.id_ if fields.id_ is not None else fields.id)
    placed = None
    if fields.cron is not None:
        # The first occurrence after now (jittered, not on an excluded day); computed even
        # with a given date, so exclusions that leave no run are refused now.
        cal = {"_id": task_id, "cron": fields.cron, "timezone": fields.timezone, "jitter": fields.jitter, "exclude": fields.exclude}
        placed = calendar.first(cal, now)
    if fields.date is not None:
        due = fields.date
    else:
        assert placed is not None  # TaskInput requires a date or a cron
        due = timing.fmt(placed.date)
    doc: dict[str, Any] = {
        "_id": task_id,
        "type": "task",
        **schema.normal_fields(fields),
        "date": due,
        "status": WAITING,
        "attempts": 0,
        "result": None,
        "error": None,
        "created": timing.fmt(now),
        "updated": timing.fmt(now),
        "history": [],
    }
    if fields.cron is not None:
        doc["cron"] = fields.cron
        doc["timezone"] = fields.timezone or "UTC"
        doc["runs"] = []
    if fields.retention is not None:
        doc["retention"] = fields.retention
    if fields.overlap is not None:
        doc["overlap"] = fields.overlap
    for key in ("jitter", "exclude"):  # calendar
        if getattr(fields, key) is not None:
            doc[key] = getattr(fields, key)
    if placed is not None and fields.date is None:
        doc["occurrence"] = timing.fmt(placed.occurrence)
    if fields.notify is not None:
        doc["notify"] = [hook.model_dump() for hook in fields.notify]
    if fields.paused is not None:
        doc["paused"] = fields.paused.model_dump()  # created paused: it waits for a resume
    if fields.after:  # deps: the ids stored prefixed, each once
        doc["after"] = deps.ids_of({"after": fields.after})
        doc["after_failed"] = fields.after_failed or "err"
    add_history(doc, WAITING, by, now, limit=history_limit)
    return doc


def _task_id(given: str | None) -> str:
    if given is None:
        return new_id()
    return given if given.startswith("task:") else "task:" + given


def looks_like_task(doc: Mapping[str, Any]) -> bool:
    """A task, or meant to be one: ``type`` ``task``, or an id in the tasks' ``task:`` space.

    A document written straight into CouchDB without its ``type`` is still a task its
    writer is waiting for; it is ended ``err`` (invalid, naming ``type``), not ignored.
    """
    doc_id = doc.get("_id")
    if isinstance(doc_id, str) and doc_id.startswith("_design/"):
        return False
    return doc.get("type") == "task" or (isinstance(doc_id, str) and doc_id.startswith("task:") and not doc.get("_deleted"))


def problem(doc: Mapping[str, Any]) -> str | None:
    """Why a stored task document is not a valid task (naming the field), or None.

    For documents written straight into CouchDB (or replicated in): the same field rules
    as a REST body (:class:`after.schema.StoredTask`), so no shape of document can reach
    the scheduler's or a worker's code unchecked.
    """
    try:
        schema.stored(dict(doc))
    except InvalidInput as exc:
        return exc.message
    return None


def normalized(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A valid stored task with the client's shorthands expanded (``"job": "noop"`` is
    ``{"name": "noop", ...}``, ``"retry": 3`` is ``{"max": 3, ...}``) and dates in the one
    stored form, which is what the scheduler and workers read. Raises InvalidInput."""
    fields = schema.stored(dict(doc))
    out = dict(doc)
    out.update(schema.normal_fields(fields))
    out["date"] = fields.date
    for key in ("created", "updated"):
        if key in out and getattr(fields, key) is not None:
            out[key] = getattr(fields, key)
    if fields.lease is not None:
        out["lease"] = {**doc["lease"], "until": fields.lease.until}
    return out


def is_task(doc: Mapping[str, Any]) -> bool:
    return doc.get("type") == "task" and not str(doc.get("_id", "")).startswith("_design/")
