"""Completion webhooks, the decisions: who is told of which outcome, what is sent, how it is
signed, when it is tried again, and what the task records. Plain code over data (no I/O, the
clock passed in): :mod:`after.notifier` does the sending and the writes.

Why decided from the document alone: every daemon sees every task's changes (the ``_changes``
feed), and any of them may be the one that delivers. What a task has been told is in the task
(``deliveries``), so the decision is the same whichever daemon makes it, after a restart too:

- an *outcome* is a final status of the task (``done``, ``err``, ``canceled``) or, for a cron
  task, each run recorded in ``runs``; it is known by its time (:func:`outcomes`);
- the outcomes still to deliver are those newer than every delivery recorded
  (:func:`watermark`), and not older than ``max_age`` (a daemon back after a long outage does
  not flood receivers with old news), to each hook (the task's ``notify`` and the
  configuration's ``[[notify.hooks]]``, one per URL) whose ``on`` names them (:func:`pending`);
- a delivery is claimed by writing it into ``deliveries`` (state ``sending``) with the
  revision read: of two daemons claiming it, one gets a conflict, reads the task again and
  finds nothing left to claim. So exactly one daemon delivers each outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from after import timing
from after.errors import InvalidInput

OUTCOMES = ("done", "err", "canceled")
#: The header names of a delivery.
SIGNATURE = "X-After-Signature"
TIMESTAMP = "X-After-Timestamp"
DELIVERY = "X-After-Delivery"
#: A task that is claimed (``schedule``) or was accepted this recently (``scheduled``) is not
#: written to: the worker's acceptance, and the lease renewal right after it, are written with
#: the revision of the claim, and a conflict there would cost the run (see :func:`writable`).
SETTLE_SECONDS = 10.0


#: One entry of a task's ``deliveries``, as ``/openapi.json`` publishes it (the Task schema).
DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a webhook delivery (written by After)",
    "properties": {
        "id": {"type": "string", "description": "the delivery id (the X-After-Delivery header)"},
        "url": {"type": "string"},
        "outcome": {"enum": list(OUTCOMES)},
        "for": {"type": "string", "description": "the time of the outcome it tells of"},
        "occurrence": {"type": ["string", "null"], "description": "a cron run's nominal time"},
        "state": {"enum": ["sending", "delivered", "failed"]},
        "status": {"type": ["integer", "null"], "description": "the HTTP status of the last attempt (null: no answer)"},
        "attempts": {"type": "integer"},
        "at": {"type": "string", "description": "when claimed, then when the last attempt ended"},
        "error": {"type": ["string", "null"]},
        "daemon": {"type": "string", "description": "the daemon that claimed it"},
    },
}


@dataclass(frozen=True)
class Outcome:
    """One final outcome of a task (a cron task: one run's)."""

    status: str
    at: str
    started: str | None = None
    finished: str | None = None
    occurrence: str | None = None
    error: Any = None
    result: Any = None
    latest: bool = True


@dataclass(frozen=True)
class Delivery:
    """One outcome to one URL."""

    id: str
    task: str
    url: str
    outcome: Outcome


def _time(value: Any) -> datetime | None:
    try:
        return timing.parse_date(value)
    except (InvalidInput, TypeError, ValueError):
        return None


def _last_at(doc: Mapping[str, Any], status: str) -> str | None:
    for entry in reversed(doc.get("history") or []):
        if isinstance(entry, Mapping) and entry.get("status") == status and isinstance(entry.get("at"), str):
            return str(entry["at"])
    updated = doc.get("updated")
    return updated if isinstance(updated, str) else None


def outcomes(doc: Mapping[str, Any]) -> list[Outcome]:
    """The task's final outcomes, oldest first: each cron run in ``runs`` that ended ``done``
    or ``err``, and the task's own status when it is final (unless that is the last run's)."""
    out: list[Outcome] = []
    runs = doc.get("runs") if doc.get("cron") else None
    finished_last = doc.get("finished")
    for run in runs if isinstance(runs, list) else []:
        if not isinstance(run, Mapping) or run.get("status") not in OUTCOMES or not isinstance(run.get("finished"), str):
            continue
        latest = run.get("finished") == finished_last
        out.append(
            Outcome(
                status=str(run["status"]),
                at=run["finished"],
                started=run.get("started"),
                finished=run["finished"],
                occurrence=run.get("occurrence") or run.get("date"),
                error=run.get("error"),
                result=doc.get("result") if latest else None,
                latest=latest,
            )
        )
    status = doc.get("status")
    if status in OUTCOMES:
        at = _last_at(doc, str(status))
        if at is not None and not any(o.status == status and o.at in (at, finished_last) for o in out):
            out.append(
                Outcome(
                    status=str(status),
                    at=at,
                    started=doc.get("started"),
                    finished=doc.get("finished") if status != "canceled" else at,
                    occurrence=doc.get("occurrence"),
                    error=doc.get("error"),
                    result=doc.get("result"),
                )
            )
    return out


def hooks(doc: Mapping[str, Any], global_hooks: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """URL -> the outcomes it wants: the task's ``notify`` and the global hooks, merged by URL
    (a URL named twice is told once)."""
    out: dict[str, set[str]] = {}
    notify = doc.get("notify")
    for hook in [*(notify if isinstance(notify, list) else []), *global_hooks]:
        if not isinstance(hook, Mapping) or not isinstance(hook.get("url"), str):
            continue
        on = hook.get("on")
        wanted = set(on) & set(OUTCOMES) if isinstance(on, list) else set(OUTCOMES)
        out.setdefault(hook["url"], set()).update(wanted)
    return out


def watermark(doc: Mapping[str, Any]) -> datetime | None:
    """The time of the newest outcome a delivery is recorded for (None: none)."""
    times = [_time(d.get("for")) for d in doc.get("deliveries") or [] if isinstance(d, Mapping)]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def delivery_id(task_id: str, outcome: Outcome, url: str) -> str:
    """The same for every daemon and every attempt: receivers may deduplicate on it."""
    digest = hashlib.sha256(f"{task_id}\n{outcome.status}\n{outcome.at}\n{url}".encode()).hexdigest()
    return "dlv-" + digest[:24]


def pending(doc: Mapping[str, Any], global_hooks: Sequence[Mapping[str, Any]], *, now: datetime, max_age: float) -> list[Delivery]:
    """The deliveries this task's document calls for that no daemon has claimed yet."""
    task_id = doc.get("_id")
    if not isinstance(task_id, str) or doc.get("type") != "task":
        return []
    wanted = hooks(doc, global_hooks)
    if not wanted:
        return []
    mark = watermark(doc)
    out = []
    for outcome in outcomes(doc):
        at = _time(outcome.at)
        if at is None or (mark is not None and at <= mark) or (now - at).total_seconds() > max_age:
            continue
        for url, on in wanted.items():
            if outcome.status in on:
                out.append(Delivery(delivery_id(task_id, outcome, url), task_id, url, outcome))
    return out


def writable(doc: Mapping[str, Any], now: datetime) -> bool:
    """Whether a delivery record may be written into the task now (see :data:`SETTLE_SECONDS`)."""
    status = doc.get("status")
    if status == "schedule":
        return False
    if status == "scheduled":
        # Accepted ahead of its due time, a task's lease may be renewed when it starts: settled
        # once both its acceptance and its due time are SETTLE_SECONDS past.
        times = [t for t in (_time(_last_at(doc, "scheduled")), _time(doc.get("date"))) if t is not None]
        return bool(times) and (now - max(times)).total_seconds() >= SETTLE_SECONDS
    return True


# -- what is sent ---------------------------------------------------------------------------


def payload(doc: Mapping[str, Any], delivery: Delivery) -> dict[str, Any]:
    """The JSON body: which task, which outcome, with what result or error."""
    o = delivery.outcome
    job = doc.get("job")
    return {
        "delivery": delivery.id,
        "task": delivery.task,
        "worker": doc.get("worker"),
        "job": job.get("name") if isinstance(job, Mapping) else job,
        "outcome": o.status,
        "status": o.status,
        "result": o.result,
        "error": o.error,
        "attempts": doc.get("attempts"),
        "started": o.started,
        "finished": o.finished,
        "occurrence": o.occurrence,
        "cron": doc.get("cron"),
        "at": o.at,
    }


def body(data: Mapping[str, Any]) -> bytes:
    """The bytes signed and sent (compact, keys sorted: the same payload, the same bytes)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign(secret: str, data: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, body)>``, the ``X-After-Signature`` header."""
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify(secret: str, data: bytes, header: str) -> bool:
    """What a receiver does (here for tests and the README): constant-time comparison."""
    return hmac.compare_digest(sign(secret, data), header)


def headers(secret: str, data: bytes, delivery: str, timestamp: int) -> dict[str, str]:
    out = {"Content-Type": "application/json", TIMESTAMP: str(timestamp), DELIVERY: delivery, "User-Agent": "After-Webhooks"}
    if secret:
        out[SIGNATURE] = sign(secret, data)
    return out


# -- retries ----------------------------------------------------------------------------------


def verdict(status: int | None) -> str:
    """``ok`` (2xx), ``retry`` (no answer: connection error or timeout; 5xx, 408, 429) or
    ``give_up`` (any other answer: the receiver refuses this delivery for good)."""
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "ok"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "give_up"


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1 = the first): base, 2 base, 4 base
    ... at most ``cap``."""
    return float(min(cap, base * 2.0 ** max(0, min(attempt - 1, 60))))


def schedule(attempts: int, *, base: float, cap: float) -> list[float]:
    """Every wait of a delivery that fails ``attempts`` times (one fewer than its attempts)."""
    return [backoff(i, base=base, cap=cap) for i in range(1, attempts)]


# -- what the task records --------------------------------------------------------------------


def bounded(entries: Iterable[Any], keep: int) -> list[Any]:
    """The newest ``keep`` records."""
    items = list(entries)
    return items[-keep:] if keep > 0 else []


def claimed(doc: Mapping[str, Any], deliveries: Sequence[Delivery], *, daemon: str, now: datetime, keep: int) -> dict[str, Any]:
    """The task with ``deliveries`` claimed (state ``sending``): written with its revision."""
    out = dict(doc)
    records = list(doc.get("deliveries") or [])
    known = {r.get("id") for r in records if isinstance(r, Mapping)}
    for d in deliveries:
        if d.id in known:
            continue
        records.append(
            {
                "id": d.id,
                "url": d.url,
                "outcome": d.outcome.status,
                "for": d.outcome.at,
                "occurrence": d.outcome.occurrence,
                "state": "sending",
                "status": None,
                "attempts": 0,
                "at": timing.fmt(now),
                "error": None,
                "daemon": daemon,
            }
        )
    out["deliveries"] = bounded(records, keep)
    return out


def recorded(doc: Mapping[str, Any], delivery_id: str, result: Mapping[str, Any], *, keep: int) -> dict[str, Any] | None:
    """The task with one delivery's result (state, status, attempts, at, error) written into
    its record; None if the record is gone (bounded out, or the task was rewritten)."""
    records = [dict(r) if isinstance(r, Mapping) else r for r in doc.get("deliveries") or []]
    for record in records:
        if isinstance(record, dict) and record.get("id") == delivery_id:
            record.update(result)
            out = dict(doc)
            out["deliveries"] = bounded(records, keep)
            return out
    return None
