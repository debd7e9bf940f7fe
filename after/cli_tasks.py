"""``after task add|ls|show|cancel|reschedule|rm``: task commands over the REST API.

Everything goes through the daemon's REST port (the same routes, validation and errors
curl gets), with the token read from the state directory. Every command takes ``--json``
for the daemon's answer as it is, for scripts; without it, one short line per item.
Errors print ``after: <the daemon's message> (HTTP <status>)`` and exit 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from after import cli_hooks, model
from after.cli_api import Api, fail, load_settings, out_json, segment


def _api(ctx: click.Context) -> Api:
    return Api(load_settings(ctx))


def _path(task_id: str) -> str:
    return "/tasks/" + segment(task_id)


def _line(t: dict[str, Any]) -> str:
    job = t.get("job")
    name = job.get("name", "?") if isinstance(job, dict) else str(job)
    return f"{t['_id']:<42} {t.get('status', '?'):<10} {t.get('date', '')!s:<25} {t.get('worker', '')!s:<12} {name}"


def _date(value: str) -> Any:
    """Epoch seconds as a number (the daemon takes both), anything else as text it parses."""
    try:
        return float(value)
    except ValueError:
        return value


F = TypeVar("F", bound=Callable[..., Any])


def _json_flag(help_text: str) -> Callable[[F], F]:
    """``--json``: every task command has it, for scripts."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


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
@click.option("--priority", type=int, default=None, help="Higher first among tasks due in the same second.")
@click.option("--timeout", type=float, default=None, help="Seconds before the job is killed.")
@click.option("--retry", type=int, default=None, help="Retries after a failure.")
@click.option("--jitter", type=float, default=None, help="Cron only: delay each occurrence by up to S seconds (the same on every daemon).")
@click.option("--exclude", multiple=True, metavar="DATE|RANGE", help="Cron only: no run on this day or inclusive range (YYYY-MM-DD[/YYYY-MM-DD]); repeatable.")
@click.option("--overlap", type=click.Choice(["wait", "skip", "replace", "allow"]), default=None, help="A cron run due while the previous one runs.")
@click.option("--id", "task_id", default=None, help="The task's id (default: a new uuid).")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as a JSON object.")
@click.option("--json-args", is_flag=True, help="Parse each argument as JSON (numbers, lists...).")
@click.option("--after", "after_ids", multiple=True, help="Wait for this task to be done first (repeatable).")
@click.option("--after-failed", type=click.Choice(["err", "run"]), default=None, help="A dependency failed: end err (default) or run anyway.")
@cli_hooks.options
@_json_flag("JSON output: {id, rev, task}.")
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
    jitter: float | None,
    exclude: tuple[str, ...],
    overlap: str | None,
    task_id: str | None,
    kwargs_json: str | None,
    json_args: bool,
    after_ids: tuple[str, ...],
    after_failed: str | None,
    notify: tuple[str, ...],
    notify_on: str | None,
    as_json: bool,
) -> None:
    """Schedule JOB on WORKER with ARGUMENTS; prints the new task's id."""
    try:
        args: list[Any] = [json.loads(a) for a in arguments] if json_args else list(arguments)
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    body: dict[str, Any] = {"worker": worker, "job": {"name": job, "arguments": args, "kwargs": kwargs}}
    given = (
        ("id", task_id), ("cron", cron), ("timezone", timezone), ("priority", priority), ("timeout", timeout), ("retry", retry),
        ("jitter", jitter), ("overlap", overlap),
    )  # fmt: skip
    for key, value in given:
        if value is not None:
            body[key] = value
    if exclude:
        body["exclude"] = list(exclude)
    body.update(cli_hooks.field(notify, notify_on))
    if after_ids:
        body["after"] = list(after_ids)
    if after_failed is not None:
        body["after_failed"] = after_failed
    if date is not None:
        body["date"] = _date(date)
    elif cron is None:
        body["date"] = time.time()
    reply = _api(ctx).request("POST", "/tasks", body=body)
    if as_json:
        out_json(reply)
    else:
        click.echo(reply["id"])


@task.command(name="ls")
@click.option("--status", type=click.Choice(model.STATUSES), default=None, help="Only this status.")
@click.option("--worker", default=None, help="Only this worker's tasks.")
@click.option("--job", default=None, help="Only this job name.")
@click.option("--from", "due_from", default=None, help="Due at or after (ISO 8601 or epoch seconds).")
@click.option("--to", "due_to", default=None, help="Due at or before.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page (same filters).")
@_json_flag("JSON output: {tasks, next}.")
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
    """List tasks by due date: id, status, date, worker, job. The cursor of the next page goes to stderr."""
    query = {"status": status, "worker": worker, "job": job, "from": due_from, "to": due_to, "limit": str(limit), "cursor": cursor}
    reply = _api(ctx).request("GET", "/tasks", params={k: v for k, v in query.items() if v})
    if as_json:
        out_json(reply)
        return
    for t in reply["tasks"]:
        click.echo(_line(t))
    if reply.get("next"):
        click.echo(f"(more: --cursor {reply['next']})", err=True)


@task.command()
@click.argument("task_id")
@_json_flag("JSON output (what show always prints).")
@click.pass_context
def show(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Print one task as stored (JSON), with next_runs (jitter applied), next_occurrences, waiting_on and notice."""
    out_json(_api(ctx).request("GET", _path(task_id)))


@task.command()
@click.argument("task_id")
@_json_flag("JSON output: the task.")
@click.pass_context
def cancel(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Cancel a task (a running one is stopped)."""
    reply = _api(ctx).request("POST", _path(task_id) + "/cancel")
    if as_json:
        out_json(reply)
    else:
        click.echo(f"{reply['_id']} {reply['status']}")


@task.command()
@click.argument("task_id")
@click.argument("date")
@_json_flag("JSON output: the task.")
@click.pass_context
def reschedule(ctx: click.Context, task_id: str, date: str, as_json: bool) -> None:
    """Run a task again at DATE (ISO 8601 or epoch seconds)."""
    reply = _api(ctx).request("POST", _path(task_id) + "/reschedule", body={"date": _date(date)})
    if as_json:
        out_json(reply)
    else:
        click.echo(f"{reply['_id']} {reply['status']} {reply['date']}")


@task.command()
@click.argument("task_id")
@_json_flag("JSON output: {deleted}.")
@click.pass_context
def rm(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Delete a task (not while it runs)."""
    reply = _api(ctx).request("DELETE", _path(task_id))
    if as_json:
        out_json(reply)
    else:
        click.echo(f"{reply['deleted']} deleted")


__all__ = ["fail", "task"]
