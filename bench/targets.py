"""The benchmark's table: figures judged against issue 14's targets, per server, beside the peers.

Plain functions over the results (``bench/after_side.py``'s per workload, per server;
``bench/peers.py``'s): no I/O, so the judging is tested with tables of made-up results
(tests/test_bench_smoke.py) and the runner only prints what they return.

The targets, all in one place because the table is where a reader checks them:

* W1: p50 <= 20 ms and p99 <= 100 ms, every task run -- on every server;
* W2: >= 2x huey's rate in the same run, and >= 75 % of the store's limit (the server's
  ``_bulk_docs`` rate into After's database divided by the writes each task costs);
* W3: firing tick at the big store <= 1.2x the small one's, daemon RSS <= 200 MB;
* W4: >= 99 % in order, and the drain no longer than huey's in the same run;
* W5: p99 <= 50 ms with no failed request;
* W6: a plain ``@job()`` function at the default isolation >= 1,000 tasks/s, judged on
  the embedded server (the issue's target names it); other servers show the figure.
* W7: W2's tasks drained by a remote worker (``after.client``, concurrency 100) at
  >= 50 % of W2's rate on the same server in the same run (issue 15).
* W8: a chain of 1,000 dependent tasks runs in order (issue 16); its hand-off (one's done
  to the next one's start) is shown, with no target but the order.

A missed target's row names the run's profile of that workload when ``--profile`` was
given (the ``profiles`` the runner recorded in the result), so "where does the time go"
is one file away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

try:
    from bench.peers import headline
    from bench.stats import TableRow
except ModuleNotFoundError:  # run as a script from bench/
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.peers import headline
    from bench.stats import TableRow

W1_P50_MS, W1_P99_MS = 20.0, 100.0
W2_VS_HUEY, W2_EFFICIENCY = 2.0, 0.75
W3_RATIO, W3_RSS_MB = 1.2, 200.0
W4_IN_ORDER = 0.99
W5_P99_MS = 50.0
W6_TASKS_PER_S = 1_000.0
W7_VS_W2 = 0.5
#: The server W6's target is judged on (issue 14: "on the embedded server on this machine").
W6_JUDGED_ON = "embedded"
#: Table order: W7 and W6 are W2 with another worker or job, so they sit next to it.
WORKLOAD_ORDER = ("W1", "W2", "W7", "W6", "W3", "W4", "W5", "W8", "store")


@dataclass(frozen=True)
class ServerRun:
    """After's results on one server: ``key`` is its ``--servers`` name, ``system`` its table label."""

    key: str
    system: str
    results: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PeerFigures:
    """The peers' figures the targets compare with (NaN when the peer was not run)."""

    huey_w2_tasks_per_s: float = math.nan
    huey_w4_drain_s: float = math.nan

    @classmethod
    def of(cls, peers: list[dict[str, Any]]) -> PeerFigures:
        def metric(workload: str, key: str) -> float:
            res = next((p for p in peers if p.get("system") == "huey" and p.get("workload") == workload), None)
            return num(((res or {}).get("metrics") or {}).get(key))

        return cls(metric("W2", "tasks_per_s"), metric("W4", "drain_s"))


