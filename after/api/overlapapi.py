"""``POST /tasks/{id}/backfill``: run a cron task's occurrences of a past (or any) range.

The occurrences (:func:`after.overlap.occurrences_between`, at most 1,000) are added to the
task's ``backfill`` list, so a daemon that restarts goes on with them; the scheduler
runs them as child documents, oldest first, under the task's overlap policy
(:mod:`after.occurrences`). The task's own schedule goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from after import model, overlap, timing
from after.api import SCHEDULER, TASKS
from after.api.middleware import read_json
from after.api.routes import json_resp, ref, route
from after.errors import Conflict, InvalidInput, Uncertain
from after.service import Tasks

#: Writes of the task retried on a conflict (its scheduler or worker writing it meanwhile).
TRIES = 8


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


async def backfill(tasks: Tasks, raw_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Add the occurrences of [start, end] to the task's pending backfill; the answer's body."""
    for attempt in range(TRIES):
        doc = await tasks.get(raw_id)
        if not doc.get("cron"):
            raise Conflict(f"task {doc['_id']!r} is a one-shot task (no cron): it has no occurrences to backfill")
        if overlap.parent_of(doc):
            raise Conflict(f"task {doc['_id']!r} runs one occurrence of {doc['parent']!r}: backfill that task")
        if doc.get("status") in model.TERMINAL or doc.get("status") == model.CANCEL:
            raise Conflict(f"task {doc['_id']!r} is {doc.get('status')}: reschedule it before a backfill")
        found = overlap.occurrences_between(doc, start, end)
        answer = {"id": doc["_id"], "count": len(found), "occurrences": [timing.fmt(d) for d in found], "pending": len(overlap.pending(doc))}
        if not found:
            return answer
        new = dict(doc)
        new["backfill"] = overlap.merge_backfill(doc, found)
        now = datetime.now(UTC)
        model.add_history(
            new, str(doc.get("status")), tasks.by, now, limit=tasks.settings.scheduler_history_limit, reason=f"backfill of {len(found)} occurrence(s)"
        )
        new["updated"] = timing.fmt(now)
        res = (await tasks.store.write_many([new]))[new["_id"]]
        if isinstance(res, Conflict):
            await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
            continue
        if isinstance(res, Uncertain):
            res = res.doc
        if not isinstance(res, dict):
            raise res
        answer["pending"] = len(new["backfill"])
        answer["task"] = res
        return answer
    raise Conflict(f"task {raw_id!r} keeps changing; try again")


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
    answer = await backfill(request.app[TASKS], request.match_info["id"], start, end)
    task = answer.pop("task", None)
    if task is not None:
        request.app[SCHEDULER].observe(task)
    return web.json_response(answer)
