"""``make bench``: After against APScheduler and huey, side by side, with the issue's targets.

Runs After's workloads (bench/after_side.py: store limit, W1-W7) on each server asked
for, one after the other -- the embedded pouchdb-server the bench starts, and the
CouchDB named by ``--couchdb-url`` / ``AFTER_BENCH_COUCHDB_URL`` (server admin
credentials in the URL) when it is given -- then stops the embedded server and runs the
peers' W1, W2 and W4 once (bench/peers.py, each in a child process of its own), so no
system shares the machine with another's leftovers. Prints one table (workload x
system, the server in the system's label: figure, target, met; bench/targets.py judges)
and writes everything, every server's results, the machine and the git state included,
as JSON (default ``bench/results/latest.json``).

Sizes: the issue's (default), ``--quick`` (under two minutes; W2/W4 at the peers' quick
sizes, W3 scaled down and labelled so) and ``--smoke`` (tiny: the test suite's check
that the benchmark still runs; its figures mean nothing).

Usage::

    .venv-bench/bin/python bench/run.py [--quick | --smoke] [--only W1,W3] [--no-peers]
        [--servers embedded,couchdb] [--couchdb-url URL] [--json OUT] [--profile DIR]
        [--concurrency N]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
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
    from bench.stats import format_table
    from bench.targets import ServerRun, missed, table
except ModuleNotFoundError:  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import after_side
    from bench.peers import SYSTEMS, headline, run_isolated
    from bench.peers import WORKLOADS as PEER_WORKLOADS
    from bench.stats import format_table
    from bench.targets import ServerRun, missed, table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
AFTER_ORDER = ("store", "W1", "W2", "W7", "W6", "W3", "W4", "W5", "W8")
SERVERS = ("embedded", "couchdb")


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
# Running


def choose_servers(asked: str | None, couchdb_url: str | None) -> tuple[list[str], str | None]:
    """The servers to run on, in order, and why not when the request cannot be met.

    Default: the embedded server, and the CouchDB too when its URL is known
    (``--couchdb-url`` or ``AFTER_BENCH_COUCHDB_URL``).
    """
    if asked is None:
        return (["embedded", "couchdb"] if couchdb_url else ["embedded"]), None
    names = [n.strip().lower() for n in asked.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if unknown or not names:
        return [], f"--servers takes a comma-separated subset of {','.join(SERVERS)}, not {asked!r}"
    if "couchdb" in names and not couchdb_url:
        return [], "--servers couchdb needs --couchdb-url or AFTER_BENCH_COUCHDB_URL (an admin URL)"
    return list(dict.fromkeys(names)), None


def run_server(
    key: str,
    sizes: after_side.Sizes,
    wanted: list[str],
    *,
    couchdb_url: str | None,
    profile_dir: Path | None,
    log: Any,
) -> dict[str, Any]:
    """Every wanted After workload on one server; the server is stopped (embedded) at the end."""
    workdir = Path(tempfile.mkdtemp(prefix=f"after-bench-{key}-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        couch = after_side.Couch.start(couchdb_url if key == "couchdb" else None, workdir)
        try:
            # One profile directory per server: the daemons' profiles are named by workload.
            ctx = after_side.Ctx(couch, sizes, workdir, profile_dir=profile_dir / key if profile_dir else None)
            for name in wanted:
                print(f"{couch.system} {name} ({sizes.name}) ...", file=log, flush=True)
                results[name] = after_side.run(name, ctx)
                print(f"  {results[name]['elapsed_s']} s: {json.dumps(results[name]['metrics'])[:300]}", file=log, flush=True)
            info = {"key": key, "system": couch.system, "kind": couch.kind, "product": couch.product, "welcome": couch.welcome}
        finally:
            couch.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {**info, "results": results}


def run_all(
    sizes: after_side.Sizes,
    *,
    only: list[str] | None = None,
    peers: bool = True,
    servers: list[str] | None = None,
    couchdb_url: str | None = None,
    profile_dir: Path | None = None,
    log: Any = sys.stderr,
) -> dict[str, Any]:
    """Run everything asked for and return the report (results per server, table rows, machine).

    After's workloads run on each server in turn (each server alone on the machine:
    the embedded one is stopped before the next starts), then the peers, once.
    """
    wanted = [w for w in AFTER_ORDER if not only or w in only]
    started = time.monotonic()
    load_before = _loadavg()
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    for key in (servers or ["embedded"]) if wanted else []:
        try:
            runs.append(run_server(key, sizes, wanted, couchdb_url=couchdb_url, profile_dir=profile_dir, log=log))
        except Exception as exc:  # one server down must not cost the other's figures
            notes.append(f"{key}: not run: {type(exc).__name__}: {str(exc)[:300]}")
            print(f"{key}: not run: {exc}", file=log, flush=True)
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
    rows = table([ServerRun(r["key"], r["system"], r["results"]) for r in runs], peer_results, label)
    return {
        "sizes": dataclasses.asdict(sizes),
        "servers": [{k: v for k, v in r.items() if k != "results"} for r in runs],
        "machine": {**machine(), "loadavg_before": load_before},
        "elapsed_s": round(time.monotonic() - started, 1),
        "notes": notes,
        "table": [dict(r) for r in rows],
        # After's results by server key ("embedded", "couchdb"), then by workload.
        "after": {r["key"]: r["results"] for r in runs},
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
    parser.add_argument("--only", help="comma-separated subset of store,W1,W2,W3,W4,W5,W6,W7,W8 (peers: W1,W2,W4)")
    parser.add_argument("--no-peers", action="store_true", help="After only")
    parser.add_argument(
        "--servers", help="comma-separated subset of embedded,couchdb, run in that order (default: embedded, and couchdb when its URL is given)"
    )
    parser.add_argument(
        "--couchdb-url", default=os.environ.get("AFTER_BENCH_COUCHDB_URL") or None, help="the couchdb server: an admin URL (default: $AFTER_BENCH_COUCHDB_URL)"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the report (default {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of each daemon and its workers into this directory (one subdirectory per server)")
    parser.add_argument("--concurrency", type=int, help="the bench worker's concurrency (default: the size's)")
    args = parser.parse_args(argv)

    sizes = after_side.SMOKE if args.smoke else after_side.QUICK if args.quick else after_side.FULL
    if args.concurrency:
        sizes = dataclasses.replace(sizes, concurrency=args.concurrency)
    servers, why = choose_servers(args.servers, args.couchdb_url)
    if why:
        parser.error(why)
    only = [w.strip() for w in args.only.split(",")] if args.only else None
    if only:
        only = [w if w == "store" else w.upper() for w in only]
    report = run_all(sizes, only=only, peers=not args.no_peers, servers=servers, couchdb_url=args.couchdb_url, profile_dir=args.profile)
    if args.profile:
        from bench import profiling

        report["profiles"] = profiling.summarize_dir(args.profile)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    m = report["machine"]
    print()
    on = "; ".join(f"{s['system']}: {s['kind']}" for s in report["servers"]) or "no After workload"
    print(f"After benchmark, {sizes.name} size; {on}; {m['cores']} cores {m['cpu']}; {report['elapsed_s']} s")
    print(f"load average before {m['loadavg_before']}, after {m['loadavg']}; git {m['git_commit']} ({m['git_dirty_files']} files modified)")
    for note in report["notes"]:
        print(f"note: {note}")
    print(format_table(report["table"]), end="")  # type: ignore[arg-type]
    misses = missed(report["table"])
    if misses and not args.profile:
        print(f"{len(misses)} target(s) missed: run again with --profile DIR (and --only) to see where the time goes")
    elif misses:
        print(f"{len(misses)} target(s) missed: each row's profile is in {args.profile}; summaries in the JSON's \"profiles\"")
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
