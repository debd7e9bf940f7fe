"""``after task backfill ID --from DATE --to DATE``: a cron task's occurrences of a range.

Over the REST port like every task command (``POST /tasks/{id}/backfill``); the
occurrences run oldest first under the task's overlap policy, each recorded in its
``runs`` (``after task show ID``).
"""

from __future__ import annotations

import click

from after.cli_api import Api, load_settings, out_json, segment
from after.cli_tasks import _date, task


@task.command()
@click.argument("task_id")
@click.option("--from", "start", required=True, help="First instant of the range (ISO 8601, epoch seconds or YYYY-MM-DD), inclusive.")
@click.option("--to", "end", required=True, help="Last instant of the range, inclusive.")
@click.option("--json", "as_json", is_flag=True, help="JSON output: {id, count, occurrences, pending}.")
@click.pass_context
def backfill(ctx: click.Context, task_id: str, start: str, end: str, as_json: bool) -> None:
    """Run a cron task's occurrences from --from to --to (at most 1,000), oldest first."""
    reply = Api(load_settings(ctx)).request("POST", "/tasks/" + segment(task_id) + "/backfill", body={"from": _date(start), "to": _date(end)})
    if as_json:
        out_json(reply)
        return
    click.echo(f"{reply['id']}: {reply['count']} occurrence(s) to backfill ({reply['pending']} pending)")
    for at in reply["occurrences"]:
        click.echo(at)
