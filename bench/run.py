"""``make bench``: After against APScheduler and huey, side by side, with the issue's targets.

Runs After's workloads (bench/after_side.py: store limit, W1-W5) on one server -- the
embedded pouchdb-server, or the CouchDB named by ``AFTER_BENCH_COUCHDB_URL`` (server
admin credentials in the URL) -- then stops that server and runs the peers' W1, W2 and
W4 (bench/peers.py, each in a child process of its own), so no system shares the
machine with another's leftovers. Prints one table (workload x system: figure,
target, met) and writes everything, the machine and the git state included, as JSON
(default ``bench/results/latest.json``).

Sizes: the issue's (default), ``--quick`` (under two minutes; W2/W4 at the peers' quick
sizes, W3 scaled down and labelled so) and ``--smoke`` (tiny: the test suite's check
that the benchmark still runs; its figures mean nothing).

Usage::

    .venv-bench/bin/python bench/run.py [--quick | --smoke] [--only W1,W3] [--no-peers]
        [--couchdb-url URL] [--json OUT] [--profile DIR] [--concurrency N]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    from bench import after_side
    from bench.peers import SYSTEMS, headline, run_isolated
    from bench.peers import WORKLOADS as PEER_WORKLOADS
    from bench.stats import TableRow, format_table
except ModuleNotFoundError:  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import after_side
    from bench.peers import SYSTEMS, headline, run_isolated
    from bench.peers import WORKLOADS as PEER_WORKLOADS
    from bench.stats import TableRow, format_table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
AFTER_ORDER = ("store", "W1", "W2", "W3", "W4", "W5")

# The targets, printed beside the figures.
W1_P50_MS, W1_P99_MS = 20.0, 100.0
W2_VS_HUEY, W2_EFFICIENCY = 2.0, 0.50
W3_RATIO, W3_RSS_MB = 1.2, 200.0
W4_IN_ORDER = 0.99
W5_P99_MS = 50.0


def peers_available() -> tuple[bool, str]:
    """Whether APScheduler and huey are importable here (they live in .venv-bench only)."""
    missing = [m for m in ("apscheduler", "huey", "sqlalchemy") if importlib.util.find_spec(m) is None]
    return (not missing, f"not installed here: {', '.join(missing)}" if missing else "")


def _cmd(args: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False, cwd=ROOT)
        return out.stdout.strip()
    return ""


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean nothing without it."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        mem_gb = round(kb / 1024 / 1024, 1)
    status = _cmd(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        # Other work on the machine moves every figure: recorded, not hidden.
        "loadavg": _loadavg(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _cmd(["node", "--version"]),
        "git_commit": _cmd(["git", "rev-parse", "--short", "HEAD"]),
        "git_dirty_files": len(status.splitlines()) if status else 0,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return ""


# ------------------------------------------------------------------------------------------------
# The table


def _num(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f


def _met(ok: bool, *values: float) -> bool | None:
    """None when a figure is missing (nothing to judge), else whether the target holds."""
    return None if any(math.isnan(v) for v in values) else ok


def _count(m: dict[str, Any]) -> str:
    return f"{m.get('executed')}/{m.get('n')}" if "n" in m else ""


def after_rows(results: dict[str, dict[str, Any]], huey_w2: float, label: str) -> list[TableRow]:
    """After's rows with their targets judged; ``label`` marks non-full sizes."""
    rows: list[TableRow] = []

    def row(workload: str, figure: str, target: str, met: bool | None) -> None:
        rows.append(TableRow(system="after", workload=workload + label, figure=figure, target=target, met=met))

    def failed(name: str) -> bool:
        res = results.get(name)
        if res is None:
            return True
        if not res.get("metrics"):
            row(name, f"no result: {res.get('notes')}"[:120], "-", False)
            return True
        return False

    if not failed("W1"):
        m = results["W1"]["metrics"]
        p50, p99 = _num(m.get("p50_ms")), _num(m.get("p99_ms"))
        complete = m.get("executed") == m.get("n")
        figure = f"p50 {p50:.0f} / p99 {p99:.0f} / max {_num(m.get('max_ms')):.0f} ms ({_count(m)})"
        row("W1", figure, f"p50 <= {W1_P50_MS:g} ms, p99 <= {W1_P99_MS:g} ms", _met(complete and p50 <= W1_P50_MS and p99 <= W1_P99_MS, p50, p99))
    store = results.get("store", {}).get("metrics") or {}
    if not failed("W2"):
        m = results["W2"]["metrics"]
        rate = _num(m.get("tasks_per_s"))
        complete = m.get("done") == m.get("n")
        ratio = rate / huey_w2 if huey_w2 and not math.isnan(huey_w2) else math.nan
        vs = f" = {ratio:.2f}x huey" if not math.isnan(ratio) else " (huey not run)"
        figure = f"{rate:.0f} tasks/s ({m.get('done')}/{m.get('n')} done){vs}"
        row("W2", figure, f">= {W2_VS_HUEY:g}x huey", _met(complete and ratio >= W2_VS_HUEY, rate, ratio))
        bulk = _num(store.get("bulk_docs_per_s"))
        plain = _num(store.get("plain_bulk_docs_per_s"))
        wpt = _num(m.get("writes_per_task") or 3)
        eff = rate / (bulk / wpt) if bulk else math.nan
        eff_plain = rate / (plain / wpt) if plain else math.nan
        if math.isnan(bulk):
            figure = "no store-limit figure (run the store workload too)"
        else:
            figure = f"{eff:.0%} = {rate:.0f} / ({bulk:.0f} bulk docs/s / {wpt:g} writes); {eff_plain:.0%} of a plain db's {plain:.0f}"
        row("W2 efficiency", figure, f">= {W2_EFFICIENCY:.0%}", _met(eff >= W2_EFFICIENCY, eff))
    if not failed("W3"):
        m = results["W3"]["metrics"]
        big, small = m.get("big") or {}, m.get("small") or {}
        r50, r99 = _num(m.get("firing_ratio_p50")), _num(m.get("firing_ratio_p99"))
        figure = (
            f"firing tick p50/p99 {_num(big.get('firing_tick_p50_ms')):.1f}/{_num(big.get('firing_tick_p99_ms')):.1f} ms at {big.get('stored', 0):,} stored"
            f" vs {_num(small.get('firing_tick_p50_ms')):.1f}/{_num(small.get('firing_tick_p99_ms')):.1f} ms at {small.get('stored', 0):,}:"
            f" ratio {r50:.2f}/{r99:.2f}"
        )
        row("W3 tick", figure, f"ratio <= {W3_RATIO:g}", _met(r50 <= W3_RATIO and r99 <= W3_RATIO, r50, r99))
        rss = _num(m.get("rss_mb"))
        row("W3 RSS", f"daemon RSS {rss:.0f} MB at {big.get('stored', 0):,} stored (max of 0.5 s samples)", f"<= {W3_RSS_MB:g} MB", _met(rss <= W3_RSS_MB, rss))
    if not failed("W4"):
        m = results["W4"]["metrics"]
        frac = _num(m.get("in_order_fraction"))
        complete = m.get("executed") == m.get("n")
        figure = f"drain {_num(m.get('drain_s')):.1f} s, in-order {frac:.3f} ({_count(m)})"
        row("W4", figure, f">= {W4_IN_ORDER:.0%} in order", _met(complete and frac >= W4_IN_ORDER, frac))
    if not failed("W5"):
        m = results["W5"]["metrics"]
        p99 = _num(m.get("p99_ms"))
        figure = f"{_num(m.get('creates_per_s')):.0f} creates/s, p50 {_num(m.get('p50_ms')):.0f} / p99 {p99:.0f} ms ({m.get('clients')} clients)"
        row("W5", figure, f"p99 <= {W5_P99_MS:g} ms", _met(m.get("errors") == 0 and p99 <= W5_P99_MS, p99))
    if not failed("store"):
        figure = (
            f"_bulk_docs {_num(store.get('bulk_docs_per_s')):.0f} docs/s (After db), {_num(store.get('plain_bulk_docs_per_s')):.0f} (plain db);"
            f" single writes {_num(store.get('single_writes_per_s')):.0f}/s, {_num(store.get('single_writes_32_per_s')):.0f}/s x32"
        )
        row("store limit", figure, "-", None)
    return rows


