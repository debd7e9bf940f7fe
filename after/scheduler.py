"""The scheduler: what is due, claimed under a lease, handed to a worker. Also the in-process API.

How a tick stays cheap (its cost is what is due, not what is stored):

- The tasks whose *agenda time* (due date; lease end for held tasks; "now" for cancel
  intents) falls within the coming window (``scheduler.window_seconds``) are held in
  memory, loaded by one range query on the ``agenda`` view, and kept current by the
  CouchDB ``_changes`` feed. The window query is repeated every third of a window to
  pull in what moved into range.
- :meth:`Scheduler.tick` takes what is due from a heap, asks :func:`after.timing.plan`
  what to do (pure code), and carries it out with one ``_bulk_docs`` request for the
  claims and one for everything else.

The loop is thin: it waits for the next whole wall-clock second (or an earlier kick:
a due document arrived, a worker freed a slot) and calls ``await tick(now)``. Tests
call ``tick`` with a chosen ``now``.

Several daemons may share one database: every write carries the revision read, so of
two daemons claiming the same task one gets a conflict and drops it.

In-process use (``import after.scheduler``)::

    from after.scheduler import connect
    async with connect("http://after:after@127.0.0.1:5984") as after:
        task = await after.schedule("mailer", "send_report", args=[42], date="2026-12-01T08:00:00Z")
        await after.cancel(task["_id"])

    # or run jobs in this process, with no daemon:
    async with connect(url, run={"mailer": {"send_report": send_report}}) as after:
        await after.schedule("mailer", "send_report", date=time.time() + 5)
        await asyncio.sleep(10)
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
import uuid
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from after import calendar, catchup, model, occurrences, pauses, quorum, timing, triage
from after.config import Settings
from after.deptrack import DepTracker
from after.dispatch import Dispatcher, LocalDispatcher, NoDispatcher
from after.errors import AfterError, Forbidden, InvalidInput, NotFound, StoreUnavailable, Uncertain

# The in-process API (``from after.scheduler import connect``) is after.inprocess's: it
# uses this scheduler, not the other way round; re-exported here, where users import it.
from after.inprocess import Client, connect, running
from after.loops import Loops
from after.outage import LoopState
from after.registry import Registry, is_daemon
from after.runner import error_info
from after.store import Store

log = logging.getLogger("after.scheduler")

__all__ = ["Client", "Dispatcher", "LocalDispatcher", "NoDispatcher", "Scheduler", "connect", "running"]

#: How many tasks' newest revision generation a scheduler remembers (see ``observe``).
GENS_KEPT = 200_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def older(version: tuple[int, str], than: tuple[int, str]) -> bool:
    """Whether a revision (generation, ``updated``) is older than another one of the same task.

    A lower generation is older, unless it was written later: the settled winner of a
    conflict can be on a shorter branch than a leaf deleted as a loser, and its rewrite
    (:func:`after.quorum.resolve` always makes one) carries the time of the resolution.
    """
    return version[0] < than[0] and version[1] <= than[1]


def rev_gen(doc: Mapping[str, Any]) -> int:
    try:
        return int(str(doc.get("_rev", "0-")).split("-", 1)[0])
    except ValueError:
        return 0


class Scheduler:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        dispatcher: Dispatcher,
        *,
        daemon_id: str | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self.dispatcher = dispatcher
        self.daemon_id = daemon_id or f"daemon:{uuid.uuid4().hex[:12]}"
        self.rand = rand
        self.tasks: dict[str, dict[str, Any]] = {}
        self._heap: list[tuple[float, str, int]] = []
        self._parked: dict[str, set[str]] = defaultdict(set)
        #: Due tasks waiting for room at their worker: worker -> heap of (order, id, rev gen).
        self._ready: dict[str, list[tuple[tuple[int, int, float, str], str, int]]] = defaultdict(list)
        self._ready_ids: dict[str, int] = {}
        self._kick = asyncio.Event()
        self._horizon: datetime = timing.EPOCH
        #: The horizon of the window query under way: the feed keeps what falls before it
        #: meanwhile (the query's answer can predate a change the feed brings).
        self._reaching: datetime = timing.EPOCH
        self.seq: Any = 0
        self._bg: list[asyncio.Task[Any]] = []
        self.listeners: list[Callable[[list[dict[str, Any]], Any], None]] = []
        # observability
        self.last_tick: float = 0.0
        self.tick_seconds: deque[float] = deque(maxlen=600)
        #: (when, seconds late) of each job start, as its worker reported it (for /stats).
        self.fire_lags: deque[tuple[float, float]] = deque(maxlen=20000)
        self.counters: dict[str, int] = defaultdict(int)
        #: Tasks whose last claim failed with the store unreachable: CouchDB may have
        #: applied it anyway (the answer was lost). See :meth:`_own_lost_claims`.
        self._unsure_claims: set[str] = set()
        self.tick_observers: list[Callable[[float], None]] = []
        self.lag_observers: list[Callable[[float, str, str], None]] = []
        #: The daemons' heartbeats (None: an in-process scheduler, alone with its tasks).
        self.registry: Registry | None = None
        #: The newest revision generation seen of each task (bounded, oldest forgotten first).
        self._gens: OrderedDict[str, tuple[int, str]] = OrderedDict()
        #: Tasks seen with conflicting leaves: settled (:meth:`Store.resolve`) before anything else.
        self._conflicted: dict[str, dict[str, Any]] = {}
        self._conflicted_since: dict[str, float] = {}
        #: Since when (time.time()) our decisive writes come back taken by fewer replicas
        #: than the quorum (a daemon cut off from most of a CouchDB cluster): no claims, no
        #: lease recoveries until one is certain again. None while writes are certain.
        self.quorum_lost_since: float | None = None
        #: Whether the database keeps several replicas (read once at start; see Store.replicas).
        self.replicated = False
        #: Documents that look like tasks but are not valid ones: ended ``err`` (reason
        #: ``invalid``, naming the field) by the next tick. id -> (doc, message, field).
        self._invalid: dict[str, tuple[dict[str, Any], str, str | None]] = {}
        #: Tasks whose handling raised unexpectedly: ended ``err`` (reason ``internal``) by
        #: the next tick. id -> (doc, exception, where).
        self._broken: dict[str, tuple[dict[str, Any], BaseException, str]] = {}
        #: Failures contained to one task, by where they happened (``/metrics``:
        #: ``after_contained_failures_total``).
        self.contained: dict[str, int] = defaultdict(int)
        #: Every background loop's health (``/health``, ``/metrics``); a recovery reloads the window.
        self.loops = Loops(store)
        self.loops.on_change.append(self._loop_changed)
        self._reload = asyncio.Event()
        self._write_error: AfterError | None = None
        #: The daemon's checkpoint (None: an in-process scheduler, which has no state directory).
        self.catchup: catchup.Catchup | None = None
        #: When the window loop's first view query runs after a catch-up from the feed.
        self._refresh_in: float | None = None
        #: Worker names paused on this database (``pause:<name>`` documents): none of their
        #: tasks starts here while paused (:mod:`after.pauses`).
        self.pauses = pauses.PausedNames()
        #: Due tasks whose dependencies (``after``) have not all finished (see :meth:`_gate_deps`).
        self.deps = DepTracker()
        #: Overlap policies (replace, allow) and backfills (after.occurrences).
        self.occurrences = occurrences.Occurrences(self)

    # -- memory -------------------------------------------------------------------------------

    def observe(self, doc: Mapping[str, Any]) -> None:
        """Take a document's current state into the in-memory agenda (or drop it from it).

        Whatever the document holds: one that is not a valid task is set apart to be ended
        ``err`` (invalid), and one this code fails on, to be ended ``err`` (internal).
        """
        try:
            self._observe(doc)
        except Exception as exc:
            task_id = doc.get("_id") if isinstance(doc, Mapping) else None
            self.contain(dict(doc) if isinstance(doc, Mapping) else {}, exc, "observe")
            if isinstance(task_id, str):
                self.tasks.pop(task_id, None)

    def contain(self, doc: dict[str, Any], exc: BaseException, where: str) -> None:
        """Log and count a failure caused by one task, and end that task ``err``: reason
        ``invalid`` when the task itself is at fault (a cron with no run left, found when
        planning its next one), else ``internal``."""
        task_id = doc.get("_id")
        if isinstance(exc, InvalidInput) and isinstance(task_id, str) and model.looks_like_task(doc):
            self._invalid[task_id] = (doc, exc.message, exc.field)
            self._kick.set()
            return
        self.contained[where] += 1
        log.error("task %s: %s failed on it (%s: %s); it is ended err (internal)", task_id, where, type(exc).__name__, exc, exc_info=exc)
        if isinstance(task_id, str) and model.looks_like_task(doc):
            self._broken[task_id] = (doc, exc, where)
            self._kick.set()

    def _observe(self, doc: Mapping[str, Any]) -> None:
        task_id = doc.get("_id")
        if self.registry is not None and is_daemon(doc):
            self.registry.observe(doc)
            return
        if pauses.is_pause_doc(doc):
            self.pause_seen(doc)
            return
        if not isinstance(task_id, str) or not model.looks_like_task(doc):
            return
        version = (rev_gen(doc), str(doc.get("updated") or ""))
        held = self.tasks.get(task_id)
        if held is not None and older(version, (rev_gen(held), str(held.get("updated") or ""))):
            return  # an older revision than the one we hold (a late window query)
        seen = self._gens.get(task_id)
        if seen is not None and older(version, seen):
            # Older than one seen before and let go (finished, or beyond the window): a late
            # view or feed answer, common on a cluster, where a replica can lag. Acting on it
            # would claim a task that already ran (a conflict at best).
            return
        self._gens[task_id] = version
        self._gens.move_to_end(task_id)
        if len(self._gens) > GENS_KEPT:
            self._gens.popitem(last=False)
        self._release(self.deps.saw(doc))
        if doc.get("_conflicts"):
            # Conflicting leaves (racing writes on a cluster, replication): what CouchDB
            # shows may not be the task's state. Settled first, acted on after.
            self._conflicted[task_id] = dict(doc)
            self._conflicted_since.setdefault(task_id, time.time())
            self.tasks.pop(task_id, None)
            self._kick.set()
            return
        self._conflicted.pop(task_id, None)
        self._conflicted_since.pop(task_id, None)
        if held is not None and held.get("_rev") == doc.get("_rev"):
            doc = held  # the revision held, already checked (a window refresh reads it again)
        elif doc.get("type") != "task" or doc.get("status") not in model.TERMINAL:
            try:
                doc = model.normalized(doc)
            except InvalidInput as exc:
                # Written straight into CouchDB (or replicated in) and not a valid task.
                self.tasks.pop(task_id, None)
                self._invalid[task_id] = (dict(doc), exc.message, exc.field)
                self._kick.set()
                return
            self._invalid.pop(task_id, None)
        wake = self.occurrences.observe(doc)
        when = timing.agenda_time(doc)
        if when is not None and wake is not None:
            when = min(when, wake)  # a running replace task: its next occurrence replaces it
        if when is None or when > max(self._horizon, self._reaching):
            self.tasks.pop(task_id, None)
            return
        if task_id in self._unsure_claims and self._is_own_orphan(doc):
            # Our claim landed although we saw an error, and the feed told us first.
            self._unsure_claims.discard(task_id)
            log.info("task %s: claim applied although its answer was lost: dispatched now", task_id)
            self.dispatcher.dispatch(doc["worker"], dict(doc))
        self.tasks[task_id] = dict(doc)
        heapq.heappush(self._heap, (when.timestamp(), task_id, version[0]))
        if when.timestamp() <= time.time() + self.settings.scheduler_claim_ahead:
            self._kick.set()

    @property
    def horizon(self) -> float:
        """Epoch seconds up to which every task's agenda time is known (the window's end)."""
        return self._horizon.timestamp()

    @horizon.setter
    def horizon(self, value: float) -> None:
        self._horizon = timing.from_ts(value)

    def held_ids(self) -> list[str]:
        """Every task held in memory, set apart ones included (what a checkpoint lists)."""
        return [*self.tasks, *self._conflicted, *self._invalid, *self._broken]

    def pause_seen(self, doc: Mapping[str, Any]) -> None:
        """A worker name's pause document came (or went): on resume, its parked tasks are due again."""
        name, resumed = self.pauses.observe(doc)
        if resumed and name is not None:
            log.info("worker name %s resumed: its due tasks start", name)
            self.worker_available(name)

    async def load_pauses(self) -> None:
        """Every pause document (a full read: the feed shows changes, not what was there before)."""
        for name in self.pauses.replace(await self.store.by_prefix(pauses.PREFIX)):
            self.worker_available(name)

    def forget(self, task_id: str) -> None:
        if task_id.startswith(pauses.PREFIX):
            self.pause_seen({"_id": task_id, "_deleted": True})
        self.tasks.pop(task_id, None)
        self._conflicted.pop(task_id, None)
        self._conflicted_since.pop(task_id, None)
        if self.registry is not None:
            self.registry.forget(task_id)

    # -- the cluster's rules -------------------------------------------------------------------

    def note_quorum(self, ok: bool) -> None:
        """A decisive write came back certain (``ok``) or taken by too few replicas."""
        if ok:
            if self.quorum_lost_since is not None:
                log.warning("writes reach a quorum of CouchDB replicas again after %.0fs: claiming again", time.time() - self.quorum_lost_since)
            self.quorum_lost_since = None
        elif self.quorum_lost_since is None:
            self.quorum_lost_since = time.time()
            log.warning(
                "CouchDB took our writes on fewer replicas than the quorum (202 accepted): this daemon is cut off "
                "from most of the cluster; no claims and no lease recoveries until a write is certain again"
            )

    def _judge(self, *, certain: bool, uncertain: bool) -> None:
        """Degraded when a batch had uncertain rows and no certain one (a race gives both)."""
        if certain:
            self.note_quorum(True)
        elif uncertain:
            self.note_quorum(False)

    def preferred(self, doc: Mapping[str, Any]) -> str | None:
        """The daemon that should claim this task (None: no registry, so this one)."""
        if self.registry is None:
            return None
        return quorum.rendezvous(str(doc.get("_id")), self.registry.candidates(str(doc.get("worker", ""))))

    async def _settle_conflicts(self, now: datetime) -> None:
        """Resolve the conflicted tasks seen (at most a batch a tick); settled ones go back on the agenda."""
        if not self._conflicted:
            return
        # The task's preferred daemon settles it; the others only if it is still conflicted
        # a takeover_delay later: daemons settling one task at the same instant each write a
        # rewrite of the winner, and those rewrites are new conflicting leaves.
        wait = self.settings.scheduler_takeover_delay
        mine = [
            doc
            for doc in self._conflicted.values()
            if self.preferred(doc) in (None, self.daemon_id) or time.time() - self._conflicted_since.get(doc["_id"], 0.0) > wait
        ]
        batch = mine[: self.settings.scheduler_claim_batch]
        if not batch:
            return
        try:
            settled = await self.store.resolve(batch, now=now, by=self.daemon_id, history_limit=self.settings.scheduler_history_limit)
        except (StoreUnavailable, Forbidden, NotFound):
            raise  # the store fails (the tick loop says why), not these tasks
        except Exception as exc:
            # Leaves this code cannot rank (written straight into CouchDB, any shape): each is
            # ended err (internal) rather than failing every tick from now on.
            for doc in batch:
                self._conflicted.pop(doc["_id"], None)
                self._conflicted_since.pop(doc["_id"], None)
                self.contain(dict(doc), exc, "resolve")
            return
        self.counters["conflicts_resolved"] += len(settled)
        for doc in settled.values():
            self._conflicted.pop(doc["_id"], None)
            self._conflicted_since.pop(doc["_id"], None)
            self.observe(doc)

    def _due(self, now: datetime) -> list[dict[str, Any]]:
        """Pop every held task whose agenda time is <= now (each once, current revision)."""
        limit = now.timestamp()
        out: dict[str, dict[str, Any]] = {}
        while self._heap and self._heap[0][0] <= limit:
            _, task_id, gen = heapq.heappop(self._heap)
            doc = self.tasks.get(task_id)
            if doc is None or rev_gen(doc) != gen or task_id in out:
                continue
            out[task_id] = doc
        return list(out.values())

    def _requeue(self, doc: dict[str, Any], at: float) -> None:
        heapq.heappush(self._heap, (at, doc["_id"], rev_gen(doc)))

    def _make_ready(self, worker: str, doc: dict[str, Any]) -> None:
        """Due and firing: queue it for its worker (in order) until the worker has room."""
        gen = rev_gen(doc)
        if self._ready_ids.get(doc["_id"]) == gen:
            return
        self._ready_ids[doc["_id"]] = gen
        heapq.heappush(self._ready[worker], (timing.order_key(doc), doc["_id"], gen))

    def _take_ready(self, worker: str) -> list[dict[str, Any]]:
        """As many of ``worker``'s ready tasks as it has room for, oldest due first.

        A backlog waits here, per worker, instead of being planned again at every tick:
        a tick's cost stays what it can dispatch. Entries whose task changed since
        (canceled, rescheduled, claimed by another daemon) are dropped; the new state
        has its own entry on the agenda.
        """
        queue = self._ready[worker]
        if not self.dispatcher.knows(worker) or worker in self.pauses:
            # The worker stopped, or its name is paused: park its tasks until it runs again.
            for _, task_id, _gen in queue:
                self._ready_ids.pop(task_id, None)
                self._parked[worker].add(task_id)
            del self._ready[worker]
            return []
        room = self.dispatcher.capacity(worker)
        out: list[dict[str, Any]] = []
        while queue and len(out) < room:
            _, task_id, gen = heapq.heappop(queue)
            if self._ready_ids.get(task_id) == gen:
                del self._ready_ids[task_id]
            doc = self.tasks.get(task_id)
            if doc is None or rev_gen(doc) != gen or doc.get("status") not in model.PENDING:
                continue
            out.append(doc)
        if not queue:
            del self._ready[worker]
        return out

    def worker_available(self, worker: str) -> None:
        """A worker started (or freed slots): its parked tasks are due again."""
        for task_id in self._parked.pop(worker, set()):
            doc = self.tasks.get(task_id)
            if doc is not None:
                self._requeue(doc, 0)
        self._kick.set()

    async def find_conflicts(self) -> None:
        """Pick up every conflicted task (the ``conflicts`` view), whatever its state.

        The changes feed shows new conflicts as they arrive; this finds those it cannot
        show: made while this daemon was down, or whose winning leaf is finished (so not
        on the agenda) while a losing one is not.
        """
        for doc in await self.store.conflicted(limit=self.settings.scheduler_claim_batch):
            self.observe(doc)

    async def find_strays(self) -> None:
        """Pick up documents that look like tasks but no agenda view shows (no ``type``, an
        unknown status): written while no daemon watched the changes feed. Each is ended
        ``err`` (invalid) by the next tick."""
        for doc in await self.store.strays(limit=self.settings.scheduler_claim_batch):
            self.observe(doc)

    async def refresh_window(self, now: datetime) -> None:
        horizon = now + timedelta(seconds=self.settings.scheduler_window_seconds)
        self._reaching = horizon
        docs = await self.store.agenda(horizon)
        self._horizon = horizon  # known complete up to here only now (what a checkpoint says)
        for doc in docs:
            self.observe(doc)

    def apply_changes(self, batch: Iterable[Mapping[str, Any]]) -> None:
        for change in batch:
            if change.get("deleted"):
                self.forget(change.get("id", ""))
                self._release(self.deps.gone(change.get("id", ""), change.get("doc")))
                continue
            doc = change.get("doc")
            if doc:
                self.observe(doc)

    # -- the tick ----------------------------------------------------------------------------------

    async def tick(self, now: datetime) -> dict[str, int]:
        """One scheduling step at ``now``: plan, then claim/dispatch and write, in bulk.

        If the store fails mid-way (any error of it), what was due is put back and tried again next tick:
        an outage delays tasks, it never drops them (and revisions keep them from
        running twice once the store is back).
        """
        started = time.perf_counter()
        await self._settle_conflicts(now)
        due = self._due(now + timedelta(seconds=self.settings.scheduler_claim_ahead))
        try:
            stats = await self._tick(now, due, started)
        except AfterError:
            retry_at = time.time() + 1
            for doc in due:
                self._requeue(doc, retry_at)
            raise
        if (write_error := self._write_error) is not None:
            # Status writes that failed were put back one by one (:meth:`_write`); what was
            # claimed and dispatched stays so. Raised only now, for the tick loop to say why
            # (once per cause): raising inside the step above would put back every due task,
            # claims already made included, and a claim made again with its old revision can
            # be taken by a lagging cluster replica (a task run twice).
            self._write_error = None
            raise write_error
        return stats

    async def _tick(self, now: datetime, due: list[dict[str, Any]], started: float) -> dict[str, int]:
        limit = self.settings.scheduler_history_limit
        writes: list[dict[str, Any]] = []
        stats: dict[str, int] = defaultdict(int)
        valid = await self._gate_deps([doc for doc in due if doc["_id"] not in self._broken], now, writes)
        # A running occurrence whose replacement is due (overlap `replace`) is the
        # occurrences' step, not a claim (after.occurrences).
        valid = [doc for doc in valid if not self.occurrences.due(doc, now)]
        # Paused (the task, or its worker name): not planned, so nothing happens to it until
        # it is resumed; a worker name's tasks are parked until then (after.pauses).
        valid, _paused, name_paused = pauses.split(valid, self.pauses)
        for doc in name_paused:
            self._parked[doc["worker"]].add(doc["_id"])
        fires: dict[str, list[dict[str, Any]]] = defaultdict(list)
        later: list[dict[str, Any]] = []
        plan, failed = triage.plan_contained(now, valid, ahead=self.settings.scheduler_claim_ahead)
        for task, exc in failed:
            self.contain(dict(task), exc, "plan")
        # Popped a little early but not acted on yet (a lease ending within the claim-ahead
        # window): back on the heap at their own time.
        acted = {a.task["_id"] for a in plan}
        for doc in valid:
            if doc["_id"] not in acted and (when := timing.agenda_time(doc)) is not None:
                self._requeue(doc, when.timestamp())
        for action in plan:
            try:
                self._act(action, now, stats, fires, later, writes)
            except Exception as exc:
                self.contain(dict(action.task), exc, action.kind)
        # What was set apart since the last tick (observed invalid or broken) or in this one.
        writes += self._ends(now, stats)
        # Held tasks (a cancel of another daemon's running task) are looked at again later.
        for doc in later:
            self._requeue(doc, now.timestamp() + 1)
        claims: list[tuple[str, dict[str, Any]]] = []
        for worker, docs in fires.items():
            for doc in docs:
                self._make_ready(worker, doc)
        for worker in list(self._ready):
            claims.extend((worker, d) for d in self._take_ready(worker))
        claims.sort(key=lambda wd: timing.order_key(wd[1]))
        if writes:
            results = await self._write(writes)
            for res in results.values():
                if isinstance(res, dict):
                    self.observe(res)
        if claims:
            for start, end in timing.claim_chunks(len(claims), self.settings.scheduler_claim_batch):
                chunk = claims[start:end]
                try:
                    claimed, lost, uncertain = await self.store.claim(
                        [d for _, d in chunk],
                        daemon=self.daemon_id,
                        now=now,
                        # A task claimed ahead of its due time holds its full lease after it.
                        lease_seconds=self.settings.scheduler_lease_seconds + self.settings.scheduler_claim_ahead,
                        history_limit=limit,
                    )
                except StoreUnavailable:
                    # On one node a claim whose answer was lost is ours if we find it applied;
                    # on a cluster it may have reached fewer replicas than the quorum, so it
                    # waits for its lease like an uncertain one.
                    if not self.replicated:
                        if len(self._unsure_claims) > 100_000:
                            self._unsure_claims.clear()  # bounded; at worst a lease runs out
                        self._unsure_claims.update(d["_id"] for _, d in chunk)
                    raise
                if self._unsure_claims:
                    claimed += await self._own_lost_claims(lost)
                    self._unsure_claims.difference_update(d["_id"] for _, d in chunk)
                self._judge(certain=bool(claimed), uncertain=bool(uncertain))
                stats["lost"] += len(lost)
                stats["claims_uncertain"] += len(uncertain)
                if uncertain:
                    log.info("%d claim(s) taken by fewer CouchDB replicas than the quorum: not dispatched", len(uncertain))
                for task_id in lost + [d["_id"] for d in uncertain]:
                    self.forget(task_id)  # the changes feed brings its new state
                for doc in claimed:
                    self.observe(doc)
                    if self.dispatcher.dispatch(doc["worker"], doc):
                        stats["fired"] += 1
                        lag = now.timestamp() - (timing.due_at(doc) or now).timestamp()
                        for obs in self.lag_observers:
                            obs(max(0.0, lag), doc["worker"], (doc.get("job") or {}).get("name", ""))
        # After the claims: spawning children and asking replacements never delays them.
        await self.occurrences.run(now)
        for key, value in stats.items():
            self.counters[key] += value
        elapsed = time.perf_counter() - started
        self.last_tick = time.time()
        self.tick_seconds.append(elapsed)
        for tobs in self.tick_observers:
            tobs(elapsed)
        return dict(stats)

    def _act(
        self,
        action: timing.Action,
        now: datetime,
        stats: dict[str, int],
        fires: dict[str, list[dict[str, Any]]],
        later: list[dict[str, Any]],
        writes: list[dict[str, Any]],
    ) -> None:
        """One planned action: a fire is queued in ``fires``, a write appended to ``writes``."""
        limit = self.settings.scheduler_history_limit
        doc = dict(action.task)
        if action.kind == "fire":
            worker = doc["worker"]
            if not self.dispatcher.knows(worker):
                self._parked[worker].add(doc["_id"])
                return
            if self.quorum_lost_since is not None:
                later.append(doc)  # cut off from the cluster's majority: claims would be uncertain
                return
            takeover = self._takeover_at(doc, now)
            if takeover is not None:
                # Another live daemon is preferred: it claims first; this one only if the
                # task is still unclaimed at ``takeover``.
                self._requeue(doc, takeover + self.settings.scheduler_claim_ahead)
                stats["deferred"] += 1
                return
            if self.occurrences.fire(doc):
                return  # overlap allow: the occurrence runs as a child document
            fires[worker].append(doc)
        elif action.kind == "cancel":
            out = self._acknowledge_cancel(doc, now)
            if out is not None:
                writes.append(out)
                stats["canceled"] += 1
            else:
                later.append(doc)
        elif action.kind == "recover":
            worker = doc.get("worker", "")
            if self.quorum_lost_since is not None:
                later.append(doc)  # the majority side recovers it, if its lease really ended
                return
            if self.dispatcher.running_here(worker, doc["_id"]):
                later.append(doc)  # our live worker still has it: its write will settle it
                return
            # Like a claim, a lease that ended is taken back by the task's preferred daemon
            # first: daemons recovering one task at the same instant race (on a cluster,
            # into conflicting leaves that cost another lease).
            takeover = self._takeover_at(doc, now, since=timing.agenda_time(doc))
            if takeover is not None:
                self._requeue(doc, takeover + self.settings.scheduler_claim_ahead)
                return
            writes.append(self.recovered(doc, now, reason="lost"))
            stats["recovered"] += 1
        elif action.kind == "expire":
            doc["error"] = error_info("expired", message=f"expired at {doc.get('expires')} before it started")
            writes.append(model.set_status(doc, model.ERR, self.daemon_id, now, limit=limit))
            stats["expired"] += 1
        elif action.kind == "miss":
            writes.append(self._missed(doc, action, now))
            stats["missed"] += 1

    def _ends(self, now: datetime, stats: dict[str, int]) -> list[dict[str, Any]]:
        """The ``err`` documents ending what was set apart as invalid or broken (cleared)."""
        limit = self.settings.scheduler_history_limit
        out: list[dict[str, Any]] = []
        for task_id, (doc, message, field) in self._invalid.items():
            log.warning("task %s: not a valid task (%s): ended err (invalid)", task_id, message)
            out.append(triage.ended_invalid(doc, message, field, by=self.daemon_id, now=now, limit=limit))
            stats["invalid"] += 1
        for doc, exc, where in self._broken.values():
            if doc.get("status") in model.TERMINAL and doc.get("type") == "task":
                continue  # finished already: nothing to end
            out.append(triage.ended_internal(doc, exc, where=where, by=self.daemon_id, now=now, limit=limit))
            stats["internal"] += 1
        for task_id in list(self._invalid) + list(self._broken):
            self.tasks.pop(task_id, None)
        self._invalid.clear()
        self._broken.clear()
        return out

    # -- dependencies (the rules: after.deps; the bookkeeping: after.deptrack) -------------

    def _release(self, dependents: list[str]) -> None:
        """A dependency changed what it counts as (the feed said so): its parked dependents
        are looked at again in the next tick."""
        for task_id in dependents:
            held = self.tasks.get(task_id)
            if held is not None:
                self._requeue(held, 0)
                self._kick.set()

    async def _gate_deps(self, due: list[dict[str, Any]], now: datetime, writes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Of the due tasks, those that may go on (:meth:`after.deptrack.DepTracker.gate`):
        the ends of failed dependents join ``writes``; the waiting ones stay off the heap."""
        limit = self.settings.scheduler_history_limit
        go, ends, later = await self.deps.gate(due, now, self.store.get_many, by=self.daemon_id, limit=limit, buried=self.store.tombstones)
        writes += ends
        self.counters["dependency_failed"] += len(ends)
        for doc, at in later:
            self._requeue(doc, at)
        for doc in go:
            # The feed may have brought the same revision again while the gate read the
            # store: what is claimed is the held copy, which must carry the outcomes too.
            held = self.tasks.get(doc["_id"])
            if "dependencies" in doc and held is not None and held is not doc and held.get("_rev") == doc.get("_rev"):
                held["dependencies"] = doc["dependencies"]
        return go

    def backlog(self, worker: str) -> int:
        """Tasks of ``worker`` due and this daemon's to claim, waiting for a free slot."""
        return len(self._ready.get(worker, ()))

    def _takeover_at(self, doc: Mapping[str, Any], now: datetime, *, since: datetime | None = None) -> float | None:
        """When this daemon may claim a task another live daemon is preferred for (None: now).

        Not before ``takeover_delay`` after its due time, and only if the preferred daemon's
        heartbeat says its scheduler stopped ticking: a daemon that ticks is working through
        its share (a burst, a slow store) and will come to this task; taking it would only
        race it (a claim conflict for one of the two). A preferred daemon that is gone is no
        candidate at all, so its share moves at once.
        """
        pref = self.preferred(doc)
        if pref is None or pref == self.daemon_id or self.registry is None:
            return None
        due = since or timing.due_at(doc) or now
        at = due.timestamp() + min(self.settings.scheduler_takeover_delay, self.settings.scheduler_lease_seconds)
        if now.timestamp() < at:
            return at
        # Judged by how far our changes feed has come, not the wall clock: with a lagging
        # feed, the preferred daemon's claim may be on its way to us.
        if self.registry.clock().timestamp() < at:
            return now.timestamp() + 1.0
        if self.registry.ticking(pref):
            # It is working through its share (a burst, a slow store): it will come to this
            # task, and taking it now would only race it. A daemon whose tick stalled is
            # helped at once.
            return now.timestamp() + self.settings.scheduler_heartbeat_seconds
        return None

    def _is_own_orphan(self, doc: Mapping[str, Any]) -> bool:
        """Claimed (``schedule``) under this daemon's lease, and no worker of ours has it."""
        return (
            doc.get("status") == model.SCHEDULE
            and (doc.get("lease") or {}).get("daemon") == self.daemon_id
            and not self.dispatcher.running_here(doc.get("worker", ""), doc.get("_id", ""))
        )

    async def _own_lost_claims(self, lost: list[str]) -> list[dict[str, Any]]:
        """Of the claims just lost to a conflict, those that are this daemon's own earlier
        claim, applied by CouchDB although we saw an error (the answer was lost).

        Only tasks whose previous claim failed that way are read. Such a task is ours if
        it is still ``schedule`` under a lease of this daemon and no worker of ours has
        it: every successful claim is dispatched in the tick that made it, so a claim of
        ours that nobody runs can only be one whose answer we never had. Taken here, it
        runs now rather than when its lease ends. Removed from ``lost`` in place. (If the
        changes feed brings the task first, :meth:`observe` dispatches it.)
        """
        unsure = [task_id for task_id in lost if task_id in self._unsure_claims]
        if not unsure:
            return []
        try:
            fresh = await self.store.get_many(unsure)
        except AfterError:
            return []  # their leases end; recovery releases them then
        ours = []
        for task_id in unsure:
            doc = fresh.get(task_id)
            if doc is not None and self._is_own_orphan(doc):
                ours.append(doc)
                lost.remove(task_id)
        if ours:
            log.info("%d claim(s) applied although their answer was lost: dispatched now", len(ours))
        return ours

    async def _write(self, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any] | AfterError]:
        try:
            results = await self.store.write_many(docs)
            self._judge(
                certain=any(isinstance(r, dict) for r in results.values()),
                uncertain=any(isinstance(r, Uncertain) for r in results.values()),
            )
            return results
        except AfterError as exc:
            # Tried again at the next tick, which raises it once its claims were tried too:
            # the tick loop says why (once per cause).
            self._write_error = exc
            for doc in docs:
                self._requeue(doc, time.time() + 1)
            return {}

    def _acknowledge_cancel(self, doc: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """A cancel intent: stop it where it runs, or acknowledge it if nothing runs it."""
        lease = doc.get("lease") or {}
        worker = doc.get("worker", "")
        if lease:
            if self.dispatcher.running_here(worker, doc["_id"]):
                self.dispatcher.cancel(worker, doc["_id"])
                return None  # the worker acknowledges ``canceled``
            until = timing.parse_date(lease.get("until") or 0, field="lease.until")
            if lease.get("daemon") != self.daemon_id and until > now:
                return None  # another daemon's task: that daemon handles it
        out = dict(doc)
        out.pop("lease", None)
        out = model.set_status(out, model.CANCELED, self.daemon_id, now, limit=self.settings.scheduler_history_limit)
        return self.occurrences.settle(out, now)

    def recovered(self, doc: dict[str, Any], now: datetime, *, reason: str) -> dict[str, Any]:
        """A held task whose daemon or worker is gone: back to waiting, retried, or ``err``.

        ``schedule`` (claimed, never started: the worker writes ``scheduled`` before it
        runs anything) goes back to ``waiting`` with no attempt spent. ``scheduled``
        (it was running) is retried if its retry policy allows, else ends ``err`` with
        ``reason``: without a retry policy a task never runs twice.
        """
        out = dict(doc)
        out.pop("lease", None)
        limit = self.settings.scheduler_history_limit
        if doc.get("status") == model.SCHEDULE:
            return model.set_status(out, model.WAITING, self.daemon_id, now, limit=limit, reason=f"released: {reason}")
        message = "the worker process died while running it" if reason == "worker died" else "its lease expired while it ran (daemon or worker lost)"
        out["error"] = error_info(reason, message=message)
        if timing.can_retry(out):
            delay = timing.retry_delay(out.get("retry") or {}, int(out.get("attempts") or 1), rand=self.rand)
            out["date"] = timing.fmt(now + timedelta(seconds=delay))
            return model.set_status(out, model.RESCHEDULE, self.daemon_id, now, limit=limit, reason=f"retry after {reason}")
        if out.get("cron"):
            nxt = timing.next_after_run(out, started=now)
            if nxt is not None:
                out.update(calendar.place(out, nxt).fields())
                out["attempts"] = 0
                return model.set_status(out, model.RESCHEDULE, self.daemon_id, now, limit=limit, reason=reason)
        return model.set_status(out, model.ERR, self.daemon_id, now, limit=limit, reason=reason)

    def _missed(self, doc: dict[str, Any], action: timing.Action, now: datetime) -> dict[str, Any]:
        limit = self.settings.scheduler_history_limit
        late = f"missed: due {doc.get('date')}, more than its grace late"
        if action.next_date is not None:
            runs = list(doc.get("runs") or [])
            runs.append({"date": doc.get("date"), "status": "missed", **calendar.run_fields(doc)})
            doc["runs"] = runs[-self.settings.scheduler_runs_limit :]
            doc.update(calendar.place(doc, action.next_date).fields())
            return model.set_status(doc, model.RESCHEDULE, self.daemon_id, now, limit=limit, reason=late)
        doc["error"] = error_info("missed", message=late)
        return model.set_status(doc, model.ERR, self.daemon_id, now, limit=limit)

    async def worker_lost(self, worker: str, docs: list[dict[str, Any]]) -> None:
        """A worker process died with these tasks: recover each from its current state."""
        now = utcnow()
        try:
            fresh = await self.store.get_many(d["_id"] for d in docs)
        except AfterError:
            return  # their leases expire; recovery happens then
        writes = []
        for doc in docs:
            cur = fresh.get(doc["_id"])
            if cur is None or (cur.get("lease") or {}).get("id") != (doc.get("lease") or {}).get("id"):
                continue
            if cur.get("status") == model.CANCEL:
                out = dict(cur)
                out.pop("lease", None)
                out = model.set_status(out, model.CANCELED, self.daemon_id, now, limit=self.settings.scheduler_history_limit)
                writes.append(self.occurrences.settle(out, now))
            elif cur.get("status") in model.HELD:
                writes.append(self.recovered(cur, now, reason="worker died"))
        if writes:
            for res in (await self._write(writes)).values():
                if isinstance(res, dict):
                    self.observe(res)

    # -- running -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the window, then follow the changes feed and tick.

        The daemon already serves HTTP when this runs. If the load fails (CouchDB
        unreachable, access forbidden by ``_security``, the design document missing, ...),
        the daemon must not exit (nothing may crash it, and /health has to say why): the
        ``load`` loop retries it in the background (:mod:`after.loops`), and the other loops
        start once it succeeds. Nothing is claimed before the window is loaded.
        """
        try:
            await self._load()
        except Exception as exc:
            delay = await self.loops.failure("load", exc)
            self._bg = [asyncio.create_task(self._load_later(delay), name="load")]
            return
        self._start_loops()

    async def _load(self) -> None:
        self.replicated = await self.store.replicas() > 1
        self.seq = await self.store.update_seq()
        await self.load_pauses()
        if self.registry is not None:
            await self.registry.load()
        if self.catchup is not None and (delay := await self.catchup.resume(self)) is not None:
            self._refresh_in = delay  # the view is queried later, in the background
            return
        await self._refresh()

    async def _load_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.loops.run("load", self._load, once=True)
        self._start_loops()

    def _start_loops(self) -> None:
        """Every loop survives any failure of the store, says so once, and resumes by itself."""
        purge_every = self.settings.scheduler_purge_interval
        self._bg += [
            asyncio.create_task(self.loops.run("changes", self._follow), name="changes"),
            asyncio.create_task(self.loops.run("window", self._refresh, pace=self._window_pace), name="window"),
            asyncio.create_task(self.loops.run("purge", lambda: self.purge(utcnow()), pace=lambda: asyncio.sleep(purge_every)), name="purge"),
            asyncio.create_task(self.run(), name="tick"),
        ]
        if (cu := self.catchup) is not None:
            every = catchup.EVERY_SECONDS
            self._bg.append(asyncio.create_task(self.loops.run("checkpoint", lambda: cu.save(self), pace=lambda: asyncio.sleep(every)), name="checkpoint"))

    async def stop(self) -> None:
        bg = list(self._bg)  # _load_when_reachable may add to it until cancelled
        for t in bg:
            t.cancel()
        for t in bg:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.catchup is not None and any(t.get_name() == "checkpoint" for t in bg):
            try:
                await self.catchup.save(self)  # the next start reads only what changes after now
            except Exception as exc:
                log.warning("cannot write the catch-up checkpoint: %s", exc)
        self._bg = []

    async def _follow(self) -> None:
        """One request of the changes feed (a longpoll), applied."""
        batch, self.seq = await self.store.changes(self.seq)
        if batch:
            self.apply_changes(batch)
            for listener in self.listeners:
                listener(batch, self.seq)

    async def purge(self, now: datetime) -> int:
        """Delete finished tasks past their retention, in bulk; returns how many.

        Finished (``done``, ``err``, ``canceled``) tasks are kept ``scheduler.retention_days``
        after their last update, or their own ``retention`` seconds when they set one.
        """
        now_ms = int(now.timestamp() * 1000)
        cutoff = now_ms - int(self.settings.scheduler_retention_days * 86400 * 1000)
        total = 0
        for view, end in (("finished", cutoff), ("expiring", now_ms)):
            while True:
                docs = await self.store.finished_before(end, view=view, limit=500)
                if not docs:
                    break
                purged = await self.store.purge(docs)
                total += purged
                if purged == 0 or len(docs) < 500:
                    break
        if total:
            log.info("purged %d finished task(s) past their retention", total)
        self.counters["purged"] += total
        return total

    async def _refresh(self) -> None:
        """Reload the window and pick up what no feed shows (conflicts, strays)."""
        await self.refresh_window(utcnow())
        await self.load_pauses()
        await self.find_conflicts()
        await self.find_strays()

    async def _window_pace(self) -> None:
        """A third of a window, or less when another loop recovered (the window may be stale)."""
        wait, self._refresh_in = (self.settings.scheduler_window_seconds / 3 if self._refresh_in is None else self._refresh_in), None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._reload.wait()
        self._reload.clear()

    def _loop_changed(self, state: LoopState) -> None:
        if not state.failing and state.name != "window":
            self._reload.set()

    async def run(self) -> None:
        """Tick at every whole wall-clock second, and at once when kicked."""
        await self.loops.run("tick", lambda: self.tick(utcnow()), pace=self._next_second, base=1.0, cap=2.0)

    async def _next_second(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0 - (time.time() % 1.0)):
                await self._kick.wait()
        self._kick.clear()

    def kick(self) -> None:
        self._kick.set()

    def stalled(self) -> bool:
        return self.last_tick > 0 and time.time() - self.last_tick > 10


__all__ = ["Client", "LocalDispatcher", "NoDispatcher", "Scheduler", "connect", "running"]
