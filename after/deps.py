"""Task dependencies, as plain decisions over data: what a dependency's state counts as,
whether a dependent may run, and what a new batch of tasks gets wrong (unknown ids, cycles).

Why a pure module: the scheduler's bookkeeping (:mod:`after.deptrack`) and the REST create
path both need the same rules, and rules over plain dicts are tested with tables, no store.

The rules:

- A task's ``after`` names the tasks it waits for (``task:`` is prefixed if missing).
  It becomes due only when every one counts as ``done`` and its own ``date`` has come.
- A one-shot dependency counts as ``done`` when its status is ``done``. A cron dependency
  (it never ends by itself) counts as ``done`` once it has a ``done`` run in its ``runs``.
- A dependency that ends ``err`` or ``canceled`` *failed*: the dependent ends ``err``
  (reason ``dependency``, naming it), unless its ``after_failed`` is ``run``: then it
  runs once every dependency is finished, whatever the outcome.
- A dependency purged after its retention counts as what it had ended as (the purge's
  tombstone says it). One that does not exist (never did, or deleted) ends the dependent
  ``err`` (reason ``dependency``) whatever ``after_failed`` says: nothing will ever finish it
  (after :data:`MISSING_GRACE` for one that never existed: it may be on its way).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from after import timing
from after.errors import InvalidInput

#: At most this many dependencies per task (the schema's bound).
MAX_AFTER = 100
#: Seconds a dependency that does not exist is given to appear, counted from when the
#: scheduler first saw its dependent due: a direct writer may store a dependent a moment
#: before the task it names (REST refuses unknown ids, so this is for direct documents).
MISSING_GRACE = 10.0

DONE = "done"
FAILED = "failed"
WAITING = "waiting"
MISSING = "missing"


def task_id(raw: str) -> str:
    """An id as ``id`` takes it: ``task:`` is prefixed if missing."""
    return raw if raw.startswith("task:") else f"task:{raw}"


def ids_of(task: Mapping[str, Any]) -> list[str]:
    """The ids a task waits for, prefixed, each once, in the order given ([] for none or junk)."""
    raw = task.get("after")
    if not isinstance(raw, list):
        return []
    return list(dict.fromkeys(task_id(x) for x in raw if isinstance(x, str) and x))


def kind(doc: Mapping[str, Any] | None) -> str:
    """What a dependency's stored document counts as: done, failed, waiting or missing.

    A tombstone counts as what the task had ended as when the daemon purged it after its
    retention (its ``was``), so a dependent due long after still runs; a deletion by a
    client (no ``was``) is missing.
    """
    if doc is not None and doc.get("_deleted"):
        was = doc.get("was")
        return DONE if was == "done" else FAILED if was in ("err", "canceled") else MISSING
    if doc is None or doc.get("type") != "task":
        return MISSING
    status = doc.get("status")
    if status == "done":
        return DONE
    if doc.get("cron"):
        runs = doc.get("runs")
        if isinstance(runs, list) and any(isinstance(r, Mapping) and r.get("status") == "done" for r in runs):
            return DONE
    if status in ("err", "canceled"):
        return FAILED
    return WAITING


def summary(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """A dependency as the job sees it in ``ctx.dependencies``: its status, result and error
    (``kind`` says what it counted as)."""
    if doc is None:
        return {"status": None, "result": None, "error": None, "kind": MISSING}
    if doc.get("_deleted"):  # purged after its retention: its result is gone with it
        return {"status": doc.get("was"), "result": None, "error": None, "kind": kind(doc)}
    return {"status": doc.get("status"), "result": doc.get("result"), "error": doc.get("error"), "kind": kind(doc)}


@dataclass(frozen=True)
class Readiness:
    """Whether a dependent may run: ``ready``, ``wait`` (some dependency is not finished),
    ``fail`` (it must end err; ``reason`` says why) or ``unknown`` (some state not known yet)."""

    state: str
    waiting_on: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    culprit: str | None = None
    reason: str = ""
    #: When ready: what the job sees as ``ctx.dependencies`` (set by the tracker).
    outcomes: Mapping[str, Any] | None = None
    #: When waiting for a missing dependency to appear: when to decide (epoch seconds).
    recheck: float | None = None


def readiness(task: Mapping[str, Any], kinds: Mapping[str, str]) -> Readiness:
    """Decide for one dependent from the known kinds of its dependencies (absent: unknown).

    A missing or (with ``after_failed: err``) failed dependency decides at once, even while
    others are unknown or waiting: the dependent can never run as asked.
    """
    ids = ids_of(task)
    run_anyway = task.get("after_failed") == "run"
    waiting: list[str] = []
    unknown: list[str] = []
    for dep in ids:
        k = kinds.get(dep)
        if k is None:
            unknown.append(dep)
        elif k == MISSING:
            return Readiness("fail", culprit=dep, reason=f"dependency {dep} does not exist (never created, deleted or purged)")
        elif k == FAILED and not run_anyway:
            return Readiness("fail", culprit=dep, reason=f"dependency {dep} failed (ended err or canceled)")
        elif k == WAITING:
            waiting.append(dep)
    if unknown:
        return Readiness("unknown", waiting_on=tuple(waiting + unknown), unknown=tuple(unknown))
    if waiting:
        return Readiness("wait", waiting_on=tuple(waiting))
    return Readiness("ready")


def find_cycle(graph: Mapping[str, Sequence[str]], starts: Iterable[str] | None = None) -> list[str] | None:
    """A cycle of ``graph`` (id -> ids it waits for) as ``[a, b, ..., a]``, or None.

    Iterative (a chain of 10,000 tasks must not hit the recursion limit); only from
    ``starts`` when given (the new tasks), else from every node.
    """
    done: set[str] = set()
    for start in starts if starts is not None else list(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack: list[Iterable[str]] = [iter(graph.get(start, ()))]
        while stack:
            nxt = next(stack[-1], None)  # type: ignore[call-overload]
            if nxt is None:
                stack.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done:
                continue
            path.append(nxt)
            on_path.add(nxt)
            stack.append(iter(graph.get(nxt, ())))
    return None


@dataclass
class BatchProblems:
    """What is wrong with a batch of new tasks' dependencies (empty: nothing)."""

    unknown: dict[int, list[str]] = field(default_factory=dict)  # index in the batch -> ids
    cycle: list[str] | None = None