def table(after: dict[str, dict[str, Any]], peers: list[dict[str, Any]], label: str) -> list[TableRow]:
    """Rows grouped by workload: After's judged row(s), then each peer's figure."""
    huey = next((p for p in peers if p.get("system") == "huey" and p.get("workload") == "W2"), None)
    huey_w2 = _num(((huey or {}).get("metrics") or {}).get("tasks_per_s"))
    mine = after_rows(after, huey_w2, label)
    out: list[TableRow] = []
    for workload in ("W1", "W2", "W3", "W4", "W5", "store"):
        out.extend(r for r in mine if str(r.get("workload", "")).split(" ")[0] == workload)
        for p in peers:
            if p.get("workload") == workload:
                peer_label = " (quick)" if p.get("quick") else ""
                out.append(TableRow(system=p["system"], workload=workload + peer_label, figure=headline(p), target="-", met=None))
    return out


# ------------------------------------------------------------------------------------------------
# Running


def run_all(
    sizes: after_side.Sizes,
    *,
    only: list[str] | None = None,
    peers: bool = True,
    couchdb_url: str | None = None,
    profile_dir: Path | None = None,
    log: Any = sys.stderr,
) -> dict[str, Any]:
    """Run everything asked for and return the report (results, table rows, machine)."""
    wanted = [w for w in AFTER_ORDER if not only or w in only]
    workdir = Path(tempfile.mkdtemp(prefix="after-bench-"))
    started = time.monotonic()
    load_before = _loadavg()
    after: dict[str, dict[str, Any]] = {}
    server = ""
    notes: list[str] = []
    try:
        if wanted:
            couch = after_side.Couch.start(couchdb_url, workdir)
            server = couch.kind
            try:
                ctx = after_side.Ctx(couch, sizes, workdir, profile_dir=profile_dir)
                for name in wanted:
                    print(f"after {name} ({sizes.name}) ...", file=log, flush=True)
                    after[name] = after_side.run(name, ctx)
                    print(f"  {after[name]['elapsed_s']} s: {json.dumps(after[name]['metrics'])[:300]}", file=log, flush=True)
            finally:
                couch.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    peer_results: list[dict[str, Any]] = []
    ok, why = peers_available()
    peer_workloads = [w for w in PEER_WORKLOADS if not only or w in only]
    if peers and not ok:
        notes.append(f"peers skipped ({why}); `make bench` installs them in .venv-bench")
        print(f"peers skipped: {why}", file=log, flush=True)
    elif peers:
        for system in SYSTEMS:
            for workload in peer_workloads:
                print(f"{system} {workload} ...", file=log, flush=True)
                res = run_isolated(system, workload, quick=sizes.name != "full", python=sys.executable)
                peer_results.append(res)
                print(f"  {headline(res)} ({res.get('notes')})", file=log, flush=True)
    label = "" if sizes.name == "full" else f" ({sizes.name})"
    rows = table(after, peer_results, label)
    return {
        "sizes": dataclasses.asdict(sizes),
        "server": server or "-",
        "machine": {**machine(), "loadavg_before": load_before},
        "elapsed_s": round(time.monotonic() - started, 1),
        "notes": notes,
        "table": [dict(r) for r in rows],
        "after": after,
        "peers": peer_results,
    }


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM: unwind like Ctrl-C, so every ``finally`` stops the daemons and servers it started."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a small version, under two minutes")
    size.add_argument("--smoke", action="store_true", help="a tiny version: does it still run? (figures mean nothing)")
    parser.add_argument("--only", help="comma-separated subset of store,W1,W2,W3,W4,W5 (peers: W1,W2,W4)")
    parser.add_argument("--no-peers", action="store_true", help="After only")
    parser.add_argument("--couchdb-url", default=os.environ.get("AFTER_BENCH_COUCHDB_URL") or None, help="CouchDB with admin credentials (default: embedded)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the report (default {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of each daemon and its workers into this directory")
    parser.add_argument("--concurrency", type=int, help="the bench worker's concurrency (default: the size's)")
    args = parser.parse_args(argv)

    sizes = after_side.SMOKE if args.smoke else after_side.QUICK if args.quick else after_side.FULL
    if args.concurrency:
        sizes = dataclasses.replace(sizes, concurrency=args.concurrency)
    only = [w.strip() for w in args.only.split(",")] if args.only else None
    if only:
        only = [w if w == "store" else w.upper() for w in only]
    report = run_all(sizes, only=only, peers=not args.no_peers, couchdb_url=args.couchdb_url, profile_dir=args.profile)
    if args.profile:
        from bench import profiling

        report["profiles"] = profiling.summarize_dir(args.profile)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    m = report["machine"]
    print()
    print(f"After benchmark, {sizes.name} size, on {report['server']}; {m['cores']} cores {m['cpu']}; {report['elapsed_s']} s")
    print(f"load average before {m['loadavg_before']}, after {m['loadavg']}; git {m['git_commit']} ({m['git_dirty_files']} files modified)")
    for note in report["notes"]:
        print(f"note: {note}")
    print(format_table(report["table"]), end="")  # type: ignore[arg-type]
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
