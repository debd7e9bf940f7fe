"""Pause and resume routes: of one task (``/tasks/{id}/pause``) and of a worker name on
every daemon of the database (``/workers/{name}/pause``). The decisions are
:mod:`after.pauses`', the store's side :mod:`after.pausing`'.

Who paused (``by``) is ``cli`` for the ``after`` command (it sends a ``User-Agent`` of
``after-cli/<version>``) and ``api`` for any other REST client: only the admin token may
write, so the token says nothing more.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from after import pauses
from after.api import SCHEDULER, TASKS
from after.api.middleware import read_json
from after.api.routes import IF_MATCH, _annotate, if_match, json_resp, ref, route, worker_name
from after.errors import InvalidInput

#: The ``User-Agent`` prefix of the ``after`` command (:mod:`after.cli_api`).
CLI_AGENT = "after-cli/"


def who(request: web.Request) -> str:
    return "cli" if request.headers.get("User-Agent", "").startswith(CLI_AGENT) else "api"


async def _note(request: web.Request) -> str | None:
    """The note of an optional ``{"note": ...}`` body; a JSON ``null`` body is no object."""
    body = await read_json(request, required=False)
    if body is None and request.body_exists and (await request.read()).strip():
        raise InvalidInput('body: expected an object {"note": ...} or no body', field="body")
    return pauses.note_of(body)


def _worker_answer(name: str, doc: dict[str, Any] | None) -> web.Response:
    return web.json_response({"name": name, "paused": pauses.shown(doc) if doc is not None else None})


@route(
    "POST",
    "/tasks/{id}/pause",
    "Pause a task: it does not start until resumed (a run under way finishes); body optional",
    body=ref("PauseRequest"),
    body_required=False,
    headers=[IF_MATCH],
    responses={"200": json_resp(ref("Task")), "409": json_resp(ref("Error"), "Finished, or a stale If-Match revision")},
)
async def pause_task(request: web.Request) -> web.Response:
    note = await _note(request)
    doc = await request.app[TASKS].pause(request.match_info["id"], note=note, by=who(request), rev=if_match(request))
    request.app[SCHEDULER].observe(doc)
    return web.json_response(_annotate(request, doc))


@route(
    "POST",
    "/tasks/{id}/resume",
    "Resume a paused task (overdue, it follows its misfire policy); not paused: unchanged",
    headers=[IF_MATCH],
    responses={"200": json_resp(ref("Task")), "409": json_resp(ref("Error"), "A stale If-Match revision")},
)
async def resume_task(request: web.Request) -> web.Response:
    doc = await request.app[TASKS].resume(request.match_info["id"], by=who(request), rev=if_match(request))
    request.app[SCHEDULER].observe(doc)
    return web.json_response(_annotate(request, doc))


@route(
    "POST",
    "/workers/{name}/pause",
    "Pause a worker name on every daemon of this database: no new task of it starts (running ones finish); body optional",
    tag="workers",
    body=ref("PauseRequest"),
    body_required=False,
    responses={"200": json_resp(ref("WorkerPause"))},
)
async def pause_worker(request: web.Request) -> web.Response:
    name = worker_name(request)
    note = await _note(request)
    doc = await request.app[TASKS].pause_worker(name, note=note, by=who(request))
    request.app[SCHEDULER].pause_seen(doc)  # here at once; the other daemons by their feed
    return _worker_answer(name, doc)


@route(
    "POST",
    "/workers/{name}/resume",
    "Resume a worker name on every daemon: its due tasks start, oldest due first (misfire policy applies)",
    tag="workers",
    responses={"200": json_resp(ref("WorkerPause"))},
)
async def resume_worker(request: web.Request) -> web.Response:
    name = worker_name(request)
    await request.app[TASKS].resume_worker(name)
    request.app[SCHEDULER].pause_seen({"_id": pauses.doc_id(name), "_deleted": True})
    return _worker_answer(name, None)


@route(
    "GET",
    "/workers/{name}/pause",
    "Whether a worker name is paused on this database (paused: who, when, why; null: not paused)",
    tag="workers",
    responses={"200": json_resp(ref("WorkerPause"))},
)
async def worker_pause(request: web.Request) -> web.Response:
    name = worker_name(request)
    return _worker_answer(name, await request.app[TASKS].worker_pause(name))
