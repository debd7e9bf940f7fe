"""What becomes of a document that cannot be scheduled, and of a task that made code fail.

Pure functions over data (no I/O, no clock), used by the scheduler's tick:

- :func:`ended_invalid`: the ``err`` document (reason ``invalid``, naming the field) that
  ends a document which looks like a task but is not a valid one: written straight into
  CouchDB with a string where an object belongs, a cron that never fires, no ``type``,
  a status After does not know.
- :func:`ended_internal`: the ``err`` document (reason ``internal``) that ends a task
  whose handling raised an unexpected exception: one task's bad luck (or our bug) is
  contained to that task, instead of stopping the tick for every other one.
- :func:`plan_contained`: :func:`after.timing.plan`, but a task on which planning fails
  is set apart instead of failing the whole plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from after import model, timing


def _ended(doc: Mapping[str, Any], error: dict[str, Any], *, reason: str, by: str, now: datetime, limit: int) -> dict[str, Any]:
    """``doc`` ended ``err`` with ``error``.

    ``type`` is set to ``task`` so the document shows in every listing (a document whose
    id says it is a task but which lacks the type would otherwise be invisible), and a
    lease is dropped: no worker runs a task that ended. A history of another shape than
    After's is started anew.
    """
    bad = {k: v for k, v in doc.items() if k not in ("lease", "_conflicts")}
    bad["type"] = "task"
    if not isinstance(bad.get("history"), list) or not all(isinstance(e, dict) for e in bad["history"]):
        bad["history"] = []
    bad["error"] = error
    return model.set_status(bad, model.ERR, by, now, limit=limit, reason=reason)


def ended_invalid(doc: Mapping[str, Any], message: str, field: str | None, *, by: str, now: datetime, limit: int) -> dict[str, Any]:
    """``doc`` ended ``err``: ``error`` = ``{reason: invalid, message, field}``."""
    error: dict[str, Any] = {"reason": "invalid", "type": "invalid", "message": message}
    if field:
        error["field"] = field
    return _ended(doc, error, reason=f"invalid: {message}", by=by, now=now, limit=limit)


def ended_internal(doc: Mapping[str, Any], exc: BaseException, *, where: str, by: str, now: datetime, limit: int) -> dict[str, Any]:
    """``doc`` ended ``err`` with reason ``internal``: handling it raised ``exc`` in ``where``."""
    message = f"{where}: {type(exc).__name__}: {exc}"[:2000]
    error = {"reason": "internal", "type": type(exc).__name__, "message": message}
    return _ended(doc, error, reason="internal", by=by, now=now, limit=limit)


def plan_contained(now: datetime, tasks: Sequence[Mapping[str, Any]], *, ahead: float) -> tuple[list[timing.Action], list[tuple[Mapping[str, Any], Exception]]]:
    """The plan of ``tasks``, and the tasks planning failed on (each with its exception).

    The common case is one call of :func:`after.timing.plan`; only when it raises is each
    task planned alone to find the ones at fault, and the rest planned together again.
    """
    try:
        return timing.plan(now, tasks, ahead=ahead), []
    except Exception:
        pass
    good: list[Mapping[str, Any]] = []
    failed: list[tuple[Mapping[str, Any], Exception]] = []
    for task in tasks:
        try:
            timing.plan(now, [task], ahead=ahead)
        except Exception as exc:
            failed.append((task, exc))
        else:
            good.append(task)
    return timing.plan(now, good, ahead=ahead), failed
