"""``POST /tasks/{id}/backfill``: run a cron task's occurrences of a past (or any) range.

The occurrences (:func:`after.overlap.occurrences_between`, at most 1,000) are added to the
task's ``backfill`` list, so a daemon that restarts goes on with them; the scheduler
runs them as child documents, oldest first, under the task's overlap policy
(:mod:`after.occurrences`). The task's own schedule goes on meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from after import occurrences, timing
from after.api import SCHEDULER, TASKS
from after.api.middleware import read_json
from after.api.routes import json_resp, ref, route
from after.errors import InvalidInput


def backfill_range(body: Any) -> tuple[datetime, datetime]:
    """The body ``{"from": date, "to": date}`` as two instants, or InvalidInput naming the field."""
    if not isinstance(body, dict):
        raise InvalidInput('body: expected an object {"from": date, "to": date}', field="body")
    unknown = sorted(set(body) - {"from", "to"})
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field", field=unknown[0])
    for name in ("from", "to"):
        if name not in body:
            raise InvalidInput(f"{name}: required (a date)", field=name)
    return timing.parse_date(body["from"], field="from"), timing.parse_date(body["to"], field="to")


@route(
    "POST",
    "/tasks/{id}/backfill",
    "Run a cron task's occurrences of a range (oldest first, under its overlap policy; each recorded in runs)",
    body=ref("BackfillRequest"),
    responses={
        "200": json_resp(ref("Backfill")),
        "409": json_resp(ref("Error"), "A one-shot task (no cron), a child occurrence, or a finished task"),
        "422": json_resp(ref("Error"), "A reversed range, or more than 1,000 occurrences"),
    },
)
async def backfill_task(request: web.Request) -> web.Response:
    start, end = backfill_range(await read_json(request))
    answer = await occurrences.backfill(request.app[TASKS], request.match_info["id"], start, end)
    task = answer.pop("task", None)
    if task is not None:
        request.app[SCHEDULER].observe(task)
    return web.json_response(answer)
