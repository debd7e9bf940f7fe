"""Overlap policies and backfill, decided as plain functions of documents and a given ``now``.

Why a module of its own: what ``replace`` and ``allow`` do, and which occurrences a
backfill runs, are decisions that must be the same on every daemon and testable with a
fake clock; :mod:`after.occurrences` does the reads and writes they call for.

- ``wait`` / ``skip`` (unchanged, :func:`after.timing.next_after_run`): one run at a time.
- ``replace``: a cron occurrence due while the previous one runs cancels it (the cancel
  machinery stops the job), records it in ``runs`` as ``replaced`` and runs the new one.
- ``allow``: every occurrence runs as a child document ``<task id>@<epoch seconds>`` (a
  deterministic id: two daemons spawning the same occurrence get one child and a 409),
  at most :data:`MAX_LIVE_CHILDREN` unfinished at once; its outcome goes in the
  parent's ``runs`` and the child is then removed.
- backfill: the occurrences of a range (at most :data:`MAX_BACKFILL`) wait in the task's
  ``backfill`` list and run oldest first as children, one at a time (``wait``, ``skip``,
  ``replace``: an occurrence asked for explicitly is never skipped or killed) or
  concurrently up to the bound (``allow``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from after import calendar, model, timing
from after.errors import InvalidInput, Unprocessable

POLICIES = ("wait", "skip", "replace", "allow")
#: Occurrences one backfill may run (and pending in one task at once).
MAX_BACKFILL = 1000
#: Unfinished children of one task at once (``allow`` and backfill).
MAX_LIVE_CHILDREN = 100
#: Children one daemon spawns per tick, over every task (the rest: next tick).
MAX_SPAWNS_PER_TICK = 100
#: The separator of a child's id: ``<parent id>@<epoch seconds>``.
SEP = "@"

FINISHED = model.TERMINAL


def policy(task: Mapping[str, Any]) -> str:
    value = task.get("overlap")
    return value if value in POLICIES else "wait"


# -- occurrences ---------------------------------------------------------------------------------


def occurrences_between(task: Mapping[str, Any], start: datetime, end: datetime, *, limit: int = MAX_BACKFILL) -> list[datetime]:
    """The cron occurrences of ``task`` in [start, end], oldest first (its ``timezone``).

    The one place occurrences of a range are computed: through :func:`after.calendar.next_nominal`,
    so a task's excluded days have none (a backfill runs at once: no jitter). Unprocessable (field ``to``) for a reversed range or
    more than ``limit`` occurrences; InvalidInput for a task without ``cron``.
    """
    expr = task.get("cron")
    if not expr:
        raise InvalidInput("cron: the task has no cron expression (a one-shot task has no occurrences)", field="cron")
    if end < start:
        raise Unprocessable(f"to: before from ({timing.fmt(end)} < {timing.fmt(start)})", field="to")
    out: list[datetime] = []
    cur = start - timedelta(microseconds=1)
    while True:
        cur = calendar.next_nominal(task, cur)
        if cur > end:
            return out
        if len(out) >= limit:
            raise Unprocessable(f"to: the range holds more than {limit} occurrences", field="to")
        out.append(cur)


def child_id(parent_id: str, occurrence: datetime) -> str:
    """The child document of one occurrence: the same on every daemon."""
    return f"{parent_id}{SEP}{int(occurrence.timestamp())}"


def parent_of(doc: Mapping[str, Any]) -> str | None:
    parent = doc.get("parent")
    return parent if isinstance(parent, str) and parent else None


def pending(task: Mapping[str, Any]) -> list[str]:
    """The task's pending backfill occurrences (stored form), oldest first."""
    value = task.get("backfill")
    if not isinstance(value, list):
        return []
    return sorted((v for v in value if isinstance(v, str)), key=_instant)


def _instant(value: str) -> tuple[float, str]:
    """A pending entry's order: its time (a direct writer's form may differ from ours)."""
    try:
        return (timing.parse_date(value).timestamp(), value)
    except InvalidInput:
        return (float("inf"), value)


def merge_backfill(task: Mapping[str, Any], new: Iterable[datetime]) -> list[str]:
    """The task's pending list with ``new`` added (deduplicated, oldest first), bounded."""
    merged = sorted({timing.fmt(timing.parse_date(v)) for v in pending(task)} | {timing.fmt(d) for d in new})
    if len(merged) > MAX_BACKFILL:
        raise Unprocessable(f"to: more than {MAX_BACKFILL} occurrences would be pending (already {len(pending(task))})", field="to")
    return merged


# -- replace -------------------------------------------------------------------------------------


