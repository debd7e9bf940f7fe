"""Pause and resume, as pure decisions over data (no I/O, no clock: ``now`` is given).

Two kinds of pause, one rule: a paused thing does not *start*; what runs finishes.

- A **task** is paused by its ``paused`` field (``{"by", "at", "note"}``; absent or null:
  not paused). A pending task (``waiting``/``reschedule``) that is paused is not planned at
  all, so nothing happens to it during the pause: no fire, no misfire, no expiry. When
  ``paused`` is cleared, its new revision reaches the scheduler like any change, and
  :func:`after.timing.plan` judges it at that instant: overdue occurrences then follow the
  task's misfire policy (``run`` all, ``skip`` past grace, ``coalesce`` into one), the same
  code as after downtime.
- A **worker name** is paused by a document ``pause:<name>`` (``type: "pause"``). Every
  daemon sharing the database learns it from the changes feed; none starts a task of that
  name while it exists. Its due tasks wait (parked, as for a worker that is not running)
  and are planned again, in due order, when the document is deleted (resume).

Why a document per name and not a field on a worker: a name is not a process. Several
daemons run workers of one name, remote workers connect under it, and a name can be
paused before any of them starts.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from after import model, schema, timing
from after.errors import Conflict, InvalidInput

#: The id prefix and ``type`` of a worker name's pause document.
PREFIX = "pause:"
TYPE = "pause"
T = TypeVar("T", bound=Mapping[str, Any])

#: A pause note's bound (characters).
MAX_NOTE = 1000


def doc_id(name: str) -> str:
    return PREFIX + name


def is_pause_doc(doc: Mapping[str, Any]) -> bool:
    """A worker name's pause document (its id says so; deleted or not)."""
    task_id = doc.get("_id")
    return isinstance(task_id, str) and task_id.startswith(PREFIX)


def name_of(pause_id: str) -> str | None:
    """The worker name a ``pause:<name>`` id pauses, or None if it names no valid worker."""
    if not pause_id.startswith(PREFIX):
        return None
    name = pause_id[len(PREFIX) :]
    return name if schema.valid_name(name) else None


def info(by: str, at: datetime, note: str | None) -> dict[str, Any]:
    """The ``paused`` value: who, when, why."""
    return {"by": by, "at": timing.fmt(at), "note": note}


def note_of(body: Any) -> str | None:
    """The note of a pause request's body (``{"note": ...}``, optional), or InvalidInput naming the field."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise InvalidInput('body: expected an object {"note": ...} or no body', field="body")
    unknown = sorted(set(body) - {"note"})
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field", field=unknown[0])
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise InvalidInput(f"note: expected a string or null, got {note!r:.80}", field="note")
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInput(f"note: at most {MAX_NOTE} characters", field="note")
    return note


# -- tasks ---------------------------------------------------------------------------------------


def task_paused(task: Mapping[str, Any]) -> bool:
    return isinstance(task.get("paused"), Mapping)


def held(task: Mapping[str, Any], paused_names: Container[str]) -> str | None:
    """Why a task must not start now: ``"task"`` (itself paused), ``"worker"`` (its worker
    name paused), or None. Only pending tasks are held: a cancel, a lease recovery, a
    running task's outcome go on as usual."""
    if task.get("status") not in model.PENDING:
        return None
    if task_paused(task):
        return "task"
    if task.get("worker") in paused_names:
        return "worker"
    return None


def split(tasks: Iterable[T], paused_names: Container[str]) -> tuple[list[T], list[T], list[T]]:
    """``tasks`` as (to plan, held by their own pause, held by their worker name's pause)."""
    free: list[T] = []
    by_task: list[T] = []
    by_worker: list[T] = []
    for task in tasks:
        why = held(task, paused_names)
        (free if why is None else by_task if why == "task" else by_worker).append(task)
    return free, by_task, by_worker


