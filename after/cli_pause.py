"""``after pause NAME`` / ``after resume NAME`` (a worker name, on every daemon of the
database) and ``after task pause ID`` / ``after task resume ID``: over the REST port, like
every task command (the daemon records ``by: "cli"``)."""

from __future__ import annotations

from typing import Any

import click

from after.cli_api import Api, load_settings, out_json, segment
from after.cli_tasks import task


def _api(ctx: click.Context) -> Api:
    return Api(load_settings(ctx))


def said(paused: Any) -> str:
    if not isinstance(paused, dict):
        return "not paused"
    note = f": {paused['note']}" if paused.get("note") else ""
    return f"paused by {paused.get('by')} at {paused.get('at')}{note}"


def paused_lines(workers: list[dict[str, Any]]) -> list[str]:
    """``after list``'s closing lines: each paused name once, who paused it, when, why."""
    names = {str(w.get("name")): w["paused"] for w in workers if isinstance(w.get("paused"), dict)}
    return [f"(worker {name} {said(p)}: no new task of it starts)" for name, p in sorted(names.items())]


def _body(note: str | None) -> dict[str, Any] | None:
    return {"note": note} if note is not None else None


@click.command()
@click.argument("name")
@click.option("--note", default=None, help="Why (shown with the pause: REST, UI, `after list`).")
@click.option("--json", "as_json", is_flag=True, help="JSON output: {name, paused}.")
@click.pass_context
def pause(ctx: click.Context, name: str, note: str | None, as_json: bool) -> None:
    """Pause worker name NAME on every daemon: no new task of it starts; running ones finish."""
    reply = _api(ctx).request("POST", f"/workers/{segment(name)}/pause", body=_body(note))
    if as_json:
        out_json(reply)
    else:
        click.echo(f"worker {reply['name']} {said(reply['paused'])}")


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON output: {name, paused}.")
@click.pass_context
def resume(ctx: click.Context, name: str, as_json: bool) -> None:
    """Resume worker name NAME: its due tasks start, oldest due first (misfire policy applies)."""
    reply = _api(ctx).request("POST", f"/workers/{segment(name)}/resume")
    if as_json:
        out_json(reply)
    else:
        click.echo(f"worker {reply['name']} resumed")


@task.command(name="pause")
@click.argument("task_id")
@click.option("--note", default=None, help="Why (shown with the pause).")
@click.option("--json", "as_json", is_flag=True, help="JSON output: the task.")
@click.pass_context
def task_pause(ctx: click.Context, task_id: str, note: str | None, as_json: bool) -> None:
    """Pause a task: it does not start until resumed (a run under way finishes)."""
    reply = _api(ctx).request("POST", f"/tasks/{segment(task_id)}/pause", body=_body(note))
    if as_json:
        out_json(reply)
    else:
        click.echo(f"{reply['_id']} {reply['status']} {said(reply.get('paused'))}")


@task.command(name="resume")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="JSON output: the task.")
@click.pass_context
def task_resume(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Resume a paused task (overdue, it follows its misfire policy)."""
    reply = _api(ctx).request("POST", f"/tasks/{segment(task_id)}/resume")
    if as_json:
        out_json(reply)
    else:
        click.echo(f"{reply['_id']} {reply['status']} {reply.get('date')} resumed")
