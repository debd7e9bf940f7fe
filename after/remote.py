"""Remote workers' sessions and the tasks offered to them: plain data and the rules over it.

A remote worker (any program speaking docs/worker-protocol.md over the REST port)
connects and gets a :class:`Session`. Each task the scheduler claims for it becomes an
:class:`Offer` of that session: delivered by a poll, accepted (After writes
``scheduled``), reported on by heartbeats, and finished. The I/O (the HTTP calls, the
writes) is in :mod:`after.remotes` and :mod:`after.remoterunner`; what is due for
delivery, when a session has expired, how much room it has and what a finish report
means are decided here, over data, so tests drive them with tables and a fake clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from after import timing
from after.jobs import TaskContext

#: A delivered offer neither accepted nor discarded is delivered again after this long
#: (the poll's answer may have been lost on the way).
REDELIVER_AFTER = 5.0

#: How often a remote worker is asked to call (any call of the protocol counts), as a
#: share of its session timeout.
HEARTBEAT_SHARE = 1 / 6

class SessionLost(Exception):
    """The session of an offer ended (expired, disconnected, or the daemon stops)."""


@dataclasses.dataclass
class Outcome:
    """A remote worker's report on a task, as the runner turns it into the task's end."""

    kind: str  # done | fail | canceled
    result: Any = None
    error: dict[str, Any] | None = None


@dataclasses.dataclass
class Offer:
    """One claim of a task, offered to one session. Its futures are what the runner
    awaits and the HTTP calls resolve."""

    doc: dict[str, Any]
    lease: str
    #: time.monotonic() of the last delivery (None: never delivered).
    delivered: float | None = None
    #: Set by the accept call (True) or a discard (an Outcome), failed by SessionLost.
    decision: asyncio.Future[Outcome | None] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())
    #: The accepted document (``scheduled``), once written: the accept call's answer.
    accepted: asyncio.Future[dict[str, Any]] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())
    #: The worker's finish report.
    outcome: asyncio.Future[Outcome] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())
    #: The stored status once the end is written (the finish call's answer).
    ended: asyncio.Future[str] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())
    #: A client asked to cancel it while it runs: the next heartbeat answer says so.
    cancel: bool = False
    #: A poll has answered with that cancel: later polls list it, but do not answer early for it.
    cancel_told: bool = False
    ctx: TaskContext | None = None

    @property
    def task_id(self) -> str:
        return str(self.doc["_id"])

    def is_accepted(self) -> bool:
        return self.accepted.done() and not self.accepted.cancelled() and self.accepted.exception() is None

    def lose(self, why: str) -> None:
        """The session ended: whoever waits on this offer learns it."""
        for fut in (self.decision, self.accepted, self.outcome):
            if not fut.done():
                fut.set_exception(SessionLost(why))
                fut.exception()  # retrieved: not every future has a waiter
        if not self.ended.done():
            self.ended.cancel()


@dataclasses.dataclass
class Session:
    """One connection of a remote worker, as this daemon holds it."""

    id: str
    worker: str
    host: str
    address: str
    concurrency: int
    connected: float  # wall clock (time.time())
    seen: float  # time.monotonic() of its last call
    seen_wall: float
    jobs: list[str] = dataclasses.field(default_factory=list)
    pid: int | None = None
    client: str | None = None
    #: Task id -> its current offer (insertion order: claim order).
    offers: dict[str, Offer] = dataclasses.field(default_factory=dict)
    tasks_run: int = 0
    last_error: str | None = None
    closed: str | None = None  # why it ended
    #: Wakes a waiting poll: an offer or a cancel arrived, or the session ended.
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def touch(self, mono: float, wall: float) -> None:
        self.seen, self.seen_wall = mono, wall

    def info(self, *, running: int, live: bool) -> dict[str, Any]:
        return {
            "name": self.worker,
            "remote": True,
            "session": self.id,
            "state": "running" if self.closed is None else "stopped",
            "running": self.closed is None,
            "host": self.host,
            "address": self.address,
            "pid": self.pid,
            "client": self.client,
            "connected": timing.fmt(timing.from_ts(self.connected)),
            "last_heartbeat": timing.fmt(timing.from_ts(self.seen_wall)),
            "concurrency": self.concurrency,
            "running_tasks": running,
            "tasks_run": self.tasks_run,
            "last_error": self.last_error,
            "jobs": self.jobs or None,
            "live": live,
        }


def new_session_id() -> str:
    return "s-" + secrets.token_urlsafe(18)


def heartbeat_interval(timeout: float) -> float:
    """How often a worker with a session ``timeout`` is asked to call."""
    return round(max(0.5, timeout * HEARTBEAT_SHARE), 2)


def expired(session: Session, mono: float, *, timeout: float) -> bool:
    """A session whose worker has not called for ``timeout`` seconds has vanished."""
    return mono - session.seen > timeout


def deliverable(offers: Iterable[Offer], mono: float, *, limit: int, redeliver_after: float = REDELIVER_AFTER) -> list[Offer]:
    """The offers a poll answers with, oldest claim first, at most ``limit``: those not
    yet decided (accepted or discarded) and either never delivered or delivered more
    than ``redeliver_after`` seconds ago."""
    out: list[Offer] = []
    for offer in offers:
        if len(out) >= limit:
            break
        if offer.decision.done():
            continue
        if offer.delivered is None or mono - offer.delivered > redeliver_after:
            out.append(offer)
    return out


def cancels(offers: Iterable[Offer]) -> list[str]:
    """The accepted tasks of a session whose cancel was asked: the poll's ``cancel`` list."""
    return [o.task_id for o in offers if o.cancel and not o.outcome.done()]