def replace_at(task: Mapping[str, Any]) -> datetime | None:
    """When a running ``replace`` task's next occurrence comes (None: not one, or asked already):
    the one after the running one's nominal time, not on an excluded day, its jitter applied."""
    if policy(task) != "replace" or not task.get("cron") or task.get("replacing"):
        return None
    if task.get("status") not in (model.SCHEDULE, model.SCHEDULED) or parent_of(task):
        return None
    due = timing.due_at(task)
    if due is None:
        return None
    try:
        return calendar.place(task, calendar.next_nominal(task, calendar.nominal_of(task) or due)).date
    except InvalidInput:
        return None


def replace_due(task: Mapping[str, Any], now: datetime) -> datetime | None:
    """The occurrence that replaces the running one, if it has come."""
    at = replace_at(task)
    return at if at is not None and at <= now else None


def replace_intent(task: Mapping[str, Any], occurrence: datetime, *, by: str, now: datetime, limit: int) -> dict[str, Any]:
    """The cancel intent that stops the running occurrence, marked ``replacing``: whoever
    acknowledges the cancel writes :func:`as_replaced` instead of ``canceled``."""
    doc = dict(task)
    doc["replacing"] = {"occurrence": timing.fmt(occurrence), "by": by, "at": timing.fmt(now)}
    nominal = _nominal_at(task, occurrence)
    if nominal is not None:
        doc["replacing"]["nominal"] = timing.fmt(nominal)
    return model.set_status(doc, model.CANCEL, by, now, limit=limit, reason=f"replaced by the occurrence of {timing.fmt(occurrence)}")


def as_replaced(doc: dict[str, Any], *, by: str, now: datetime, limit: int, runs_limit: int) -> dict[str, Any]:
    """``doc`` about to be written: a ``canceled`` acknowledgment of a replace intent becomes
    the replaced run in ``runs`` and the new occurrence due at once; anything else as is."""
    marker = doc.get("replacing")
    if doc.get("status") != model.CANCELED or not isinstance(marker, Mapping):
        return doc
    out = dict(doc)
    out.pop("replacing", None)
    out.pop("lease", None)
    runs = list(out.get("runs") or [])
    if not (runs and isinstance(runs[-1], Mapping) and runs[-1].get("date") == out.get("date")):
        # Not when this run ended on its own just as it was replaced (its outcome is there).
        runs.append({"date": out.get("date"), "started": out.get("started"), "finished": timing.fmt(now), "status": "replaced", "by": marker.get("by")})
    out["runs"] = runs[-runs_limit:]
    out["date"] = marker.get("occurrence") or timing.fmt(now)
    if marker.get("nominal"):
        out["occurrence"] = marker["nominal"]  # the jittered date stands for it (after.calendar)
    out["attempts"] = 0
    out["error"] = None
    return model.set_status(out, model.RESCHEDULE, by, now, limit=limit, reason=f"replaced by the occurrence of {out['date']}")


# -- children (allow, backfill) --------------------------------------------------------------


def _nominal_at(task: Mapping[str, Any], at: datetime) -> datetime | None:
    """The nominal occurrence whose jittered time is ``at`` (None: ``at`` is no placed occurrence)."""
    if not task.get("jitter"):
        return at
    try:
        nominal = calendar.next_nominal(task, at - timedelta(seconds=float(task["jitter"])) - timedelta(microseconds=1))
    except (InvalidInput, TypeError, ValueError):
        return None
    return nominal if calendar.place(task, nominal).date == at else None


def child_doc(
    parent: Mapping[str, Any], occurrence: datetime, *, now: datetime, by: str, backfill: bool, date: datetime | None = None
) -> dict[str, Any]:
    """The one-shot task that runs one occurrence of ``parent``: due at ``date`` (its jittered
    time; default the occurrence itself), at once if past."""
    doc: dict[str, Any] = {
        "_id": child_id(str(parent["_id"]), occurrence),
        "type": "task",
        "worker": parent.get("worker"),
        "job": parent.get("job"),
        "date": timing.fmt(date or occurrence),
        "occurrence": timing.fmt(occurrence),
        "parent": parent["_id"],
        "status": model.WAITING,
        "priority": parent.get("priority") or 0,
        "attempts": 0,
        "result": None,
        "error": None,
        "created": timing.fmt(now),
        "updated": timing.fmt(now),
        "history": [{"status": model.WAITING, "at": timing.fmt(now), "by": by}],
    }
    for key in ("timeout", "retry", "retention"):
        if parent.get(key) is not None:
            doc[key] = parent[key]
    if backfill:
        doc["backfilled"] = True
    return doc


def run_entry(child: Mapping[str, Any]) -> dict[str, Any]:
    """What the parent's ``runs`` keeps of a finished child."""
    entry = {
        "date": child.get("occurrence") or child.get("date"),
        "occurrence": child.get("occurrence"),
        "id": child.get("_id"),
        "started": child.get("started"),
        "finished": child.get("finished") or child.get("updated"),
        "status": child.get("status"),
        "error": child.get("error"),
    }
    if child.get("backfilled"):
        entry["backfill"] = True
    return entry


