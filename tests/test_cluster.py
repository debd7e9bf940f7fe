"""Exactly once on a real CouchDB 3 cluster: one daemon per node, faults injected into the cluster.

Runs when ``AFTER_TEST_COUCHDB_CLUSTER`` names the admin URLs of the nodes of one cluster
(comma-separated, at least three); skipped otherwise. The fault scenarios also need
``AFTER_TEST_COUCHDB_CLUSTER_CTL``, a shell command template with ``{action}`` (one of
kill, start, pause, resume, partition, heal) and ``{node}`` (1-based) that does that to
one node, e.g. ``/opt/couch/bin/node-{action} {node}``: a node killed with SIGKILL,
stopped with SIGSTOP, or cut off from the other nodes while its own daemon still reaches
it. Executions are counted inside the job, never inferred from statuses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Couch, Daemon, daemon_env, executions, fresh_database, spawn_daemon, wait_until

from after import timing
from after.embedded import free_port
from after.store import Store

CLUSTER = [u.strip() for u in os.environ.get("AFTER_TEST_COUCHDB_CLUSTER", "").split(",") if u.strip()]
CTL = os.environ.get("AFTER_TEST_COUCHDB_CLUSTER_CTL", "")
N_TASKS = int(os.environ.get("AFTER_TEST_CLUSTER_TASKS", "2000"))
#: Seconds over which the tasks' due times are spread (0: all due at one instant).
SPREAD = float(os.environ.get("AFTER_TEST_CLUSTER_SPREAD", "3"))

pytestmark = [
    pytest.mark.slow,
    # A fault can hold tasks for leases of 30-40 s each, on a cluster that does ~80 tasks/s here.
    pytest.mark.timeout(1200),
    pytest.mark.skipif(len(CLUSTER) < 3, reason="AFTER_TEST_COUCHDB_CLUSTER names no CouchDB cluster of 3 nodes (comma-separated admin URLs)"),
]


def ctl(action: str, node: int) -> None:
    subprocess.run(CTL.format(action=action, node=node), shell=True, check=True, timeout=120, capture_output=True)


@pytest.fixture
def cluster_db() -> Iterator[str]:
    with fresh_database(lambda name: Store(CLUSTER[0], name), prefix="tc") as name:
        yield name


def spawn(node: int, db: str, tmp_path: Path) -> Daemon:
    """A daemon on node ``node``'s URL, with the AFTER_TEST_CLUSTER_SCHEDULER_* settings passed through
    (e.g. AFTER_TEST_CLUSTER_SCHEDULER_CLAIM_AHEAD=5 becomes AFTER_SCHEDULER_CLAIM_AHEAD)."""
    settings = {k.replace("AFTER_TEST_CLUSTER_", "AFTER_", 1): v for k, v in os.environ.items() if k.startswith("AFTER_TEST_CLUSTER_SCHEDULER_")}
    state = tmp_path / f"d{node}"
    env = daemon_env(Couch(CLUSTER[node], None, None, None), db, state, free_port(), AFTER_COUCHDB_URL=CLUSTER[node], **settings)
    return spawn_daemon(env, state)


def statuses(db: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        async with Store(CLUSTER[0], db) as store:
            return await store.count_by_status()

    return asyncio.run(go())


def conflicted(db: str) -> list[str]:
    async def go() -> list[str]:
        async with Store(CLUSTER[0], db) as store:
            return [d["_id"] for d in await store.conflicted(limit=10_000)]

    return asyncio.run(go())


def docs(db: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    async def go() -> dict[str, dict[str, Any]]:
        async with Store(CLUSTER[0], db) as store:
            out: dict[str, dict[str, Any]] = {}
            for i in range(0, len(ids), 500):
                out.update(await store.get_many(ids[i : i + 500]))
            return out

    return asyncio.run(go())


@pytest.mark.parametrize("fault", ["healthy", "kill", "pause", "partition"])
def test_one_daemon_per_node_runs_every_task_once(fault: str, cluster_db: str, tmp_path: Path) -> None:
    if fault != "healthy" and not CTL:
        pytest.skip("AFTER_TEST_COUCHDB_CLUSTER_CTL gives no command to kill, pause or partition a node")
    daemons = [spawn(i, cluster_db, tmp_path) for i in range(3)]
    try:
        for d in daemons:
            d.start_worker("wc", concurrency=100, jobs=["testjobs"])
        ids_of = {d.api("GET", "/")[1]["daemon"] for d in daemons}

        def registry_complete() -> bool:
            return all({x["id"] for x in d.api("GET", "/daemons")[1]["daemons"] if x["state"] == "live"} == ids_of for d in daemons)

        wait_until(registry_complete, 60, "every daemon sees the three")
        out = tmp_path / "runs"
        start = time.time() + 8
        bodies = [
            {"worker": "wc", "date": start + SPREAD * i / N_TASKS, "timeout": 10, "job": {"name": "count", "arguments": [str(out)]}} for i in range(N_TASKS)
        ]
        ids: list[str] = []
        for i in range(0, N_TASKS, 500):
            ids += daemons[i // 500 % 3].create(bodies[i : i + 500])["ids"]
        due = {task_id: body["date"] for task_id, body in zip(ids, bodies, strict=True)}
        wait_until(lambda: time.time() >= start, 30, "the first due time")
        if fault == "kill":
            ctl("kill", 3)  # its daemon keeps running against the dead node
        elif fault == "pause":
            ctl("pause", 3)
            time.sleep(15)
            ctl("resume", 3)
        elif fault == "partition":
            ctl("partition", 3)
        terminal = ("done", "err", "canceled")
        try:
            wait_until(lambda: sum(v for k, v in statuses(cluster_db).items() if k in terminal) >= N_TASKS, 600, f"{N_TASKS} tasks terminal")
        finally:
            if fault == "kill":
                ctl("start", 3)
            elif fault == "partition":
                ctl("heal", 3)
        # Conflicts from the fault (e.g. a partitioned node's leaves, merged at heal) settle first.
        wait_until(lambda: not conflicted(cluster_db), 120, "no task left with conflicting leaves")
        ran = executions(out)
        twice = [t for t, c in ran.items() if c > 1]
        assert not twice, f"{len(twice)} tasks ran twice, e.g. {twice[:3]}"
        final = docs(cluster_db, ids)
        not_run = [t for t in ids if t not in ran]
        for task_id in not_run:  # without a retry policy a task that lost its run ends err, never runs again
            assert final[task_id]["status"] == "err" and final[task_id]["error"]["reason"] in ("lost", "worker died"), final[task_id]
        starts = {line.split()[0]: float(line.split()[1]) for line in out.read_text().splitlines()}
        pid_of = {line.split()[0]: line.split()[2] for line in out.read_text().splitlines()}
        lags = sorted(starts[t] - timing.parse_date(due[t]).timestamp() for t in starts)
        p50, p99 = statistics.median(lags), lags[int(len(lags) * 0.99) - 1]
        counters: dict[str, float] = {}
        for d in daemons:
            _, text = d.api("GET", "/metrics")
            for line in str(text).splitlines():
                if line.startswith("after_scheduler_actions_total{"):
                    kind = line.split('kind="')[1].split('"')[0]
                    counters[kind] = counters.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
        by_worker: dict[str, list[float]] = {}
        for t in starts:
            by_worker.setdefault(pid_of[t], []).append(starts[t] - timing.parse_date(due[t]).timestamp())
        worst = {pid: round(max(v), 3) for pid, v in by_worker.items()}
        report = {
            "fault": fault,
            "worst_by_worker": worst,
            "tasks": N_TASKS,
            "ran": len(ran),
            "not_run": len(not_run),
            "lag_p50": p50,
            "lag_p99": p99,
            "lag_max": lags[-1],
            **counters,
        }
        print("CLUSTER-RESULT " + json.dumps(report))
        if fault == "healthy":
            assert not not_run
            assert counters.get("claims_uncertain", 0) == 0
        # On the side that keeps a quorum nothing waits longer than a lease (plus the takeover).
        assert lags[-1] < 30 + 10, report
    finally:
        for d in daemons:
            d.stop(signal.SIGTERM, timeout=60)