def start_at(doc: Mapping[str, Any], now: float) -> tuple[str, float]:
    """When a delivered task's job starts: its due time (ISO) and the seconds left to it."""
    due = timing.due_at(doc)
    at = due.timestamp() if due is not None else now
    return timing.fmt(timing.from_ts(at)), round(max(0.0, at - now), 3)


def delivery(offer: Offer, now: float, *, timeout: float) -> dict[str, Any]:
    """One task as a poll delivers it."""
    doc = offer.doc
    raw = doc.get("job")
    job: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    at, left = start_at(doc, now)
    task = {k: v for k, v in doc.items() if k != "_rev"}
    return {
        "id": offer.task_id,
        "lease": offer.lease,
        "job": {"name": job.get("name"), "arguments": list(job.get("arguments") or []), "kwargs": dict(job.get("kwargs") or {})},
        "start_at": at,
        "start_in": left,
        "timeout": timeout,
        "attempt": int(doc.get("attempts") or 0) + 1,
        "dependencies": dict(doc.get("dependencies") or {}),
        "task": task,
    }


def outcome_of(body: Mapping[str, Any]) -> Outcome:
    """A finish report (checked by :class:`after.wireschema.Finish`) as the task's end.

    ``failed`` follows the task's retry policy unless ``error.retryable`` is false;
    ``discarded`` (the task is invalid for this worker) is never retried.
    """
    status = body.get("status")
    if status == "done":
        return Outcome("done", body.get("result"))
    if status == "canceled":
        return Outcome("canceled")
    raw = body.get("error") or {}
    if isinstance(raw, str):
        raw = {"message": raw}
    message = raw.get("message")
    if status == "discarded":
        error = {"reason": "discarded", "type": "discarded", "message": message or "discarded by the worker: not a task it can run", "retryable": False}
        return Outcome("fail", None, error)
    error = {
        "reason": raw.get("reason") or "failed",
        "type": raw.get("type") or "remote",
        "message": message or "the remote job failed",
        "retryable": raw.get("retryable", True),
    }
    if raw.get("traceback"):
        error["traceback"] = raw["traceback"][-8000:]
    return Outcome("fail", body.get("result"), error)


def progress_of(body: Mapping[str, Any]) -> tuple[tuple[float, float | None] | None, list[str]]:
    """A heartbeat's (or finish's) ``progress`` and ``log`` lines."""
    raw = body.get("progress")
    progress = None if raw is None else (float(raw.get("done") or 0), None if raw.get("total") is None else float(raw["total"]))
    return progress, list(body.get("log") or [])
