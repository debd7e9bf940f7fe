"""The task document: statuses, who may write which, allowed transitions, validation.

A task is kept as the plain JSON dict CouchDB stores (``_id``, ``_rev`` included), so
what the REST API returns is exactly what is stored. This module builds new documents
from user input (strictly: an unknown field is an error) and checks documents that
arrived any other way (directly written into CouchDB, replicated): those are checked
leniently and, when unusable, ended ``err`` with the reason instead of crashing anything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from after import timing
from after.errors import InvalidInput, Unprocessable

WAITING = "waiting"
SCHEDULE = "schedule"
SCHEDULED = "scheduled"
DONE = "done"
ERR = "err"
RESCHEDULE = "reschedule"
CANCEL = "cancel"
CANCELED = "canceled"

STATUSES = (WAITING, SCHEDULE, SCHEDULED, DONE, ERR, RESCHEDULE, CANCEL, CANCELED)
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

TASK_FIELDS = {
    "_id",
    "id",
    "worker",
    "date",
    "job",
    "cron",
    "timezone",
    "priority",
    "timeout",
    "expires",
    "retry",
    "misfire",
    "retention",
    "overlap",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


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


def _require(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in body:
        raise InvalidInput(f"{key}: required ({what})", field=key)
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidInput(f"{key}: expected {what}, got {value!r}", field=key)
    return value


def _number(body: Mapping[str, Any], key: str, *, minimum: float, allow_none: bool = True) -> float | None:
    value = body.get(key)
    if value is None:
        if allow_none:
            return None
        raise InvalidInput(f"{key}: required", field=key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise InvalidInput(f"{key}: expected a number >= {minimum}, got {value!r}", field=key)
    return float(value)


def normalize_job(value: Any, *, field: str = "job") -> dict[str, Any]:
    """``"name"`` or ``{"name", "arguments", "kwargs"}`` -> the stored job object."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field}: expected an object with a name", field=field)
    unknown = set(value) - {"name", "arguments", "kwargs"}
    if unknown:
        raise InvalidInput(f"{field}: unknown field {sorted(unknown)[0]!r}", field=f"{field}.{sorted(unknown)[0]}")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{field}.name: required (the job's registered name)", field=f"{field}.name")
    args = value.get("arguments", [])
    if not isinstance(args, list):
        raise InvalidInput(f"{field}.arguments: expected a list", field=f"{field}.arguments")
    kwargs = value.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise InvalidInput(f"{field}.kwargs: expected an object", field=f"{field}.kwargs")
    return {"name": name, "arguments": list(args), "kwargs": dict(kwargs)}


def normalize_retry(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"max": value}
    if not isinstance(value, Mapping):
        raise InvalidInput("retry: expected an object {max, backoff, delay}", field="retry")
    unknown = set(value) - {"max", "backoff", "delay", "max_delay"}
    if unknown:
        raise InvalidInput(f"retry: unknown field {sorted(unknown)[0]!r}", field="retry")
    mx = value.get("max", 0)
    if isinstance(mx, bool) or not isinstance(mx, int) or mx < 0:
        raise InvalidInput(f"retry.max: expected an integer >= 0, got {mx!r}", field="retry.max")
    backoff = value.get("backoff", "fixed")
    if backoff not in ("fixed", "exponential"):
        raise InvalidInput("retry.backoff: expected 'fixed' or 'exponential'", field="retry.backoff")
    out: dict[str, Any] = {"max": mx, "backoff": backoff}
    for key in ("delay", "max_delay"):
        num = _number(value, key, minimum=0)
        if num is not None:
            out[key] = num
    out.setdefault("delay", 10.0)
    return out


def normalize_misfire(value: Any) -> dict[str, Any]:
    if value is None:
        return {"policy": "run", "grace": None}
    if isinstance(value, str):
        value = {"policy": value}
    if not isinstance(value, Mapping):
        raise InvalidInput("misfire: expected an object {policy, grace}", field="misfire")
    policy = value.get("policy", "run")
    if policy not in ("run", "skip", "coalesce"):
        raise InvalidInput("misfire.policy: expected 'run', 'skip' or 'coalesce'", field="misfire.policy")
    grace = _number(value, "grace", minimum=0)
    return {"policy": policy, "grace": grace}


def new_task(body: Any, *, now: datetime, by: str = "api", history_limit: int = 50) -> dict[str, Any]:
    """Build a stored task document from user input, or raise InvalidInput naming the field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("a task must be a JSON object")
    unknown = set(body) - TASK_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{name}: unknown field", field=name)
    worker = _require(body, "worker", str, "the name of the worker that runs it")
    if not _NAME.match(worker):
        raise InvalidInput(f"worker: invalid name {worker!r} (letters, digits, _ . @ -)", field="worker")
    if "job" not in body:
        raise InvalidInput('job: required ({"name": ..., "arguments": [...]})', field="job")
    job = normalize_job(body["job"])
    cron = body.get("cron")
    tz = body.get("timezone")
    if tz is not None:
        if not isinstance(tz, str):
            raise InvalidInput("timezone: expected a zone name like 'Europe/Lisbon'", field="timezone")
        timing.zone(tz)
    if cron is not None:
        timing.check_cron(cron)
    if body.get("date") is not None:
        due = timing.parse_date(body["date"])
    elif cron:
        due = timing.next_cron(cron, now, tz=tz)
    else:
        raise InvalidInput("date: required (ISO 8601, epoch seconds, or a cron expression)", field="date")
    doc: dict[str, Any] = {
        "_id": _task_id(body),
        "type": "task",
        "worker": worker,
        "date": timing.fmt(due),
        "job": job,
        "status": WAITING,
        "priority": 0,
        "timeout": None,
        "expires": None,
        "retry": normalize_retry(body.get("retry")),
        "misfire": normalize_misfire(body.get("misfire")),
        "attempts": 0,
        "result": None,
        "error": None,
        "created": timing.fmt(now),
        "updated": timing.fmt(now),
        "history": [],
    }
    prio = body.get("priority", 0)
    if isinstance(prio, bool) or not isinstance(prio, int):
        raise InvalidInput(f"priority: expected an integer, got {prio!r}", field="priority")
    doc["priority"] = prio
    doc["timeout"] = _number(body, "timeout", minimum=0.001)
    if body.get("expires") is not None:
        doc["expires"] = timing.fmt(timing.parse_date(body["expires"], field="expires"))
    if cron is not None:
        doc["cron"] = cron
        doc["timezone"] = tz or "UTC"
        doc["runs"] = []
    elif tz is not None:
        raise Unprocessable("timezone: only meaningful with cron", field="timezone")
    if body.get("retention") is not None:
        doc["retention"] = _number(body, "retention", minimum=0)
    overlap = body.get("overlap")
    if overlap is not None:
        if overlap not in ("wait", "skip"):
            raise InvalidInput("overlap: expected 'wait' or 'skip'", field="overlap")
        doc["overlap"] = overlap
    add_history(doc, WAITING, by, now, limit=history_limit)
    return doc


def _task_id(body: Mapping[str, Any]) -> str:
    given = body.get("_id", body.get("id"))
    if given is None:
        return new_id()
    if not isinstance(given, str) or not given or given.startswith("_") or len(given) > 200:
        raise InvalidInput("id: expected a string not starting with '_'", field="id")
    return given if given.startswith("task:") else "task:" + given


def problem(doc: Mapping[str, Any]) -> str | None:
    """Why a stored pending task cannot run, or None. For documents written straight into CouchDB."""
    worker = doc.get("worker")
    if not isinstance(worker, str) or not _NAME.match(worker):
        return f"invalid worker {worker!r}"
    try:
        normalize_job(doc.get("job"))
        timing.parse_date(doc.get("date"))
        if doc.get("cron") is not None:
            timing.check_cron(doc["cron"])
            timing.zone(doc.get("timezone"))
        if doc.get("retry") is not None:
            normalize_retry(doc.get("retry"))
        if doc.get("misfire") is not None:
            normalize_misfire(doc.get("misfire"))
        if doc.get("expires") is not None:
            timing.parse_date(doc["expires"], field="expires")
    except InvalidInput as exc:
        return exc.message
    prio = doc.get("priority", 0)
    if prio is not None and (isinstance(prio, bool) or not isinstance(prio, int)):
        return f"priority: expected an integer, got {prio!r}"
    timeout = doc.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        return f"timeout: expected a number > 0, got {timeout!r}"
    return None


def is_task(doc: Mapping[str, Any]) -> bool:
    return doc.get("type") == "task" and not str(doc.get("_id", "")).startswith("_design/")
