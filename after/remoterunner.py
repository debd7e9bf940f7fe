"""The runner of one remote worker's session, inside the daemon.

A remote program runs the jobs, but every write about its tasks is the daemon's, made
by the same :class:`after.runner.Runner` as a local worker's: the acceptance
(``scheduled``, with its conflict and cluster-quorum rules), progress and log lines,
the outcome (retry policy, next cron run, a cancel that arrived meanwhile), timeouts.
Only three steps differ, and they are what this subclass overrides:

- accepting waits for the remote worker's accept call (or its discard), and gives the
  task back (``waiting``, no attempt spent) if none comes within a lease or the session
  ends first;
- running the job is waiting for the worker's finish call (heartbeats feed progress and
  log lines into the task's context meanwhile), under the task's timeout;
- a cancel of a running task is passed on by the next heartbeat's answer, and enforced
  (``canceled``) if the worker has not acknowledged it within a lease.

The runner's own slots do not bound anything here: the remote worker runs at its own
concurrency, and the scheduler sends it no more than its room (:mod:`after.remotes`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from after import model
from after.config import Settings
from after.jobs import JobFunc, TaskContext
from after.remote import Offer, Outcome, Session, SessionLost
from after.runner import Notify, Runner, error_info
from after.store import Store

log = logging.getLogger("after.remote")

#: No daemon-side bound on concurrent tasks (see the module docstring).
UNBOUNDED = 100_000


async def _remote_job(ctx: TaskContext, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called
    raise AssertionError("a remote job runs on its worker's host")


class RemoteRunner(Runner):
    """Writes the statuses of the tasks one remote session runs."""

    def __init__(self, store: Store, session: Session, *, settings: Settings, notify: Notify) -> None:
        super().__init__(store, name=session.worker, registry={}, settings=settings, concurrency=UNBOUNDED, notify=notify, isolate=False)
        self.session = session
        self.by = f"worker:{session.worker}@{session.host}"
        self._cancel_timers: dict[str, asyncio.TimerHandle] = {}

    # -- what differs from a local worker -------------------------------------------------------

    async def _execute(self, claimed: dict[str, Any]) -> None:
        try:
            await super()._execute(claimed)
        finally:
            # Whatever ended this claim, no call may wait on its offer any longer.
            offer = self.session.offers.get(str(claimed.get("_id")))
            if offer is not None and offer.lease == (claimed.get("lease") or {}).get("id"):
                del self.session.offers[offer.task_id]
                offer.lose("the claim ended")

    def _lease_owner(self) -> dict[str, Any]:
        owner: dict[str, Any] = {"worker": self.name, "host": self.session.host, "session": self.session.id}
        if self.session.pid is not None:
            owner["pid"] = self.session.pid
        return owner

    def _job(self, name: str) -> JobFunc | None:
        return _remote_job  # whether the worker has it is the worker's to say (discard)

    async def _accept(self, claimed: dict[str, Any]) -> dict[str, Any] | None:
        """Offer the claim to the session; write ``scheduled`` once the worker accepts it."""
        lease = str((claimed.get("lease") or {}).get("id") or "")
        if self.session.closed is not None:
            await self._release(claimed, f"remote worker lost ({self.session.closed})")
            return None
        offer = Offer(doc=claimed, lease=lease)
        self.session.offers[offer.task_id] = offer
        self.session.wake.set()
        try:
            async with asyncio.timeout(self.settings.scheduler_lease_seconds):
                discard = await asyncio.shield(offer.decision)
        except TimeoutError:
            await self._release(claimed, "not accepted by the remote worker within its lease")
            return None
        except SessionLost as exc:
            await self._release(claimed, f"remote worker lost ({exc})")
            return None
        if discard is not None:
            await self._finish_simple(claimed, model.ERR, discard.error)
            return None
        try:
            accepted = await super()._accept(claimed)
        except BaseException as exc:
            if not offer.accepted.done():
                offer.accepted.set_exception(exc if isinstance(exc, Exception) else SessionLost("stopping"))
                offer.accepted.exception()
            raise
        if not offer.accepted.done():
            if accepted is None:
                offer.accepted.set_exception(SessionLost("the claim is no longer this worker's"))
                offer.accepted.exception()
            else:
                offer.accepted.set_result(accepted)
        return accepted

    def _prepare(self, accepted: dict[str, Any]) -> TaskContext:
        ctx = super()._prepare(accepted)
        offer = self.session.offers.get(ctx.id)
        if offer is not None:
            offer.ctx = ctx  # the worker's heartbeats report into it
        return ctx

    async def _outcome(self, ctx: TaskContext, job: Mapping[str, Any], timeout: float, task_id: str) -> tuple[str, Any, dict[str, Any] | None]:
        offer = self.session.offers.get(task_id)
        if offer is None:
            return "fail", None, error_info("lost", message="the remote worker's session ended before the job started")
        try:
            async with asyncio.timeout(timeout):
                outcome: Outcome = await asyncio.shield(offer.outcome)
        except TimeoutError:
            return "fail", None, error_info("timeout", message=f"timeout: the remote job ran longer than {timeout:g}s")
        except asyncio.CancelledError:
            return self._cancelled(task_id)
        except SessionLost as exc:
            return "fail", None, error_info("lost", message=f"the remote worker stopped answering while it ran ({exc})")
        return outcome.kind, outcome.result, outcome.error

    def cancel(self, task_id: str) -> bool:
        """A client cancels a task of this session: at once if the worker has not accepted
        it, else through the next heartbeat's answer, enforced after a lease."""
        offer = self.session.offers.get(task_id)
        if offer is None or task_id not in self.running:
            return False
        if not offer.is_accepted():
            return super().cancel(task_id)
        if not offer.cancel:
            offer.cancel = True
            self.session.wake.set()
            self._cancel_timers[task_id] = asyncio.get_running_loop().call_later(self.settings.scheduler_lease_seconds, self._enforce_cancel, task_id, offer)
        return True

    def _enforce_cancel(self, task_id: str, offer: Offer) -> None:
        self._cancel_timers.pop(task_id, None)
        if self.session.offers.get(task_id) is offer and not offer.outcome.done():
            log.warning("task %s: remote worker %s did not acknowledge its cancel within a lease: ended canceled", task_id, self.session.worker)
            super().cancel(task_id)

    def _finished(self, doc: Mapping[str, Any], status: Any, *, contained: bool = False) -> None:
        task_id = str(doc.get("_id"))
        offer = self.session.offers.get(task_id)
        lease = (doc.get("lease") or {}).get("id")
        if offer is not None and (lease is None or lease == offer.lease):
            del self.session.offers[task_id]
            if not offer.ended.done():
                offer.ended.set_result(str(status))
            offer.lose(f"ended {status}")  # wakes an accept still waiting on it
            timer = self._cancel_timers.pop(task_id, None)
            if timer is not None:
                timer.cancel()
        super()._finished(doc, status, contained=contained)

    async def _release(self, claimed: dict[str, Any], reason: str) -> None:
        """Give an offered task back: ``waiting`` again, no attempt spent."""
        out = dict(claimed)
        out.pop("lease", None)
        model.set_status(out, model.WAITING, self.by, self.clock(), limit=self._limit(), reason=f"released: {reason}")
        await self._write_final(claimed, out)
        self._finished(claimed, model.WAITING)

    # -- the session ends ---------------------------------------------------------------------------

    def lose(self, why: str) -> None:
        """The session ended: tasks not accepted go back to ``waiting``; running ones end
        by their retry policy with reason ``lost`` (the runner writes both)."""
        for offer in list(self.session.offers.values()):
            offer.lose(why)
