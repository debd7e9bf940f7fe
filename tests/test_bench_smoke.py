"""The benchmark must not rot: a tiny run of ``bench/run.py`` completes and reports numbers.

It asserts that every workload ran to the end and produced figures, never that they
are fast (that is ``make bench``'s job, on a quiet machine). It runs the real entry
point in a child process, with the interpreter of this venv, on the embedded server the
benchmark starts itself (as ``make bench`` does), and on the CouchDB of
``AFTER_TEST_COUCHDB_URL`` when the tests have one. APScheduler and huey are
benchmark-only extras, so the peers run only where they are installed. The table's
judging (bench/targets.py) is plain code over results, checked here with made-up ones.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import ROOT, Couch

sys.path.insert(0, str(ROOT))
from bench import targets  # the repository root is not on sys.path under pytest
from bench.run import choose_servers
from bench.stats import format_table


def _admin_url(couch: Couch) -> str:
    scheme, rest = couch.url.split("://", 1)
    if not couch.admin:
        return couch.url
    return f"{scheme}://{quote(couch.admin, safe='')}:{quote(couch.admin_password or '', safe='')}@{rest}"


def _run(args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *args, "--json", str(out)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "system" in proc.stdout and "workload" in proc.stdout, proc.stdout  # the table was printed
    return json.loads(out.read_text())


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_bench_smoke_after(tmp_path: Path) -> None:
    report = _run(["--smoke", "--no-peers", "--servers", "embedded"], tmp_path / "smoke.json", timeout=240)
    assert [s["key"] for s in report["servers"]] == ["embedded"]
    assert report["servers"][0]["system"] == "after (embedded)" and report["servers"][0]["product"].startswith("pouchdb-server ")
    after = report["after"]["embedded"]
    assert set(after) == {"store", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"}
    for name, res in after.items():
        assert res["metrics"], f"{name}: {res['notes']}"
    m = {name: res["metrics"] for name, res in after.items()}
    assert _finite(m["store"]["bulk_docs_per_s"]) and _finite(m["store"]["single_writes_per_s"])
    assert m["W1"]["executed"] == m["W1"]["n"] and _finite(m["W1"]["p99_ms"])
    assert m["W2"]["done"] == m["W2"]["n"] and _finite(m["W2"]["tasks_per_s"])
    # W7: W2's tasks, drained by a remote worker process (after.client) at concurrency 100.
    assert m["W7"]["done"] == m["W7"]["n"] == m["W2"]["n"] and m["W7"]["concurrency"] == 100 and _finite(m["W7"]["tasks_per_s"]), m["W7"]
    assert "remote_worker" in after["W7"]["cpu_s"], after["W7"]["cpu_s"]
    for size in ("small", "big"):
        w3 = m["W3"][size]
        assert w3["executed"] == w3["due_created"] and w3["firing_ticks"] > 0, w3
    assert _finite(m["W3"]["firing_ratio_p50"]) and _finite(m["W3"]["rss_mb"])
    assert m["W4"]["executed"] == m["W4"]["n"] and 0.0 <= m["W4"]["in_order_fraction"] <= 1.0
    assert m["W5"]["created"] > 0 and m["W5"]["errors"] == 0 and _finite(m["W5"]["p99_ms"])
    # W6 is bounded by a deadline: it reports what was done by then, at least one task.
    assert m["W6"]["job"] == "plain_stamp" and 0 < m["W6"]["done"] <= m["W6"]["n"] and _finite(m["W6"]["tasks_per_s"]), m["W6"]
    assert "job_processes" in after["W6"]["cpu_s"], after["W6"]["cpu_s"]
    # W8: a chain of dependent tasks, run in order, with its hand-off figures.
    assert m["W8"]["done"] == m["W8"]["n"] and m["W8"]["in_order"] is True and _finite(m["W8"]["handoff_p99_ms"]), m["W8"]
    judged = [row for row in report["table"] if row["system"] == "after (embedded)" and row["met"] is not None]
    # W1, W2 efficiency, W7, W6, W3 tick, W3 RSS, W4, W5, W8 (W2 and W4 vs huey need the peers)
    assert len(judged) == 9, report["table"]
    assert (tmp_path / "smoke.json").stat().st_size > 0


@pytest.mark.skipif(
    not os.environ.get("AFTER_TEST_COUCHDB_URL"), reason="no CouchDB for the tests (AFTER_TEST_COUCHDB_URL unset): the CouchDB path is smoked only there"
)
def test_bench_smoke_couchdb(couch: Couch, tmp_path: Path) -> None:
    args = ["--smoke", "--no-peers", "--servers", "couchdb", "--couchdb-url", _admin_url(couch), "--only", "store,W1,W2,W6"]
    report = _run(args, tmp_path / "couchdb.json", timeout=240)
    (server,) = report["servers"]
    assert server["key"] == "couchdb" and server["system"] == f"after ({server['product']})", server
    m = {name: res["metrics"] for name, res in report["after"]["couchdb"].items()}
    assert set(m) == {"store", "W1", "W2", "W6"} and all(m.values()), report["after"]
    assert m["W1"]["executed"] == m["W1"]["n"] and m["W2"]["done"] == m["W2"]["n"] and m["W6"]["done"] > 0
    systems = {row["system"] for row in report["table"]}
    assert systems == {server["system"]}, report["table"]


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("apscheduler", "huey", "sqlalchemy")),
    reason="benchmark-only extras (bench/requirements.txt) not installed in this venv",
)
def test_bench_smoke_peers(tmp_path: Path) -> None:
    report = _run(["--smoke", "--only", "W2", "--servers", "embedded"], tmp_path / "peers.json", timeout=240)
    peers = {(p["system"], p["workload"]): p for p in report["peers"]}
    assert set(peers) == {("apscheduler", "W2"), ("huey", "W2")}
    for res in peers.values():
        assert _finite(res["metrics"]["tasks_per_s"]), res["notes"]


# ------------------------------------------------------------------------------------------------
# The table: which targets are judged where, from made-up results


def _results(**over: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Results of every workload that meet every target, with ``over`` replacing some metrics."""
    base: dict[str, dict[str, Any]] = {
        "store": {"bulk_docs_per_s": 3000.0, "plain_bulk_docs_per_s": 4000.0, "single_writes_per_s": 200.0, "single_writes_32_per_s": 400.0},
        "W1": {"p50_ms": 10.0, "p99_ms": 40.0, "max_ms": 45.0, "n": 1000, "executed": 1000},
        "W2": {"tasks_per_s": 900.0, "n": 100, "done": 100, "writes_per_task": 3},
        "W6": {"tasks_per_s": 1200.0, "n": 100, "done": 100, "jobs_measured_s": 2.0, "bound_s": 30.0, "concurrency": 1000},
        "W7": {"tasks_per_s": 500.0, "n": 100, "done": 100, "concurrency": 100},
        "W3": {"firing_ratio_p50": 1.0, "firing_ratio_p99": 1.1, "rss_mb": 70.0, "big": {}, "small": {}},
        "W4": {"in_order_fraction": 1.0, "drain_s": 0.5, "n": 100, "executed": 100, "first_execution_s": 0.4, "ready_s": 0.3},
        "W5": {"p50_ms": 10.0, "p99_ms": 30.0, "creates_per_s": 1500.0, "errors": 0, "clients": 32},
    }
    out = {name: {"metrics": {**m, **over.get(name, {})}, "profiles": [f"/p/{name}-1.txt"]} for name, m in base.items()}
    out["W6"]["cpu_s"] = {"job_processes": 1.5}
    return out