def num(value: Any) -> float:
    """A figure as a float; NaN for anything missing or not a number."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _met(ok: bool, *values: float) -> bool | None:
    """None when a figure is missing (nothing to judge), else whether the target holds."""
    return None if any(math.isnan(v) for v in values) else ok


def _count(m: dict[str, Any]) -> str:
    return f"{m.get('executed')}/{m.get('n')}" if "n" in m else ""


def _profile_of(res: dict[str, Any] | None) -> str:
    """Where a missed target's time went: the workload's first profile (and how many more)."""
    files = list((res or {}).get("profiles") or [])
    if not files:
        return ""
    return files[0] + (f" (+{len(files) - 1})" if len(files) > 1 else "")


def after_rows(run: ServerRun, peers: PeerFigures, label: str = "") -> list[TableRow]:
    """One server's rows with their targets judged; ``label`` marks non-full sizes."""
    results = run.results
    rows: list[TableRow] = []

    def row(workload: str, figure: str, target: str, met: bool | None, source: str | None = None) -> None:
        r = TableRow(system=run.system, workload=workload + label, figure=figure, target=target, met=met)
        profile = _profile_of(results.get(source or workload.split(" ")[0])) if met is False else ""
        if profile:
            r["profile"] = profile
        rows.append(r)

    def failed(name: str) -> bool:
        res = results.get(name)
        if res is None:
            return True
        if not res.get("metrics"):
            row(name, f"no result: {res.get('notes')}"[:120], "-", False)
            return True
        return False

    store = (results.get("store") or {}).get("metrics") or {}
    if not failed("W1"):
        m = results["W1"]["metrics"]
        p50, p99 = num(m.get("p50_ms")), num(m.get("p99_ms"))
        complete = m.get("executed") == m.get("n")
        figure = f"p50 {p50:.0f} / p99 {p99:.0f} / max {num(m.get('max_ms')):.0f} ms ({_count(m)})"
        row("W1", figure, f"p50 <= {W1_P50_MS:g} ms, p99 <= {W1_P99_MS:g} ms", _met(complete and p50 <= W1_P50_MS and p99 <= W1_P99_MS, p50, p99))
    if not failed("W2"):
        m = results["W2"]["metrics"]
        rate = num(m.get("tasks_per_s"))
        complete = m.get("done") == m.get("n")
        huey = peers.huey_w2_tasks_per_s
        ratio = rate / huey if huey and not math.isnan(huey) else math.nan
        vs = f" = {ratio:.2f}x huey" if not math.isnan(ratio) else " (huey not run)"
        figure = f"{rate:.0f} tasks/s ({m.get('done')}/{m.get('n')} done){vs}"
        row("W2", figure, f">= {W2_VS_HUEY:g}x huey", _met(complete and ratio >= W2_VS_HUEY, rate, ratio))
        bulk = num(store.get("bulk_docs_per_s"))
        plain = num(store.get("plain_bulk_docs_per_s"))
        wpt = num(m.get("writes_per_task") or 3)
        eff = rate / (bulk / wpt) if bulk else math.nan
        eff_plain = rate / (plain / wpt) if plain else math.nan
        if math.isnan(bulk):
            figure = "no store-limit figure (run the store workload too)"
        else:
            figure = f"{eff:.0%} = {rate:.0f} / ({bulk:.0f} bulk docs/s / {wpt:g} writes); {eff_plain:.0%} of a plain db's {plain:.0f}"
        row("W2 efficiency", figure, f">= {W2_EFFICIENCY:.0%}", _met(eff >= W2_EFFICIENCY, eff))
    if not failed("W7"):
        m = results["W7"]["metrics"]
        rate = num(m.get("tasks_per_s"))
        complete = m.get("done") == m.get("n")
        local = num(((results.get("W2") or {}).get("metrics") or {}).get("tasks_per_s"))
        ratio = rate / local if local and not math.isnan(local) else math.nan
        vs = f" = {ratio:.0%} of W2's {local:.0f}" if not math.isnan(ratio) else " (W2 not run)"
        figure = f"{rate:.0f} tasks/s ({m.get('done')}/{m.get('n')} done; remote, concurrency {m.get('concurrency')}){vs}"
        row("W7", figure, f">= {W7_VS_W2:.0%} of W2", _met(complete and ratio >= W7_VS_W2, rate, ratio))
    if not failed("W6"):
        m = results["W6"]["metrics"]
        rate = num(m.get("tasks_per_s"))
        complete = m.get("done") == m.get("n")
        cpu = num((results["W6"].get("cpu_s") or {}).get("job_processes"))
        within = f"in {num(m.get('jobs_measured_s')):.0f} s" + ("" if complete else f", bound {num(m.get('bound_s')):g} s hit")
        jobs_cpu = f"; job processes {cpu:.1f} s CPU" if not math.isnan(cpu) else ""
        figure = f"{rate:.0f} tasks/s ({m.get('done')}/{m.get('n')} done {within}; concurrency {m.get('concurrency')}{jobs_cpu})"
        if run.key == W6_JUDGED_ON:
            row("W6", figure, f">= {W6_TASKS_PER_S:,.0f} tasks/s", _met(complete and rate >= W6_TASKS_PER_S, rate))
        else:
            row("W6", figure, f"- (judged on {W6_JUDGED_ON})", None)
    if not failed("W3"):
        m = results["W3"]["metrics"]
        big, small = m.get("big") or {}, m.get("small") or {}
        r50, r99 = num(m.get("firing_ratio_p50")), num(m.get("firing_ratio_p99"))
        figure = (
            f"firing tick p50/p99 {num(big.get('firing_tick_p50_ms')):.1f}/{num(big.get('firing_tick_p99_ms')):.1f} ms at {big.get('stored', 0):,} stored"
            f" vs {num(small.get('firing_tick_p50_ms')):.1f}/{num(small.get('firing_tick_p99_ms')):.1f} ms at {small.get('stored', 0):,}:"
            f" ratio {r50:.2f}/{r99:.2f}"
        )
        row("W3 tick", figure, f"ratio <= {W3_RATIO:g}", _met(r50 <= W3_RATIO and r99 <= W3_RATIO, r50, r99))
        rss = num(m.get("rss_mb"))
        row("W3 RSS", f"daemon RSS {rss:.0f} MB at {big.get('stored', 0):,} stored (max of 0.5 s samples)", f"<= {W3_RSS_MB:g} MB", _met(rss <= W3_RSS_MB, rss))
    if not failed("W4"):
        m = results["W4"]["metrics"]
        frac, drain = num(m.get("in_order_fraction")), num(m.get("drain_s"))
        complete = m.get("executed") == m.get("n")
        row("W4", f"drain {drain:.1f} s, in-order {frac:.3f} ({_count(m)})", f">= {W4_IN_ORDER:.0%} in order", _met(complete and frac >= W4_IN_ORDER, frac))
        huey = peers.huey_w4_drain_s
        vs = f"drain {drain:.1f} s vs huey's {huey:.1f} s" if not math.isnan(huey) else f"drain {drain:.1f} s (huey not run)"
        first = num(m.get("first_execution_s"))
        vs += f"; first job {first:.1f} s after spawn, ready at {num(m.get('ready_s')):.1f} s" if not math.isnan(first) else ""
        row("W4 vs huey", vs, "drain <= huey's", _met(complete and drain <= huey, drain, huey), source="W4")
    if not failed("W5"):
        m = results["W5"]["metrics"]
        p99 = num(m.get("p99_ms"))
        figure = f"{num(m.get('creates_per_s')):.0f} creates/s, p50 {num(m.get('p50_ms')):.0f} / p99 {p99:.0f} ms ({m.get('clients')} clients)"
        row("W5", figure, f"p99 <= {W5_P99_MS:g} ms", _met(m.get("errors") == 0 and p99 <= W5_P99_MS, p99))
    if not failed("W8"):
        m = results["W8"]["metrics"]
        p50 = num(m.get("handoff_p50_ms"))
        figure = (
            f"hand-off p50 {p50:.0f} / p95 {num(m.get('handoff_p95_ms')):.0f} / p99 {num(m.get('handoff_p99_ms')):.0f}"
            f" / max {num(m.get('handoff_max_ms')):.0f} ms; {m.get('done')}/{m.get('n')} done in {num(m.get('total_s')):.1f} s"
        )
        row("W8", figure, "in order", _met(bool(m.get("in_order")) and m.get("done") == m.get("n"), p50))
    if not failed("store"):
        figure = (
            f"_bulk_docs {num(store.get('bulk_docs_per_s')):.0f} docs/s (After db), {num(store.get('plain_bulk_docs_per_s')):.0f} (plain db);"
            f" single writes {num(store.get('single_writes_per_s')):.0f}/s, {num(store.get('single_writes_32_per_s')):.0f}/s x32"
        )
        row("store limit", figure, "-", None)
    return rows


def table(runs: list[ServerRun], peers: list[dict[str, Any]], label: str = "") -> list[TableRow]:
    """Rows grouped by workload: each server's judged row(s), in ``runs`` order, then each peer's."""
    figures = PeerFigures.of(peers)
    mine = [r for run in runs for r in after_rows(run, figures, label)]
    out: list[TableRow] = []
    for workload in WORKLOAD_ORDER:
        out.extend(r for r in mine if str(r.get("workload", "")).split(" ")[0] == workload)
        for p in peers:
            if p.get("workload") == workload:
                peer_label = " (quick)" if p.get("quick") else ""
                out.append(TableRow(system=p["system"], workload=workload + peer_label, figure=headline(p), target="-", met=None))
    return out


def missed(rows: list[TableRow]) -> list[TableRow]:
    """The rows whose target was judged and not met."""
    return [r for r in rows if r.get("met") is False]
