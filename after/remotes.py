"""This daemon's remote workers: their sessions, and the dispatcher the scheduler sends
their claimed tasks to.

The HTTP handlers of the worker protocol (:mod:`after.api.workerapi`) call the verbs
here (connect, poll, accept, heartbeat, finish, disconnect); each session's
:class:`after.remoterunner.RemoteRunner` makes the writes. A reaper ends sessions whose
worker stopped calling (:func:`after.remote.expired`), which hands their tasks back.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from after import remote
from after.config import Settings
from after.errors import Conflict, InvalidInput, SessionGone
from after.remote import Offer, Session, SessionLost
from after.remoterunner import RemoteRunner
from after.store import Store
from after.supervisor import room

log = logging.getLogger("after.remote")

#: The longest a poll may wait for a task.
MAX_WAIT = 60.0
#: How many ended claims are remembered for repeated finish calls.
ENDED_KEPT = 10_000
#: The longest a finish call waits for its outcome to be written before answering 202.
FINISH_WAIT = 30.0


class RemoteWorkers:
    """The remote sessions held by this daemon, by id, and a dispatcher over them."""

    def __init__(self, store: Store, settings: Settings, *, on_change: Callable[[str], None], local: Callable[[str], bool] = lambda name: False) -> None:
        self.store = store
        self.settings = settings
        self.on_change = on_change
        #: Whether a name runs as a local worker process here (then it cannot connect remotely).
        self.local = local
        self.sessions: dict[str, Session] = {}
        self.runners: dict[str, RemoteRunner] = {}
        self.timeout = settings.scheduler_lease_seconds
        self.stopping = False
        self._reaper: asyncio.Task[None] | None = None
        #: (task id, lease) -> stored status of claims ended lately: a finish repeated
        #: because its answer was lost gets the same answer, not a 409.
        self.ended: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        #: Called with (worker, job name, seconds after its due time) / (worker, job, status).
        self.start_observers: list[Callable[[str, str, float], None]] = []
        self.finish_observers: list[Callable[[str, str, str | None], None]] = []

    # -- the dispatcher (after.dispatch.Dispatcher) ---------------------------------------------

    def _live(self, worker: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.worker == worker and s.closed is None]

    def _room(self, session: Session) -> int:
        runner = self.runners[session.id]
        finishing = sum(1 for o in session.offers.values() if o.outcome.done())
        return room(session.concurrency, inflight=len(runner.running), finishing=finishing)

    def knows(self, worker: str) -> bool:
        return not self.stopping and bool(self._live(worker))

    def capacity(self, worker: str) -> int:
        if self.stopping:
            return 0
        return sum(self._room(s) for s in self._live(worker))

    def dispatch(self, worker: str, doc: dict[str, Any]) -> bool:
        sessions = self._live(worker)
        if self.stopping or not sessions:
            return False
        holder = self._holder(worker, doc["_id"])
        # A task's next claim goes where its previous one runs (the runner queues it behind it).
        # Else the one with the most room; of equals, the one heard from last.
        session = holder or max(sessions, key=lambda s: (self._room(s), s.seen))
        self.runners[session.id].submit(doc)
        return True

    def cancel(self, worker: str, task_id: str) -> bool:
        session = self._holder(worker, task_id)
        return session is not None and self.runners[session.id].cancel(task_id)

    def running_here(self, worker: str, task_id: str) -> bool:
        return self._holder(worker, task_id) is not None

    def _holder(self, worker: str, task_id: str) -> Session | None:
        for s in self._live(worker):
            if task_id in self.runners[s.id].running:
                return s
        return None

    # -- the protocol's verbs -------------------------------------------------------------------

    def connect(self, worker: str, *, host: str, address: str, concurrency: int, jobs: builtins.list[str], pid: int | None, client: str | None) -> Session:
        if self.stopping:
            raise Conflict("the daemon is shutting down: connect again later (or to another daemon)")
        if self.local(worker):
            raise Conflict(f"worker {worker!r} runs as a local worker process on this daemon: stop it first, or connect under another name", field="name")
        now, mono = time.time(), time.monotonic()
        session = Session(
            id=remote.new_session_id(),
            worker=worker,
            host=host,
            address=address,
            concurrency=concurrency,
            connected=now,
            seen=mono,
            seen_wall=now,
            jobs=jobs,
            pid=pid,
            client=client,
        )
        self.sessions[session.id] = session
        self.runners[session.id] = RemoteRunner(self.store, session, settings=self.settings, notify=lambda msg: self._notify(session, msg))
        log.info("remote worker %s connected from %s (%s, session %s, concurrency %d)", worker, host, address, session.id, concurrency)
        self._ensure_reaper()
        self.on_change(worker)
        return session

    def session(self, worker: str, session_id: Any) -> Session:
        s = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if s is None or s.worker != worker or s.closed is not None:
            raise SessionGone(f"session {session_id!r} of worker {worker!r} is unknown here (expired, or from before a restart): connect again")
        s.touch(time.monotonic(), time.time())
        return s

    async def poll(self, session: Session, *, wait: float, limit: int | None) -> dict[str, Any]:
        """The tasks to deliver now, waiting up to ``wait`` seconds for one."""
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
        while True:
            session.wake.clear()
            mono = time.monotonic()
            cap = limit if limit is not None else max(1, session.concurrency * 2)
            offers = remote.deliverable(session.offers.values(), mono, limit=cap)
            cancels = remote.cancels(session.offers.values())
            # A cancel answers a poll early once; until the worker acknowledges it, later
            # polls list it and wait as usual (else a worker polling in a loop spins).
            untold = any(not session.offers[t].cancel_told for t in cancels)
            if offers or untold or self.stopping or session.closed is not None or mono >= deadline:
                break
            # Undelivered offers that were delivered lately come due for redelivery on their own.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(deadline - mono, remote.REDELIVER_AFTER)):
                    await session.wake.wait()
        if session.closed is not None:
            raise SessionGone(f"session {session.id!r} ended ({session.closed}): connect again")
        now = time.time()
        mono = time.monotonic()
        session.touch(mono, now)
        for t in cancels:
            session.offers[t].cancel_told = True
        out = []
        for offer in offers:
            offer.delivered = mono
            out.append(remote.delivery(offer, now, timeout=self.runners[session.id]._timeout(offer.doc)))
        return {"tasks": out, "cancel": cancels, "stopping": self.stopping}

    def _offer(self, worker: str, task_id: str, lease: Any) -> tuple[Session, Offer]:
        """The live offer of ``task_id`` under ``lease`` to a session of ``worker``, else 409."""
        if not isinstance(lease, str) or not lease:
            raise InvalidInput("lease: the lease id the task was delivered with is required", field="lease")
        for s in self._live(worker):
            offer = s.offers.get(task_id)
            if offer is not None and offer.lease == lease:
                s.touch(time.monotonic(), time.time())
                return s, offer
        raise Conflict(
            f"task {task_id}: lease {lease} is not current for worker {worker!r} (taken back, canceled, timed out, finished, or its session ended): drop it"
        )

    async def accept(self, worker: str, task_id: str, lease: Any) -> dict[str, Any]:
        _session, offer = self._offer(worker, task_id, lease)
        if not offer.decision.done():
            offer.decision.set_result(None)
        elif offer.decision.result() is not None:
            raise Conflict(f"task {task_id}: discarded by this worker already")
        try:
            doc = await asyncio.shield(offer.accepted)
        except Exception as exc:  # SessionLost, or the acceptance write failing
            raise Conflict(f"task {task_id}: not accepted: {exc}") from None
        at, left = remote.start_at(doc, time.time())
        until = (doc.get("lease") or {}).get("until")
        return {"id": task_id, "lease": offer.lease, "status": doc.get("status"), "start_at": at, "start_in": left, "until": until}

    def heartbeat(self, worker: str, task_id: str, lease: Any, body: Mapping[str, Any]) -> dict[str, Any]:
        progress, lines = remote.progress_of(body)
        _session, offer = self._offer(worker, task_id, lease)
        if not offer.is_accepted():
            raise Conflict(f"task {task_id}: not accepted yet: accept it before reporting on it")
        _report(offer, progress, lines)
        return {"cancel": offer.cancel}

    async def finish(self, worker: str, task_id: str, lease: Any, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Record a worker's outcome; (HTTP status, answer) once it is written (202 if slow)."""
        outcome = remote.outcome_of(body)
        progress, lines = remote.progress_of(body)
        if isinstance(lease, str) and (task_id, lease) in self.ended:
            return 200, {"id": task_id, "status": self.ended[(task_id, lease)]}
        session, offer = self._offer(worker, task_id, lease)
        if offer.outcome.done():
            pass  # a repeated finish (its answer was lost): answer as the first one
        elif not offer.decision.done():
            # Finished without an accept: only a discard may come first.
            if body.get("status") != "discarded":
                raise Conflict(f"task {task_id}: not accepted: accept it before finishing it (or discard it)")
            offer.decision.set_result(outcome)
        elif not offer.is_accepted():
            raise Conflict(f"task {task_id}: not accepted yet")
        else:
            _report(offer, progress, lines)
            if offer.cancel and outcome.kind != "canceled":
                log.info("task %s: remote worker ended it %s after its cancel was asked", task_id, outcome.kind)
            offer.outcome.set_result(outcome)
            session.tasks_run += 1
            if outcome.error:
                session.last_error = f"{task_id}: {outcome.error.get('message')}"
        try:
            async with asyncio.timeout(FINISH_WAIT):
                status = await asyncio.shield(offer.ended)
        except (TimeoutError, asyncio.CancelledError):
            return 202, {"id": task_id, "status": "finishing"}
        self.ended[(task_id, offer.lease)] = status
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        return 200, {"id": task_id, "status": status}

    async def disconnect(self, session: Session) -> dict[str, Any]:
        released = sum(1 for o in session.offers.values() if not o.decision.done())
        running = sum(1 for o in session.offers.values() if o.is_accepted())
        await self._end(session, "disconnected")
        return {"released": released, "running": running}

    # -- sessions ending ----------------------------------------------------------------------------

    async def _end(self, session: Session, why: str) -> None:
        if session.closed is not None:
            return
        session.closed = why
        session.wake.set()
        runner = self.runners[session.id]
        if session.offers:
            held = len(session.offers)
            log.warning("remote worker %s (%s, session %s): %s with %d task(s): handed back", session.worker, session.host, session.id, why, held)
        else:
            log.info("remote worker %s (%s, session %s): %s", session.worker, session.host, session.id, why)
        runner.lose(why)
        # Its runner writes what lose() decided; then it is gone.
        if runner.running:
            await asyncio.wait(list(runner.running.values()), timeout=60)
        await runner.drain(0)
        self.sessions.pop(session.id, None)
        self.runners.pop(session.id, None)
        self.on_change(session.worker)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="remote sessions")

    async def _reap(self) -> None:
        while self.sessions and not self.stopping:
            await asyncio.sleep(1.0)
            mono = time.monotonic()
            for s in list(self.sessions.values()):
                if s.closed is None and remote.expired(s, mono, timeout=self.timeout):
                    try:
                        await self._end(s, f"no call for {self.timeout:g}s")
                    except Exception:
                        log.exception("remote session %s: ending it failed", s.id)

    async def close(self, timeout: float) -> None:
        """Daemon shutdown: no more work; offers not accepted go back; running tasks get
        up to ``timeout`` to finish, then are interrupted (their retry policy)."""
        self.stopping = True
        for s in self.sessions.values():
            s.wake.set()
            for offer in s.offers.values():
                if not offer.decision.done():
                    offer.decision.set_exception(SessionLost("the daemon stops"))
                    offer.decision.exception()
        await asyncio.gather(*(r.drain(timeout) for r in self.runners.values()))
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper

    # -- visibility ---------------------------------------------------------------------------------

    def list(self) -> builtins.list[dict[str, Any]]:
        mono = time.monotonic()
        beat = remote.heartbeat_interval(self.timeout)
        out = []
        for s in sorted(self.sessions.values(), key=lambda s: (s.worker, s.host, s.connected)):
            out.append(s.info(running=len(self.runners[s.id].running), live=s.closed is None and mono - s.seen < 2 * beat + 1))
        return out

    # -- what the runners say -----------------------------------------------------------------------

    def _notify(self, session: Session, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "started":
            for sobs in self.start_observers:
                sobs(session.worker, str(msg.get("job") or ""), float(msg.get("lag") or 0.0))
        elif op == "finished":
            for obs in self.finish_observers:
                obs(session.worker, str(msg.get("job") or ""), msg.get("status"))
            self.on_change(session.worker)
        elif op == "dropped":
            self.on_change(session.worker)


def _report(offer: Offer, progress: tuple[float, float | None] | None, lines: builtins.list[str]) -> None:
    ctx = offer.ctx
    if ctx is None:
        return
    if progress is not None:
        ctx.progress(*progress)
    for line in lines:
        ctx.log(line)