HUEY = [
    {"system": "huey", "workload": "W2", "metrics": {"tasks_per_s": 400.0, "executed": 100, "n": 100}},
    {"system": "huey", "workload": "W4", "metrics": {"drain_s": 0.7, "in_order_fraction": 0.5, "executed": 100, "n": 100}},
]


def _judged(rows: list[Any], system: str) -> dict[str, bool | None]:
    return {str(r["workload"]): r["met"] for r in rows if r["system"] == system}


@pytest.mark.parametrize(
    ("over", "workload", "met"),
    [
        ({}, "W1", True),
        ({"W1": {"p50_ms": 20.5}}, "W1", False),
        ({"W1": {"p99_ms": 101.0}}, "W1", False),
        ({"W1": {"executed": 999}}, "W1", False),
        ({}, "W2", True),  # 900 = 2.25x huey's 400
        ({"W2": {"tasks_per_s": 790.0}}, "W2", False),
        ({}, "W2 efficiency", True),  # 900 / (3000 / 3) = 90 %
        ({"W2": {"tasks_per_s": 740.0}}, "W2 efficiency", False),  # 74 %: the target is 75 %, no longer 50 %
        ({}, "W6", True),
        ({"W6": {"tasks_per_s": 999.0}}, "W6", False),
        ({"W6": {"done": 60}}, "W6", False),  # the deadline cut it short
        ({}, "W7", True),  # 500 = 56 % of W2's 900
        ({"W7": {"tasks_per_s": 440.0}}, "W7", False),  # 49 %
        ({"W7": {"done": 99}}, "W7", False),
        ({}, "W4", True),
        ({"W4": {"in_order_fraction": 0.98}}, "W4", False),
        ({}, "W4 vs huey", True),  # 0.5 s <= huey's 0.7 s
        ({"W4": {"drain_s": 0.8}}, "W4 vs huey", False),
        ({}, "W5", True),
        ({"W5": {"p99_ms": 51.0}}, "W5", False),
        ({"W5": {"errors": 1}}, "W5", False),
    ],
)
def test_targets_judged(over: dict[str, dict[str, Any]], workload: str, met: bool) -> None:
    rows = targets.table([targets.ServerRun("embedded", "after (embedded)", _results(**over))], HUEY)
    assert _judged(rows, "after (embedded)")[workload] is met