def paused_task(doc: Mapping[str, Any], *, by: str, now: datetime, note: str | None, limit: int) -> dict[str, Any]:
    """``doc`` paused (a new revision), or 409 if it is finished. Already paused: unchanged
    (the first pause's who/when/why stay). A claimed task not yet accepted by its worker
    (``schedule``) goes back to ``waiting``. A running one (``scheduled``: accepted, which
    for a task claimed ahead is up to ``scheduler.claim_ahead`` before its due time) keeps
    running; its next occurrence (cron) or retry is written with ``paused`` kept, so it
    does not start."""
    status = doc.get("status")
    if status in model.TERMINAL:
        raise Conflict(f"the task is {status}: a finished task has nothing to pause (reschedule it to run it again)", field="status")
    out = dict(doc)
    if task_paused(out):
        return out
    out["paused"] = info(by, now, note)
    out["updated"] = timing.fmt(now)
    reason = "paused" + (f": {note}" if note else "")
    if status == model.SCHEDULE:
        # Claimed (ahead of its time) but not started: released, no attempt spent; its
        # worker's acceptance then conflicts and it lets the task go.
        out.pop("lease", None)
        return model.set_status(out, model.WAITING, by, now, limit=limit, reason=reason)
    model.add_history(out, str(status), by, now, limit=limit, reason=reason)
    return out


def resumed_task(doc: Mapping[str, Any], *, by: str, now: datetime, limit: int) -> dict[str, Any]:
    """``doc`` with its pause cleared (a new revision); unchanged if it was not paused.

    The scheduler then sees it as it sees any task: an overdue date follows the misfire
    policy (see the module's docstring)."""
    out = dict(doc)
    if not task_paused(out):
        return out
    out["paused"] = None
    out["updated"] = timing.fmt(now)
    model.add_history(out, str(out.get("status")), by, now, limit=limit, reason="resumed")
    return out


# -- worker names ----------------------------------------------------------------------------------


def worker_pause_doc(name: str, *, by: str, now: datetime, note: str | None) -> dict[str, Any]:
    """The document that pauses worker name ``name`` on every daemon of the database."""
    return {"_id": doc_id(name), "type": TYPE, "worker": name, **info(by, now, note)}


def shown(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A pause document as ``paused`` is shown (``{by, at, note}``), whatever a direct writer put there."""
    return {k: (doc.get(k) if isinstance(doc.get(k), str) else None) for k in ("by", "at", "note")}


class PausedNames:
    """The worker names paused on this database, as this daemon last saw their documents.

    Fed by the scheduler (window load, changes feed); plain data, so tests drive it
    directly. A document that is deleted, or is not ``type: "pause"``, or names no valid
    worker, pauses nothing.
    """

    def __init__(self) -> None:
        self.names: dict[str, dict[str, Any]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def observe(self, doc: Mapping[str, Any]) -> tuple[str | None, bool]:
        """Take one pause document (or its deletion) in: (the name, whether it resumed now)."""
        name = name_of(str(doc.get("_id", "")))
        if name is None:
            return None, False
        if doc.get("_deleted") or doc.get("type") != TYPE:
            return name, self.names.pop(name, None) is not None
        self.names[name] = shown(doc)
        return name, False

    def replace(self, docs: Iterable[Mapping[str, Any]]) -> list[str]:
        """All the pause documents there are (a full load): the names that resumed meanwhile."""
        before = set(self.names)
        self.names = {}
        for doc in docs:
            self.observe(doc)
        return sorted(before - set(self.names))

    def paused(self, name: str) -> dict[str, Any] | None:
        return self.names.get(name)


def annotate(workers: Iterable[dict[str, Any]], names: PausedNames) -> list[dict[str, Any]]:
    """Workers as ``GET /workers`` lists them, each with ``paused`` (its name's pause, or null)."""
    return [{**w, "paused": names.paused(str(w.get("name")))} for w in workers]


# -- the published forms -------------------------------------------------------------------------------

PAUSED_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "paused: who, when, why (null: not paused)",
    "properties": {"by": {"type": ["string", "null"]}, "at": {"type": ["string", "null"]}, "note": {"type": ["string", "null"]}},
}


def openapi_schemas() -> dict[str, Any]:
    """The bodies of the pause routes, for ``components.schemas``."""
    return {
        "PauseRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"note": {"type": ["string", "null"], "maxLength": MAX_NOTE, "description": "why (shown with the pause)"}},
        },
        "WorkerPause": {
            "type": "object",
            "required": ["name", "paused"],
            "properties": {"name": {"type": "string"}, "paused": PAUSED_SCHEMA},
        },
    }
