"""``after list`` and ``after daemons``: the workers (local processes and remote
workers' sessions) and daemons of the database, as text tables over ``GET /workers`` and
``GET /daemons``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import click

from after.cli_api import Api, load_settings, out_json


def ago(iso: Any, now: float) -> str:
    """How long before ``now`` (epoch seconds) an ISO time was, as ``3s ago`` / ``4m ago`` /
    ``2h ago``; ``-`` when there is none. Another daemon's clock may run a little ahead:
    a time in the future counts as just now."""
    if not isinstance(iso, str):
        return "-"
    try:
        then = datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return "-"
    secs = max(0.0, now - then)
    if secs < 120:
        return f"{secs:.0f}s ago"
    return f"{secs / 60:.0f}m ago" if secs < 7200 else f"{secs / 3600:.0f}h ago"


def _host(w: dict[str, Any]) -> str:
    """The HOST cell: ``*`` marks a worker held by another daemon on the database."""
    return str(w.get("host") or "-") + ("" if w.get("here", True) else "*")


def worker_lines(workers: list[dict[str, Any]], now: float) -> list[str]:
    """The text of ``after list``: local worker processes first, in the columns scripts
    have always read (NAME HOST STATE ...), then remote workers (docs/worker-protocol.md)
    in a table of their own, since what tells them apart (the address they call from, their
    last call, whether they are live) means nothing for a local process. Both tables start
    with NAME HOST STATE."""
    local = [w for w in workers if not w.get("remote")]
    remote = [w for w in workers if w.get("remote")]
    out: list[str] = []
    if local or not remote:
        out.append(f"{'NAME':<16} {'HOST':<16} {'STATE':<10} {'PID':>7} {'UPTIME':>9} {'TASKS':>6}  LAST ERROR")
    for w in local:
        uptime = f"{w['uptime']:.0f}s" if w.get("uptime") is not None else "-"
        out.append(
            f"{w['name']:<16} {_host(w):<16} {w['state']:<10} {w.get('pid') or '-':>7} {uptime:>9} {w.get('tasks_run', 0):>6}  {w.get('last_error') or ''}"
        )
    if remote:
        if local:
            out.append("")
        out.append("REMOTE WORKERS (connected over the REST port)")
        out.append(f"{'NAME':<16} {'HOST':<16} {'STATE':<10} {'PID':>7} {'LIVE':<4} {'RUNNING':>7} {'TASKS':>6} {'LAST BEAT':>9}  {'ADDRESS':<16} LAST ERROR")
        for w in remote:
            live = "yes" if w.get("live") else "no" if w.get("live") is False else "-"
            running = f"{w.get('running_tasks', 0)}/{w.get('concurrency') or '-'}"
            beat = ago(w.get("last_heartbeat"), now)
            out.append(
                f"{w['name']:<16} {_host(w):<16} {w['state']:<10} {w.get('pid') or '-':>7} {live:<4} {running:>7} {w.get('tasks_run', 0):>6} {beat:>9}  "
                f"{w.get('address') or '-':<16} {w.get('last_error') or ''}"
            )
    if any(not w.get("here", True) for w in workers):
        out.append("(* held by another daemon on this database; --here for this daemon's only)")
    from after.cli_pause import paused_lines

    return out + paused_lines(workers)


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--here", is_flag=True, help="Only this daemon's workers (default: every daemon's on the database).")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, here: bool) -> None:
    """List workers of every daemon: name, host, state, pid, uptime, tasks run, last error;
    remote workers apart, with whether they are live, their running tasks, last call and address."""
    workers = Api(load_settings(ctx)).request("GET", "/workers", params={"here": "1"} if here else None)["workers"]
    if as_json:
        out_json(workers)
        return
    for line in worker_lines(workers, time.time()):
        click.echo(line.rstrip())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def daemons(ctx: click.Context, as_json: bool) -> None:
    """List every daemon on the database (live, stopped, gone), from their heartbeats."""
    items = Api(load_settings(ctx)).request("GET", "/daemons")["daemons"]
    if as_json:
        out_json(items)
        return
    click.echo(f"{'ID':<36} {'STATE':<8} {'QUORUM':<7} {'WORKERS':<24} {'LAST BEAT':<25} URL")
    for d in items:
        names = ",".join(str(w.get("name")) for w in d.get("workers") or []) or "-"
        mark = " (here)" if d.get("here") else ""
        click.echo(f"{d['id'] + mark:<36} {d['state']:<8} {d.get('quorum', '-'):<7} {names:<24} {d.get('beat', '-'):<25} {d.get('url', '-')}")
