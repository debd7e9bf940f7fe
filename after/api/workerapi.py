"""The remote worker protocol's routes (docs/worker-protocol.md): ``POST
/workers/{name}/connect``, ``poll``, ``disconnect``, and for one task ``tasks/{id}/accept``,
``heartbeat``, ``finish`` (with batch forms ``accept`` and ``finish``). Each is a
``worker=True`` route: a worker token may call these, for its own worker only.

The handlers only translate: bodies are checked by :mod:`after.wireschema`, the work is
:class:`after.remotes.RemoteWorkers`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from after.api import REMOTES
from after.api.middleware import read_json
from after.api.routes import json_resp, ref, route, worker_name
from after.errors import AfterError
from after.remote import heartbeat_interval
from after.remotes import RemoteWorkers
from after.service import task_id
from after.wireschema import Accept, AcceptMany, Connect, Finish, FinishMany, Heartbeat, Poll, SessionCall, parse

CONFLICT = {"409": json_resp(ref("Error"), "Stale lease: the task is no longer this worker's; drop it")}
GONE = {"404": json_resp(ref("Error"), "Unknown or expired session (session_gone): connect again")}
OK_OBJECT = json_resp({"type": "object"})


def _remotes(request: web.Request) -> RemoteWorkers:
    return request.app[REMOTES]


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


@route(
    "POST",
    "/workers/{name}/connect",
    "Remote worker: announce itself (name, concurrency, host); answers a session",
    tag="remote workers",
    store=False,
    worker=True,
    body=ref("Connect"),
    body_required=False,
    responses={
        "201": json_resp({"type": "object", "required": ["session", "heartbeat", "timeout"]}),
        "409": json_resp(ref("Error"), "The name runs locally here"),
    },
)
async def connect(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: Connect = parse(Connect, await read_json(request, required=False))
    remotes = _remotes(request)
    address = _peer(request)
    session = remotes.connect(
        name, host=body.host or address, address=address, concurrency=body.concurrency, jobs=list(body.jobs or []), pid=body.pid, client=body.client
    )
    return web.json_response(
        {"session": session.id, "worker": name, "heartbeat": heartbeat_interval(remotes.timeout), "timeout": remotes.timeout}, status=201
    )


@route(
    "POST",
    "/workers/{name}/poll",
    "Remote worker: the tasks due for it, under a lease (long poll up to `wait` seconds)",
    tag="remote workers",
    store=False,
    worker=True,
    body=ref("Poll"),
    responses={"200": OK_OBJECT, **GONE},
)
async def poll(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: Poll = parse(Poll, await read_json(request))
    remotes = _remotes(request)
    session = remotes.session(name, body.session)
    return web.json_response(await remotes.poll(session, wait=body.wait, limit=body.max))


@route(
    "POST",
    "/workers/{name}/disconnect",
    "Remote worker: end its session (tasks not accepted go back to waiting)",
    tag="remote workers",
    store=False,
    worker=True,
    body=ref("SessionCall"),
    responses={"200": OK_OBJECT, **GONE},
)
async def disconnect(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: SessionCall = parse(SessionCall, await read_json(request))
    remotes = _remotes(request)
    return web.json_response(await remotes.disconnect(remotes.session(name, body.session)))


@route(
    "POST",
    "/workers/{name}/tasks/{id}/accept",
    "Remote worker: accept a delivered task (After writes `scheduled`); start it only after this answer",
    tag="remote workers",
    worker=True,
    body=ref("Accept"),
    responses={"200": OK_OBJECT, **CONFLICT},
)
async def accept(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: Accept = parse(Accept, await read_json(request))
    return web.json_response(await _remotes(request).accept(name, task_id(request.match_info["id"]), body.lease))


@route(
    "POST",
    "/workers/{name}/tasks/{id}/heartbeat",
    "Remote worker: still running, with progress and log lines; answers whether a cancel was asked",
    tag="remote workers",
    store=False,
    worker=True,
    body=ref("Heartbeat"),
    responses={"200": json_resp({"type": "object", "required": ["cancel"], "properties": {"cancel": {"type": "boolean"}}}), **CONFLICT},
)
async def heartbeat(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: Heartbeat = parse(Heartbeat, await read_json(request))
    return web.json_response(_remotes(request).heartbeat(name, task_id(request.match_info["id"]), body.lease, body.model_dump()))


@route(
    "POST",
    "/workers/{name}/tasks/{id}/finish",
    "Remote worker: the outcome (done + result, failed + error, discarded, canceled); answers once written",
    tag="remote workers",
    worker=True,
    body=ref("Finish"),
    responses={"200": OK_OBJECT, "202": json_resp({"type": "object"}, "Recorded; still being written"), **CONFLICT},
)
async def finish(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: Finish = parse(Finish, await read_json(request))
    status, answer = await _remotes(request).finish(name, task_id(request.match_info["id"]), body.lease, body.model_dump())
    return web.json_response(answer, status=status)


async def _each(items: list[Any], one: Callable[[str, Any], Awaitable[dict[str, Any]]]) -> web.Response:
    """A batch call: ``one`` per item, concurrently (their writes share bulk requests);
    one result per item, in order, an error costing only its own item."""

    async def guarded(item: Any) -> dict[str, Any]:
        tid = task_id(item.id)
        try:
            return {"ok": True, **await one(tid, item)}
        except AfterError as exc:
            return {"id": tid, "ok": False, "error": exc.code, "message": exc.message}

    return web.json_response({"results": await asyncio.gather(*(guarded(i) for i in items))})


@route(
    "POST",
    "/workers/{name}/accept",
    "Remote worker: accept many delivered tasks; one result per task, in order",
    tag="remote workers",
    worker=True,
    body=ref("AcceptMany"),
    responses={"200": OK_OBJECT},
)
async def accept_many(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: AcceptMany = parse(AcceptMany, await read_json(request))
    remotes = _remotes(request)

    async def one(tid: str, item: Any) -> dict[str, Any]:
        return await remotes.accept(name, tid, item.lease)

    return await _each(body.tasks, one)


@route(
    "POST",
    "/workers/{name}/finish",
    "Remote worker: finish many tasks; one result per task, in order, once written",
    tag="remote workers",
    worker=True,
    body=ref("FinishMany"),
    responses={"200": OK_OBJECT},
)
async def finish_many(request: web.Request) -> web.Response:
    name = worker_name(request)
    body: FinishMany = parse(FinishMany, await read_json(request))
    remotes = _remotes(request)

    async def one(tid: str, item: Any) -> dict[str, Any]:
        status, answer = await remotes.finish(name, tid, item.lease, item.model_dump())
        return {"written": status == 200, **answer}

    return await _each(body.tasks, one)
