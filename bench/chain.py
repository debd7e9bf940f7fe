"""W8: a chain of tasks linked by dependencies (issue 16, point 1), run in order.

``n`` tasks (1,000 at full size), each ``after`` the one before, all due now, created in
one ``POST /tasks`` array (the create path checks every id and the whole chain for a
cycle). The worker runs the inline no-op ``stamp``, which records its start inside the
job. The figure is the hand-off: from one task's end (its ``finished``, stamped by the
worker as it writes ``done``) to the next one's job start. It covers the done write, the
changes feed bringing it to the scheduler, the tick that releases the dependent, its
claim, the dispatch and the worker's accept: what a dependency costs beyond the jobs.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from after import timing
from bench.after_side import Ctx, Daemon, TaskFactory, _database, _result, all_tasks, count_lines, read_records, wait_for
from bench.stats import percentile

#: Chain length per size: the issue's 1,000; shorter in quick and smoke runs.
CHAIN_N = {"full": 1_000, "quick": 300, "smoke": 20}


def chain_bodies(factory: TaskFactory, n: int, now: float, prefix: str) -> list[dict[str, Any]]:
    """``n`` REST bodies, each after the previous one, all due now (the last one first in
    the array: the order of creation is not the order of running)."""
    bodies = []
    for i in range(n):
        body = factory.body(now)
        body["id"] = f"{prefix}-{i:05d}"
        if i:
            body["after"] = [f"{prefix}-{i - 1:05d}"]
        bodies.append(body)
    return bodies[::-1]


def handoffs(starts: dict[str, float], finished: dict[str, float], order: list[str]) -> list[float]:
    """Seconds from each task's end to the next one's start, along the chain."""
    return [starts[b] - finished[a] for a, b in itertools.pairwise(order) if a in finished and b in starts]


def claimed_at(doc: dict[str, Any]) -> float | None:
    """When the task was last claimed (its last ``schedule`` history entry)."""
    for entry in reversed(doc.get("history") or []):
        if entry.get("status") == "schedule":
            return timing.parse_date(entry["at"]).timestamp()
    return None


def w8(ctx: Ctx) -> dict[str, Any]:
    sz = ctx.sizes
    n = CHAIN_N.get(sz.name, 1_000)
    notes: list[str] = []
    records = ctx.workdir / "w8-records.txt"
    factory = TaskFactory(records)
    prefix = "chain"
    order = [f"task:{prefix}-{i:05d}" for i in range(n)]
    with _database(ctx, "w8") as db, Daemon(ctx.couch, db, ctx.workdir / "w8-state", profile_dir=ctx.profile_dir, label="W8") as d:
        d.start()
        d.start_worker(sz.concurrency)
        t0 = time.monotonic()
        made = d.create(chain_bodies(factory, n, time.time(), prefix), per_request=n)
        create_s = time.monotonic() - t0
        finished_all = wait_for(lambda: count_lines(records) >= made, time.monotonic() + 60 + n * 0.5)
        if not finished_all:
            notes.append(f"run bound hit: {60 + n * 0.5:.0f} s")
        wait_for(lambda: d.api("GET", "/tasks/" + order[-1])[1].get("status") == "done", time.monotonic() + 30)
        docs = asyncio.run(all_tasks(ctx.couch, db, deadline=time.monotonic() + 120))
    recs = read_records(records)
    starts = {task_id: at for at, _, task_id in recs}
    finished = {doc["_id"]: timing.parse_date(doc["finished"]).timestamp() for doc in docs if doc.get("status") == "done" and doc.get("finished")}
    ran = [task_id for _, _, task_id in recs]
    gaps = handoffs(starts, finished, order)
    claims = {doc["_id"]: at for doc in docs if (at := claimed_at(doc)) is not None}
    # The hand-off in two parts: the previous task's done to this one's claim (the done
    # write, the feed, the tick), then the claim to the job's start (dispatch, accept).
    to_claim = [claims[b] - finished[a] for a, b in itertools.pairwise(order) if a in finished and b in claims]
    to_start = [starts[t] - claims[t] for t in order[1:] if t in starts and t in claims]
    nan = float("nan")
    metrics: dict[str, Any] = {
        "n": n,
        "stored": made,
        "executed": len(recs),
        "done": len(finished),
        "in_order": ran == order[: len(ran)] and all(g >= 0 for g in gaps),
        "handoff_p50_ms": round(percentile(gaps, 50) * 1000, 2) if gaps else nan,
        "handoff_p95_ms": round(percentile(gaps, 95) * 1000, 2) if gaps else nan,
        "handoff_p99_ms": round(percentile(gaps, 99) * 1000, 2) if gaps else nan,
        "handoff_max_ms": round(max(gaps) * 1000, 2) if gaps else nan,
        "total_s": round(recs[-1][0] - recs[0][0], 3) if recs else nan,
        "done_to_claim_p50_ms": round(percentile(to_claim, 50) * 1000, 2) if to_claim else nan,
        "done_to_claim_p99_ms": round(percentile(to_claim, 99) * 1000, 2) if to_claim else nan,
        "claim_to_start_p50_ms": round(percentile(to_start, 50) * 1000, 2) if to_start else nan,
        "claim_to_start_p99_ms": round(percentile(to_start, 99) * 1000, 2) if to_start else nan,
        "create_s": round(create_s, 3),
    }
    notes.append("hand-off: a task's finished (its done write) to the next job's start")
    return _result("W8", metrics, notes, sz)