@dataclasses.dataclass
class Step:
    """What to write for one parent: children to create, the parent's new form (None: as
    is), finished children to remove once the parent holds their runs."""

    spawn: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    parent: dict[str, Any] | None = None
    remove: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Unfinished children of a canceled task: their cancel intents.
    cancel: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def step(
    parent: Mapping[str, Any],
    children: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    by: str,
    limit: int,
    runs_limit: int,
    room: int = MAX_SPAWNS_PER_TICK,
    ahead: float = 0.0,
) -> Step:
    """One pass over a task and its children: record finished ones, spawn what is due.

    ``children``: every child document found (their ids start ``<parent id>@``). Spawns
    at most ``room``; an ``allow`` occurrence due within ``ahead`` seconds is spawned
    already (the child is claimed ahead and starts on time, like any task). A finished
    parent spawns nothing more and drops its pending backfill; a canceled one also
    cancels its children that still wait or run.
    """
    out = Step()
    doc = dict(parent)
    changed = False
    kids = {str(c.get("_id")): c for c in children if parent_of(c) == parent.get("_id")}
    runs = list(doc.get("runs") or [])
    recorded = {r.get("id") for r in runs if isinstance(r, Mapping)}
    for kid_id, kid in sorted(kids.items(), key=lambda kv: str(kv[1].get("date"))):
        if kid.get("status") in FINISHED:
            if kid_id not in recorded:
                runs.append(run_entry(kid))
                changed = True
            out.remove.append(dict(kid))
    live = sum(1 for k in kids.values() if k.get("status") not in FINISHED)
    finished = doc.get("status") in FINISHED or doc.get("status") == model.CANCEL
    if doc.get("status") in (model.CANCEL, model.CANCELED):
        # Canceling a task cancels the occurrences of it that still wait or run.
        for kid in kids.values():
            if kid.get("status") not in FINISHED and kid.get("status") != model.CANCEL:
                out.cancel.append(model.set_status(dict(kid), model.CANCEL, by, now, limit=limit, reason=f"its task {doc['_id']} was canceled"))
    queue = pending(doc)
    keep: list[str] = []
    for at in queue:
        cid = child_id(str(doc["_id"]), timing.parse_date(at))
        if cid in kids or finished:
            changed = True  # spawned already (its parent write was lost), or no longer wanted
            continue
        sequential = policy(doc) != "allow"
        if room > 0 and live < (1 if sequential else MAX_LIVE_CHILDREN):
            out.spawn.append(child_doc(doc, timing.parse_date(at), now=now, by=by, backfill=True))
            live += 1
            room -= 1
            changed = True
            continue
        keep.append(at)
    if queue:
        doc["backfill"] = keep
    due = timing.due_at(doc)
    if (
        policy(doc) == "allow"
        and doc.get("cron")
        and doc.get("status") in model.PENDING
        and due is not None
        and due <= now + timedelta(seconds=ahead)
        and room > 0
    ):
        cid = child_id(str(doc["_id"]), due)
        if cid in kids or live < MAX_LIVE_CHILDREN:
            if cid not in kids:
                out.spawn.append(child_doc(doc, calendar.nominal_of(doc) or due, now=now, by=by, backfill=False, date=due))
            nxt = timing.next_after_run(doc, started=now)  # nominal: placed below (after.calendar)
            doc["attempts"] = 0
            if nxt is None:
                model.set_status(doc, model.DONE, by, now, limit=limit, reason="no occurrence left")
            else:
                doc.update(calendar.place(doc, nxt).fields())
                model.set_status(doc, model.RESCHEDULE, by, now, limit=limit, reason=f"occurrence {timing.fmt(due)} runs as {cid}")
            changed = True
    if changed:
        doc["runs"] = runs[-runs_limit:]
        out.parent = doc
    return out


# -- published forms -------------------------------------------------------------------------


def openapi_schemas() -> dict[str, Any]:
    """``POST /tasks/{id}/backfill``'s body and answer, for ``components.schemas``."""
    from after import schema

    date = schema.DATE_SCHEMA
    return {
        "BackfillRequest": {
            "type": "object",
            "required": ["from", "to"],
            "additionalProperties": False,
            "properties": {
                "from": {**date, "description": "first instant of the range (inclusive)"},
                "to": {**date, "description": "last instant (inclusive)"},
            },
        },
        "Backfill": {
            "type": "object",
            "required": ["id", "count", "occurrences", "pending"],
            "properties": {
                "id": {"type": "string"},
                "count": {"type": "integer", "minimum": 0, "maximum": MAX_BACKFILL, "description": "occurrences in the range"},
                "occurrences": {"type": "array", "items": {"type": "string"}, "description": "their times, oldest first"},
                "pending": {"type": "integer", "minimum": 0, "description": "occurrences the task still has to backfill (these included)"},
            },
        },
    }
