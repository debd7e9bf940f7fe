"""The scheduler's memory of dependencies: which due tasks wait on which ids, and what
those ids' states are, kept current by the documents the changes feed brings.

Why no polling: a dependent due but blocked is taken off the agenda's heap and parked
here; the state of each id it waits for is read once (one ``_all_docs`` request for
all the ids a tick found unknown), then follows the feed: when a dependency's
document changes what it counts as (:func:`after.deps.kind`), its dependents are
handed back to the scheduler, which looks at them again in the next tick. The cost
is per dependency change, not per stored task or per second.

Memory is bounded by what is due: an id's state is kept only while a parked task
waits on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from after import deps, model
from after.runner import error_info

#: ``store.get_many``: the stored documents of some ids (absent: no such document).
Fetch = Callable[[Iterable[str]], Awaitable[dict[str, dict[str, Any]]]]


class DepTracker:
    def __init__(self) -> None:
        #: dependent id -> the ids it waits for (registered when it came due).
        self.wants: dict[str, tuple[str, ...]] = {}
        #: dependency id -> the dependents waiting on it.
        self.awaited: dict[str, set[str]] = defaultdict(set)
        #: dependency id -> its summary (:func:`after.deps.summary`), once known.
        self.known: dict[str, dict[str, Any]] = {}
        #: dependent id -> when (epoch seconds) it was first registered due.
        self.since: dict[str, float] = {}
        #: dependency ids the store did not have when read (not deletions the feed brought).
        self.never_seen: set[str] = set()

    async def gate(
        self, due: list[dict[str, Any]], now: datetime, fetch: Fetch, *, by: str, limit: int, buried: Fetch | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[dict[str, Any], float]]]:
        """Of the scheduler's due tasks: (those that may go on, the ``err`` documents of
        dependents that can never run, (task, epoch) to look at again then).

        A task whose dependencies all finished carries their outcomes (``dependencies``,
        set on the held document itself) into its claim; one whose dependency failed or
        does not exist ends ``err`` reason ``dependency`` naming it; the rest wait here,
        off the heap, until the feed changes a dependency (no polling), or until their
        ``expires`` (then planned, and ended ``expired``). The unknown states of one
        tick are read in one request (and ``buried``, the tombstones of those not found:
        a purged dependency counts as what it ended as).
        """
        waiting = [d for d in due if d.get("after") and d.get("status") in model.PENDING and not deps.expired(d, now)]
        if not waiting:
            return due, [], []
        unknown: set[str] = set()
        for doc in waiting:
            unknown.update(self.want(doc, now.timestamp()))
        if unknown:
            ids = sorted(unknown)
            found = await fetch(ids)
            if buried is not None and (missing := [i for i in ids if i not in found]):
                found = {**found, **await buried(missing)}
            self.learn(ids, found)
        blocked: set[str] = set()
        ends: list[dict[str, Any]] = []
        later: list[tuple[dict[str, Any], float]] = []
        for doc in waiting:
            verdict = self.judge(doc, now.timestamp())
            if verdict.state == "ready":
                doc["dependencies"] = dict(verdict.outcomes or {})
                continue
            blocked.add(doc["_id"])
            if verdict.state == "fail":
                out = dict(doc)
                out["error"] = {**error_info("dependency", message=verdict.reason), "task": verdict.culprit}
                ends.append(model.set_status(out, model.ERR, by, now, limit=limit, reason=verdict.reason))
            else:
                until = deps.expiry(doc)
                times = [t for t in (verdict.recheck, until.timestamp() if until else None) if t is not None]
                if times:
                    later.append((doc, min(times)))
        return [d for d in due if d["_id"] not in blocked], ends, later

    def want(self, doc: Mapping[str, Any], now: float = 0.0) -> list[str]:
        """Register a due dependent; returns the ids whose state is not known yet."""
        task_id = str(doc["_id"])
        ids = tuple(deps.ids_of(doc))
        old = self.wants.get(task_id)
        if old is not None and old != ids:
            self.drop(task_id)
        self.since.setdefault(task_id, now)
        self.wants[task_id] = ids
        for dep in ids:
            self.awaited[dep].add(task_id)
        return [d for d in ids if d not in self.known]

    def learn(self, ids: Iterable[str], found: Mapping[str, Mapping[str, Any]]) -> None:
        """The store's answer for ids that were unknown (absent from ``found``: missing).
        A state the feed brought meanwhile is newer: kept."""
        for dep in ids:
            if dep in self.awaited and dep not in self.known:
                self.known[dep] = deps.summary(found.get(dep))
                if dep not in found:
                    self.never_seen.add(dep)

    def saw(self, doc: Mapping[str, Any]) -> list[str]:
        """A task document from the feed (or a write's answer): the dependents to look at
        again because what it counts as changed. Also lets go of a dependent that is no
        longer pending (canceled, claimed elsewhere, rescheduled far away)."""
        task_id = str(doc.get("_id"))
        if task_id in self.wants and doc.get("status") not in ("waiting", "reschedule"):
            self.drop(task_id)
        if task_id not in self.awaited:
            return []
        new = deps.summary(doc)
        old = self.known.get(task_id)
        self.known[task_id] = new
        self.never_seen.discard(task_id)
        if old is not None and old["kind"] == new["kind"]:
            return []
        return sorted(self.awaited[task_id])

    def gone(self, task_id: str, tombstone: Mapping[str, Any] | None = None) -> list[str]:
        """A dependency deleted (or purged: its ``tombstone`` says what it ended as): its
        dependents, to be looked at again (a deleted one ends them err)."""
        if task_id in self.wants:
            self.drop(task_id)
        if task_id not in self.awaited:
            return []
        self.known[task_id] = deps.summary(tombstone if tombstone is not None and tombstone.get("_deleted") else None)
        self.never_seen.discard(task_id)
        return sorted(self.awaited[task_id])

    def judge(self, doc: Mapping[str, Any], now: float | None = None) -> deps.Readiness:
        """Readiness of a registered dependent from what is known; a dependent that is
        ready or must fail is let go (it leaves the agenda either way). A dependency that
        was never seen is given :data:`after.deps.MISSING_GRACE` from when the dependent
        came due (``now`` given); one deleted meanwhile (:meth:`gone`) is not."""
        task_id = str(doc["_id"])
        ids = self.wants.get(task_id) or tuple(deps.ids_of(doc))
        kinds = {d: self.known[d]["kind"] for d in ids if d in self.known}
        verdict = deps.readiness(doc, kinds)
        if verdict.state == "fail" and now is not None and verdict.culprit in self.never_seen:
            decide = self.since.get(task_id, now) + deps.MISSING_GRACE
            if now < decide:
                return replace(verdict, state="wait", waiting_on=(verdict.culprit,), recheck=decide)
        if verdict.state == "wait":
            cycle = self._cycle(task_id)
            if cycle is not None:
                verdict = deps.Readiness("fail", culprit=cycle[1], reason="dependency cycle: " + " -> ".join(cycle))
        if verdict.state == "ready":
            verdict = replace(verdict, outcomes=self.outcomes(doc))
        if verdict.state in ("ready", "fail"):
            self.drop(task_id)
        return verdict

    def outcomes(self, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """What the job sees as ``ctx.dependencies``: each dependency's status, result, error."""
        out = {}
        for dep in deps.ids_of(doc):
            s = self.known.get(dep) or deps.summary(None)
            out[dep] = {"status": s["status"], "result": s["result"], "error": s["error"]}
        return out

    def drop(self, task_id: str) -> None:
        """Let go of a dependent; forget the states nobody waits on any more."""
        self.since.pop(task_id, None)
        for dep in self.wants.pop(task_id, ()):
            waiting = self.awaited.get(dep)
            if waiting is None:
                continue
            waiting.discard(task_id)
            if not waiting:
                del self.awaited[dep]
                self.known.pop(dep, None)
                self.never_seen.discard(dep)

    def _cycle(self, task_id: str) -> list[str] | None:
        """A cycle through parked dependents (documents written straight into CouchDB can
        make one; REST refuses them): waiting on each other, none would ever run."""
        if not any(d in self.wants for d in self.wants.get(task_id, ())):
            return None
        return deps.find_cycle(self.wants, starts=[task_id])

    def __len__(self) -> int:
        return len(self.wants)
