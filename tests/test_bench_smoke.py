"""The benchmark must not rot: a tiny run of ``bench/run.py`` completes and reports numbers.

It asserts that every workload ran to the end and produced figures, never that they
are fast (that is ``make bench``'s job, on a quiet machine). It runs the real entry
point in a child process against this session's server (the embedded one, or
``AFTER_TEST_COUCHDB_URL``), with the interpreter of this venv: APScheduler and huey
are benchmark-only extras, so the peers run only where they are installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import ROOT, Couch


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


def test_bench_smoke_after(couch: Couch, tmp_path: Path) -> None:
    report = _run(["--smoke", "--no-peers", "--couchdb-url", _admin_url(couch)], tmp_path / "smoke.json", timeout=240)
    after = report["after"]
    assert set(after) == {"store", "W1", "W2", "W3", "W4", "W5"}
    for name, res in after.items():
        assert res["metrics"], f"{name}: {res['notes']}"
    m = {name: res["metrics"] for name, res in after.items()}
    assert _finite(m["store"]["bulk_docs_per_s"]) and _finite(m["store"]["single_writes_per_s"])
    assert m["W1"]["executed"] == m["W1"]["n"] and _finite(m["W1"]["p99_ms"])
    assert m["W2"]["done"] == m["W2"]["n"] and _finite(m["W2"]["tasks_per_s"])
    for size in ("small", "big"):
        w3 = m["W3"][size]
        assert w3["executed"] == w3["due_created"] and w3["firing_ticks"] > 0, w3
    assert _finite(m["W3"]["firing_ratio_p50"]) and _finite(m["W3"]["rss_mb"])
    assert m["W4"]["executed"] == m["W4"]["n"] and 0.0 <= m["W4"]["in_order_fraction"] <= 1.0
    assert m["W5"]["created"] > 0 and m["W5"]["errors"] == 0 and _finite(m["W5"]["p99_ms"])
    judged = [row for row in report["table"] if row["system"] == "after" and row["met"] is not None]
    assert len(judged) == 6, report["table"]  # W1, W2 efficiency, W3 tick, W3 RSS, W4, W5 (W2 vs huey needs the peers)
    assert (tmp_path / "smoke.json").stat().st_size > 0


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("apscheduler", "huey", "sqlalchemy")),
    reason="benchmark-only extras (bench/requirements.txt) not installed in this venv",
)
def test_bench_smoke_peers(couch: Couch, tmp_path: Path) -> None:
    report = _run(["--smoke", "--only", "W2", "--couchdb-url", _admin_url(couch)], tmp_path / "peers.json", timeout=240)
    peers = {(p["system"], p["workload"]): p for p in report["peers"]}
    assert set(peers) == {("apscheduler", "W2"), ("huey", "W2")}
    for res in peers.values():
        assert _finite(res["metrics"]["tasks_per_s"]), res["notes"]