def check_batch(new: Sequence[Mapping[str, Any]], found: Mapping[str, Mapping[str, Any]]) -> BatchProblems:
    """Unknown ids and cycles in new tasks' ``after`` (the store's answer for the ids outside
    the batch is ``found``). A batch may name its own tasks. The existing tasks' own
    ``after`` lists are part of the graph (a document written straight into CouchDB may
    name an id that a new task takes)."""
    out = BatchProblems()
    in_batch = {str(d.get("_id")) for d in new}
    graph: dict[str, list[str]] = {}
    for doc_id, doc in found.items():
        graph[doc_id] = ids_of(doc)
    for i, doc in enumerate(new):
        ids = ids_of(doc)
        graph[str(doc.get("_id"))] = ids
        missing = [d for d in ids if d not in in_batch and kind(found.get(d)) == MISSING]
        if missing:
            out.unknown[i] = missing
    if not out.unknown:
        out.cycle = find_cycle(graph, starts=[str(d.get("_id")) for d in new])
    return out


def outside(new: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dependency ids of a batch that name no task of the batch (to read from the store)."""
    in_batch = {str(d.get("_id")) for d in new}
    return list(dict.fromkeys(d for doc in new for d in ids_of(doc) if d not in in_batch))


def expiry(task: Mapping[str, Any]) -> datetime | None:
    """A task's ``expires`` (None: none, or not a date)."""
    try:
        return timing.parse_date(task["expires"]) if task.get("expires") is not None else None
    except InvalidInput:
        return None


def expired(task: Mapping[str, Any], now: datetime) -> bool:
    """Past ``expires``: planned (ended ``err`` expired) whatever its dependencies say."""
    until = expiry(task)
    return until is not None and until <= now
