"""``after task add|ls|show|cancel|reschedule|rm``: task commands over the REST API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from after.cli import Api, fail, load_settings, out_json


def _api(ctx: click.Context) -> Api:
    return Api(load_settings(ctx))


def _path(task_id: str) -> str:
    return "/tasks/" + quote(task_id, safe="")


def _line(t: dict[str, Any]) -> str:
    job = (t.get("job") or {}).get("name", "?")
    return f"{t['_id']:<42} {t.get('status', '?'):<10} {t.get('date', ''):<25} {t.get('worker', ''):<12} {job}"


@click.group()
def task() -> None:
    """Create, list, inspect, cancel, reschedule and remove tasks."""


@task.command()
@click.argument("worker")
@click.argument("job")
@click.argument("arguments", nargs=-1)
@click.option("--date", "date", default=None, help="When due: ISO 8601, epoch seconds or YYYY-MM-DD (default: now).")
@click.option("--cron", default=None, help="Repeat on this cron expression.")
@click.option("--timezone", default=None, help="Time zone of the cron expression (e.g. Europe/Lisbon).")
@click.option("--priority", type=int, default=None)
@click.option("--timeout", type=float, default=None, help="Seconds before the job is killed.")
@click.option("--retry", type=int, default=None, help="Retries after a failure.")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as a JSON object.")
@click.option("--json-args", is_flag=True, help="Parse each argument as JSON (numbers, lists...).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def add(
    ctx: click.Context,
    worker: str,
    job: str,
    arguments: tuple[str, ...],
    date: str | None,
    cron: str | None,
    timezone: str | None,
    priority: int | None,
    timeout: float | None,
    retry: int | None,
    kwargs_json: str | None,
    json_args: bool,
    as_json: bool,
) -> None:
    """Schedule JOB on WORKER with ARGUMENTS."""
    try:
        args: list[Any] = [json.loads(a) for a in arguments] if json_args else list(arguments)
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    body: dict[str, Any] = {"worker": worker, "job": {"name": job, "arguments": args, "kwargs": kwargs}}
    for key, value in (("cron", cron), ("timezone", timezone), ("priority", priority), ("timeout", timeout), ("retry", retry)):
        if value is not None:
            body[key] = value
    if date is not None:
        body["date"] = float(date) if date.replace(".", "", 1).isdigit() else date
    elif cron is None:
        import time

        body["date"] = time.time()
    reply = _api(ctx).request("POST", "/tasks", body=body)
    if as_json:
        out_json(reply)
    else:
        click.echo(reply["id"])


@task.command(name="ls")
@click.option("--status", default=None)
@click.option("--worker", default=None)
@click.option("--job", default=None)
@click.option("--from", "due_from", default=None, help="Due at or after.")
@click.option("--to", "due_to", default=None, help="Due at or before.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ls(
    ctx: click.Context,
    status: str | None,
    worker: str | None,
    job: str | None,
    due_from: str | None,
    due_to: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List tasks by due date."""
    params = {
        k: v for k, v in {"status": status, "worker": worker, "job": job, "from": due_from, "to": due_to, "limit": str(limit), "cursor": cursor}.items() if v
    }
    reply = _api(ctx).request("GET", "/tasks", params=params)
    if as_json:
        out_json(reply)
        return
    for t in reply["tasks"]:
        click.echo(_line(t))
    if reply.get("next"):
        click.echo(f"(more: --cursor {reply['next']})", err=True)


@task.command()
@click.argument("task_id")
@click.pass_context
def show(ctx: click.Context, task_id: str) -> None:
    """Print one task as stored (JSON)."""
    out_json(_api(ctx).request("GET", _path(task_id)))


@task.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Cancel a task (a running one is stopped)."""
    reply = _api(ctx).request("POST", _path(task_id) + "/cancel")
    out_json(reply) if as_json else click.echo(f"{reply['_id']} {reply['status']}")


@task.command()
@click.argument("task_id")
@click.argument("date")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reschedule(ctx: click.Context, task_id: str, date: str, as_json: bool) -> None:
    """Run a task again at DATE (ISO 8601 or epoch seconds)."""
    when: Any = float(date) if date.replace(".", "", 1).isdigit() else date
    reply = _api(ctx).request("POST", _path(task_id) + "/reschedule", body={"date": when})
    out_json(reply) if as_json else click.echo(f"{reply['_id']} {reply['status']} {reply['date']}")


@task.command()
@click.argument("task_id")
@click.pass_context
def rm(ctx: click.Context, task_id: str) -> None:
    """Delete a task."""
    _api(ctx).request("DELETE", _path(task_id))
    click.echo(f"{task_id} deleted")


__all__ = ["fail", "task"]