def test_both_servers_share_one_table_w6_judged_on_the_embedded_one() -> None:
    slow = {"W6": {"tasks_per_s": 8.0, "done": 40}}
    runs = [targets.ServerRun("embedded", "after (embedded)", _results(**slow)), targets.ServerRun("couchdb", "after (couchdb 3.5.0)", _results(**slow))]
    rows = targets.table(runs, HUEY, " (quick)")
    embedded, couchdb = _judged(rows, "after (embedded)"), _judged(rows, "after (couchdb 3.5.0)")
    assert set(embedded) == set(couchdb) and "W6 (quick)" in embedded
    assert embedded["W6 (quick)"] is False and couchdb["W6 (quick)"] is None
    assert couchdb["W1 (quick)"] is True and couchdb["W5 (quick)"] is True  # W1 and W5 are judged on both
    # Grouped by workload: each server's row, then the peers'; W6 next to W2.
    order = [(r["system"], str(r["workload"]).split(" ")[0]) for r in rows]
    assert order.index(("after (couchdb 3.5.0)", "W1")) < order.index(("after (embedded)", "W2")) < order.index(("huey", "W2"))
    assert order.index(("huey", "W2")) < order.index(("after (embedded)", "W6")) < order.index(("after (embedded)", "W3"))


def test_a_missed_target_points_to_its_profile() -> None:
    rows = targets.table([targets.ServerRun("embedded", "after (embedded)", _results(W5={"p99_ms": 80.0}))], [])
    by = {str(r["workload"]): r for r in rows}
    assert by["W5"].get("profile") == "/p/W5-1.txt" and "profile" not in by["W1"]
    assert by["W4 vs huey"]["met"] is None  # huey not run: nothing to judge
    assert targets.missed(rows) == [by["W5"]]
    assert "profile" in format_table(rows).splitlines()[0]


def test_a_workload_without_figures_is_a_miss_not_a_crash() -> None:
    results = _results()
    results["W6"] = {"metrics": {}, "notes": "failed: RuntimeError: boom"}
    rows = targets.table([targets.ServerRun("embedded", "after (embedded)", results)], [])
    (w6,) = [r for r in rows if r["workload"] == "W6"]
    assert w6["met"] is False and "boom" in str(w6["figure"])


@pytest.mark.parametrize(
    ("asked", "url", "servers", "error"),
    [
        (None, None, ["embedded"], None),
        (None, "http://a:b@h:1", ["embedded", "couchdb"], None),
        ("couchdb", "http://a:b@h:1", ["couchdb"], None),
        ("couchdb,embedded,couchdb", "http://a:b@h:1", ["couchdb", "embedded"], None),
        ("couchdb", None, [], "needs --couchdb-url"),
        ("embeded", None, [], "subset of embedded,couchdb"),
    ],
)
def test_choose_servers(asked: str | None, url: str | None, servers: list[str], error: str | None) -> None:
    got, why = choose_servers(asked, url)
    assert got == servers
    assert (why is None) if error is None else (why is not None and error in why)
