"""Route handlers. Each is registered with :func:`route`, which also records its OpenAPI
description, so ``/openapi.json`` is generated from the same table the router uses
(and a test checks they agree)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from after import __version__, calendar, logfiles, model, pauses, schema, timing
from after.api import EVENTS, EXTRA, REMOTES, SCHEDULER, SETTINGS, STARTED, STORE, SUPERVISOR, TASKS, UI_DIR, events
from after.api.middleware import ROUTE_RULES, read_json
from after.errors import AfterError, InvalidInput, NotFound, StoreUnavailable
from after.registry import merge_workers
from after.schema import valid_name
from after.service import task_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    write: bool
    body: dict[str, Any] | None = None
    query: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    responses: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tag: str = "tasks"
    #: Header parameters the handler reads (documented like query parameters).
    headers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: The handler reads or writes CouchDB, so it can answer 503 when the store is down.
    store: bool = True
    #: Schemas of path parameters (default: any string).
    path_params: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: False when the body may be left out (POST /workers/{name}).
    body_required: bool = True
    #: A call of the remote worker protocol (after.api.workerapi): the only routes a worker
    #: token may call, and only for the worker its token names (the path's ``{name}``).
    worker: bool = False
    #: Only the admin token may call it, reads too (``/tokens``): not a read token, and not
    #: anonymous readers when reads are open.
    admin: bool = False


ROUTES: list[RouteSpec] = []


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_resp(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def route(
    method: str,
    path: str,
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    query: list[dict[str, Any]] | None = None,
    headers: list[dict[str, Any]] | None = None,
    responses: dict[str, dict[str, Any]] | None = None,
    tag: str = "tasks",
    store: bool = True,
    body_required: bool = True,
    worker: bool = False,
    admin: bool = False,
) -> Callable[[Handler], Handler]:
    """Register a handler and its OpenAPI description in one place: the router and the spec
    are built from the same :data:`ROUTES`, so they cannot name different routes."""

    def decorate(handler: Handler) -> Handler:
        path_params = {"name": WORKER_NAME} if "{name}" in path else {}
        ROUTES.append(
            RouteSpec(
                method,
                path,
                handler,
                summary,
                write=method not in ("GET", "HEAD"),
                body=body,
                query=query or [],
                responses=responses or {},
                tag=tag,
                headers=headers or [],
                store=store,
                path_params=path_params,
                body_required=body_required,
                worker=worker,
                admin=admin,
            )
        )
        return handler

    return decorate


#: A worker's name, as a path parameter (the same rule as a task's ``worker``).
WORKER_NAME = {"type": "string", "pattern": schema.NAME_PATTERN}


def qparam(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or {"type": "string"}}


def hparam(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": {"type": "string"}}


IF_MATCH = hparam("If-Match", "act only if the task is still at this revision (its `_rev`, or the ETag of GET /tasks/{id}); 409 otherwise")


def if_match(request: web.Request) -> str | None:
    """The revision a client says it acted on (``If-Match``), or None for "whatever is current"."""
    raw = request.headers.get("If-Match", "").strip()
    if not raw or raw == "*":
        return None
    raw = raw.removeprefix("W/").strip('"')
    return raw or None


def worker_name(request: web.Request) -> str:
    """The ``{name}`` of a worker route, checked: it becomes a file name (its log)."""
    name = request.match_info["name"]
    if not valid_name(name):
        raise InvalidInput(f"name: invalid worker name {name!r} (letters, digits, _ . @ -; at most 64)", field="name")
    return name


def jobs_of(request: web.Request) -> Callable[[str], list[str] | None]:
    """The jobs each worker running on this daemon declared in its hello (None: not known here)."""
    sup = request.app[SUPERVISOR]

    def lookup(worker: str) -> list[str] | None:
        wp = sup.workers.get(worker)
        if wp is None or not wp.running:
            return None
        return wp.known_jobs

    return lookup


def _int_query(request: web.Request, name: str, default: int) -> int:
    """A declared integer parameter (:func:`check_query` held it to its schema), or ``default``."""
    raw = request.query.get(name)
    return default if raw is None else int(raw)


def _float_query(request: web.Request, name: str) -> float | None:
    """A declared number parameter (:func:`check_query` held it to its schema), or None."""
    raw = request.query.get(name)
    return None if raw is None else float(raw)


# -- daemon ---------------------------------------------------------------------------------------


@route("GET", "/", "Name, version, uptime and CouchDB reachability", tag="daemon", store=False, responses={"200": json_resp(ref("Info"))})
async def info(request: web.Request) -> web.Response:
    app = request.app
    store = app[STORE]
    reachable = True
    try:
        await store.ping()
    except AfterError:
        reachable = False
    return web.json_response(
        {
            "name": "after",
            "version": __version__,
            "uptime": round(time.time() - app[STARTED], 3),
            "daemon": app[SCHEDULER].daemon_id,
            "couchdb": {"reachable": reachable, "database": store.name, "embedded": app[SETTINGS].embedded},
        }
    )


@route(
    "GET",
    "/health",
    "Liveness plus store, tick and worker checks; 503 with reasons",
    tag="daemon",
    store=False,
    responses={"200": json_resp(ref("Health")), "503": json_resp(ref("Health"), "Unhealthy")},
)
async def health(request: web.Request) -> web.Response:
    app = request.app
    reasons: list[str] = []
    try:
        await app[STORE].ping()
    except AfterError as exc:
        reasons.append(f"store unreachable: {exc.message}")
    if app[SCHEDULER].stalled():
        reasons.append(f"tick stalled: last tick {time.time() - app[SCHEDULER].last_tick:.0f}s ago")
    # A background loop that fails (shut out by _security, the design document missing, ...)
    # retries by itself; until it works again the daemon is not healthy.
    reasons += app[SCHEDULER].loops.reasons()
    reasons += app[SUPERVISOR].loop_reasons()
    crashing = app[SUPERVISOR].crashlooping()
    for name in crashing:
        reasons.append(f"worker {name} is crash-looping")
    # A worker that should run and does not (dead, in a restart backoff) is unhealthy until it is back.
    for name, why in app[SUPERVISOR].down():
        if name not in crashing:
            reasons.append(f"worker {name} is down: {why}")
    body = {"status": "ok" if not reasons else "unhealthy", "reasons": reasons}
    return web.json_response(body, status=200 if not reasons else 503)


# -- tasks ------------------------------------------------------------------------------------------


def _annotate(request: web.Request, doc: dict[str, Any]) -> dict[str, Any]:
    """Add computed fields: the next cron runs, and a notice when no worker of that name runs."""
    out = dict(doc)
    if doc.get("cron") and doc.get("status") not in model.TERMINAL:
        try:
            base = (calendar.nominal_of(doc) or timing.parse_date(doc.get("date"))) - timedelta(microseconds=1)
            runs = calendar.upcoming(doc, base, 5)
            out["next_runs"] = [timing.fmt(p.date) for p in runs]
            out["next_occurrences"] = [timing.fmt(p.occurrence) for p in runs]
        except AfterError:
            pass
    worker = doc.get("worker")
    if doc.get("status") in model.PENDING and isinstance(worker, str) and not request.app[SUPERVISOR].knows(worker):
        out["notice"] = f"no worker named {worker!r} is running on this daemon; the task waits until one starts"
    return out


@route(
    "POST",
    "/tasks",
    "Create one task (object) or many (array); nothing is stored if one is invalid",
    body=ref("TaskInputOrList"),
    responses={"201": json_resp(ref("Created"), "Created"), "409": json_resp(ref("Error"), "A task with that id exists"), "422": json_resp(ref("Error"))},
)
async def create_tasks(request: web.Request) -> web.Response:
    body = await read_json(request)
    many = isinstance(body, list)
    bodies = body if many else [body]
    if many and not bodies:
        raise InvalidInput("body: an empty list creates nothing", field="body")
    if len(bodies) > 10_000:
        raise InvalidInput("body: at most 10000 tasks per request", field="body")
    docs = await request.app[TASKS].create(bodies, jobs_of=jobs_of(request))
    for doc in docs:
        request.app[SCHEDULER].observe(doc)  # due now: fires this second, not after the feed catches up
    if many:
        return web.json_response({"ids": [d["_id"] for d in docs], "tasks": [{"id": d["_id"], "rev": d["_rev"]} for d in docs]}, status=201)
    doc = docs[0]
    return web.json_response({"id": doc["_id"], "rev": doc["_rev"], "task": _annotate(request, doc)}, status=201)


@route(
    "GET",
    "/tasks",
    "List tasks by due date (then id); filters, and stable paging with a cursor",
    query=[
        qparam("status", "only this status", {"type": "string", "enum": list(model.STATUSES)}),
        qparam("worker", "only this worker's tasks"),
        qparam("job", "only this job name"),
        qparam("from", "due at or after (ISO 8601 or epoch seconds)"),
        qparam("to", "due at or before (ISO 8601 or epoch seconds)"),
        qparam("limit", "page size (1..1000, default 50)", {"type": "integer", "minimum": 1, "maximum": 1000}),
        qparam("cursor", "the `next` of the previous page (with the same filters)"),
    ],
    responses={"200": json_resp(ref("TaskList"))},
)
async def list_tasks(request: web.Request) -> web.Response:
    q = request.query
    docs, nxt = await request.app[TASKS].list(
        status=q.get("status") or None,
        worker=q.get("worker") or None,
        job=q.get("job") or None,
        due_from=q.get("from") or None,
        due_to=q.get("to") or None,
        limit=_int_query(request, "limit", 50),
        cursor=q.get("cursor") or None,
    )
    return web.json_response({"tasks": docs, "next": nxt})


@route(
    "GET",
    "/tasks/{id}",
    "One task as stored (plus next_runs, waiting_on and notice); its ETag is its revision",
    responses={"200": {**json_resp(ref("Task")), "headers": {"ETag": {"description": "the task's revision", "schema": {"type": "string"}}}}},
)
async def get_task(request: web.Request) -> web.Response:
    doc = await request.app[TASKS].get(request.match_info["id"])
    out = _annotate(request, doc)
    if doc.get("after") and doc.get("status") in model.PENDING:
        out["waiting_on"] = await request.app[TASKS].waiting_on(doc)
    return web.json_response(out, headers={"ETag": f'"{doc["_rev"]}"'})


@route("GET", "/tasks/{id}/history", "A task's status transitions (bounded; the first is kept)", responses={"200": json_resp(ref("History"))})
async def task_history(request: web.Request) -> web.Response:
    doc = await request.app[TASKS].get(request.match_info["id"])
    return web.json_response({"id": doc["_id"], "history": list(doc.get("history") or [])})


@route(
    "POST",
    "/tasks/{id}/cancel",
    "Ask to cancel (status cancel; acknowledged canceled, a running job is stopped)",
    headers=[IF_MATCH],
    responses={"200": json_resp(ref("Task")), "409": json_resp(ref("Error"), "Already finished, or a stale If-Match revision")},
)
async def cancel_task(request: web.Request) -> web.Response:
    doc = await request.app[TASKS].cancel(request.match_info["id"], rev=if_match(request))
    request.app[SCHEDULER].observe(doc)
    return web.json_response(_annotate(request, doc))


@route(
    "POST",
    "/tasks/{id}/reschedule",
    "Run again at a new date (also reruns a finished task)",
    body=ref("Reschedule"),
    headers=[IF_MATCH],
    responses={"200": json_resp(ref("Task")), "409": json_resp(ref("Error"), "Running, or a stale If-Match revision")},
)
async def reschedule_task(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput('body: expected an object {"date": ...}', field="body")
    unknown = sorted(set(body) - {"date"})
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field", field=unknown[0])
    if "date" not in body:
        raise InvalidInput("date: required (the new due date)", field="date")
    doc = await request.app[TASKS].reschedule(request.match_info["id"], body["date"], rev=if_match(request))
    request.app[SCHEDULER].observe(doc)
    return web.json_response(_annotate(request, doc))


@route(
    "DELETE",
    "/tasks/{id}",
    "Remove a task (not while it runs)",
    headers=[IF_MATCH],
    responses={"200": json_resp(ref("Deleted")), "409": json_resp(ref("Error"), "Running, or a stale If-Match revision")},
)
async def delete_task(request: web.Request) -> web.Response:
    await request.app[TASKS].delete(request.match_info["id"], rev=if_match(request))
    return web.json_response({"deleted": task_id(request.match_info["id"])})


# -- workers ------------------------------------------------------------------------------------------


@route(
    "GET",
    "/workers",
    "The named workers of every daemon on this database (here=1: this daemon's only)",
    tag="workers",
    store=False,
    query=[qparam("here", "1 for this daemon's workers only", {"type": "string", "enum": ["0", "1", "true", "false"]})],
    responses={"200": json_resp(ref("WorkerList"))},
)
async def list_workers(request: web.Request) -> web.Response:
    here = request.query.get("here", "0")
    if here not in ("0", "1", "true", "false"):
        raise InvalidInput("here: expected 0 or 1", field="here")
    sched = request.app[SCHEDULER]
    elsewhere = [] if here in ("1", "true") or sched.registry is None else sched.registry.workers_elsewhere()
    ours = [*request.app[SUPERVISOR].list(), *request.app[REMOTES].list()]
    workers = merge_workers(ours, elsewhere, me=sched.daemon_id, host=socket.gethostname())
    return web.json_response({"workers": pauses.annotate(workers, sched.pauses)})


@route(
    "GET",
    "/daemons",
    "Every daemon that shares this database: live, stopped or gone, from their heartbeat documents",
    tag="daemon",
    store=False,
    responses={"200": json_resp(ref("DaemonList"))},
)
async def list_daemons(request: web.Request) -> web.Response:
    registry = request.app[SCHEDULER].registry
    return web.json_response({"daemons": registry.listing() if registry is not None else []})


@route("GET", "/workers/{name}", "One worker", tag="workers", store=False, responses={"200": json_resp(ref("Worker"))})
async def get_worker(request: web.Request) -> web.Response:
    name = worker_name(request)
    sup = request.app[SUPERVISOR]
    sessions = [w for w in request.app[REMOTES].list() if w["name"] == name]
    paused = request.app[SCHEDULER].pauses.paused(name)
    if name not in sup.workers and sessions:
        # Connected remotely only: its first session, and all of them.
        return web.json_response({**sessions[0], "sessions": sessions, "paused": paused})
    return web.json_response({**sup.get(name).info(), "paused": paused})


@route(
    "POST",
    "/workers/{name}",
    "Start a named worker process (body optional)",
    tag="workers",
    store=False,
    body=ref("WorkerStart"),
    body_required=False,
    responses={"201": json_resp(ref("Worker"), "Started"), "409": json_resp(ref("Error"), "Already running")},
)
async def start_worker(request: web.Request) -> web.Response:
    name = worker_name(request)
    body = schema.worker_start(await read_json(request, required=False))
    wp = await request.app[SUPERVISOR].start(name, concurrency=body.concurrency, jobs=body.modules())
    request.app[SCHEDULER].worker_available(name)
    return web.json_response(wp.info(), status=201)


@route(
    "DELETE",
    "/workers/{name}",
    "Stop a worker gracefully (query timeout: seconds to let jobs finish)",
    tag="workers",
    store=False,
    query=[qparam("timeout", "seconds running jobs get before they are interrupted (0..86400)", {"type": "number", "minimum": 0, "maximum": 86400})],
    responses={"200": json_resp(ref("Worker"))},
)
async def stop_worker(request: web.Request) -> web.Response:
    name = worker_name(request)
    timeout = _float_query(request, "timeout")
    wp = await request.app[SUPERVISOR].stop(name, timeout=timeout)
    return web.json_response(wp.info())


@route(
    "GET",
    "/workers/{name}/log",
    "The worker's log (text); follow=1 streams it",
    tag="workers",
    store=False,
    query=[
        qparam("lines", "how many last lines (default 200)", {"type": "integer", "minimum": 1, "maximum": 100000}),
        qparam("follow", "1 to keep streaming new lines", {"type": "string", "enum": ["0", "1", "true", "false"]}),
    ],
    responses={"200": {"description": "Log text", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def worker_log(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    name = worker_name(request)
    path = sup.log_path(name)
    if name not in sup.workers and not path.exists():
        raise NotFound(f"no worker named {name!r} and no log for it")
    lines = _int_query(request, "lines", 200)
    if request.query.get("follow") not in ("1", "true"):
        return web.Response(body=logfiles.tail(path, lines), content_type="text/plain", charset="utf-8")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    streams = request.app[STREAMS]
    me = asyncio.current_task()
    if me is not None:
        streams.add(me)
    try:
        async for chunk in logfiles.follow(path, start_lines=lines):
            await resp.write(chunk)
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away, or the daemon stops
    finally:
        if me is not None:
            streams.discard(me)
    return resp


@route(
    "DELETE",
    "/workers/{name}/log",
    "Truncate the worker's log (safe while it runs)",
    tag="workers",
    store=False,
    responses={"200": json_resp({"type": "object", "required": ["cleaned"], "properties": {"cleaned": {"type": "string"}}})},
)
async def clean_log(request: web.Request) -> web.Response:
    name = worker_name(request)
    request.app[SUPERVISOR].clean_log(name)
    return web.json_response({"cleaned": name})


# -- events, stats ----------------------------------------------------------------------------------


@route(
    "GET",
    "/events",
    "Server-sent events of task changes (resumable with Last-Event-ID)",
    tag="daemon",
    query=[
        qparam("worker", "only this worker's tasks"),
        qparam("task", "only this task (id, with or without `task:`)"),
        qparam("since", "replay from this event id (as Last-Event-ID, for clients that cannot send headers)"),
    ],
    headers=[hparam("Last-Event-ID", "the id of the last event received: what followed it is sent first")],
    responses={"200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def task_events(request: web.Request) -> web.StreamResponse:
    return await events.stream(request, request.app[EVENTS])


@route(
    "GET",
    "/stats",
    "Counts by status, fire lag and throughput of the last hour, the next 24 h (for the UI)",
    tag="daemon",
    responses={"200": json_resp(ref("Stats"))},
)
async def stats(request: web.Request) -> web.Response:
    app = request.app
    sched = app[SCHEDULER]
    try:
        counts = await app[STORE].count_by_status()
    except StoreUnavailable:
        counts = {}
    now = time.time()
    per_min: dict[int, list[float]] = {}
    for at, lag in sched.fire_lags:
        if at >= now - 3600:
            per_min.setdefault(int(at // 60 * 60), []).append(lag)
    lag_ms = [[m, round(sorted(v)[len(v) // 2] * 1000, 1)] for m, v in sorted(per_min.items())]
    throughput = [[m, len(v)] for m, v in sorted(per_min.items())]
    today = datetime.now(UTC)
    upcoming_docs, _ = await app[TASKS].list(due_from=timing.fmt(today), due_to=timing.fmt(today + timedelta(days=1)), limit=200)
    upcoming = [
        {"id": d["_id"], "date": d.get("date"), "worker": d.get("worker"), "job": (d.get("job") or {}).get("name"), "status": d.get("status")}
        for d in upcoming_docs
        if d.get("status") not in model.TERMINAL
    ]
    return web.json_response({"counts": counts, "lag_ms": lag_ms, "throughput": throughput, "upcoming": upcoming, "extra": app[EXTRA].get("stats", {})})


@route(
    "GET",
    "/metrics",
    "Prometheus metrics (text exposition format)",
    tag="daemon",
    store=False,
    responses={"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus(request: web.Request) -> web.Response:
    from after.api import metrics

    return await metrics.respond(request.app)


# -- spec, docs, ui -------------------------------------------------------------------------------


@route("GET", "/openapi.json", "This API's OpenAPI 3.1 description", tag="daemon", store=False, responses={"200": json_resp({"type": "object"})})
async def openapi(request: web.Request) -> web.Response:
    from after.api.spec import build

    return web.json_response(build(ROUTES))


@route(
    "GET",
    "/docs",
    "A readable page of the API, from /openapi.json",
    tag="daemon",
    store=False,
    responses={"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def docs(request: web.Request) -> web.Response:
    from after.api.spec import build, html

    return web.Response(text=html(build(ROUTES)), content_type="text/html")


async def ui_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def ui_index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(UI_DIR / "index.html")


#: Streaming handlers (log follow) to end when the daemon stops, so shutdown never waits on them.
STREAMS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("streams")


async def _end_streams(app: web.Application) -> None:
    app[EVENTS].close()
    streams = app[STREAMS]
    for t in list(streams):
        t.cancel()


def check_query(query: Mapping[str, str], params: list[dict[str, Any]]) -> None:
    """Hold a request's query parameters to the schemas the spec publishes for them: an
    ``enum`` value outside it (``status=``, ``follow=AAA``), a number that is not one or
    is out of range, is a 400 naming the parameter, never silently taken as "absent"."""
    for p in params:
        name, rule = p["name"], p.get("schema") or {}
        if p.get("in") != "query" or name not in query:
            continue
        raw = query[name]
        if "enum" in rule and raw not in rule["enum"]:
            raise InvalidInput(f"{name}: expected one of {', '.join(map(str, rule['enum']))}, got {raw!r}", field=name)
        kind = rule.get("type")
        if kind in ("integer", "number"):
            try:
                value = int(raw) if kind == "integer" else float(raw)
            except ValueError:
                raise InvalidInput(f"{name}: expected {'an integer' if kind == 'integer' else 'a number'}, got {raw!r}", field=name) from None
            lo, hi = rule.get("minimum"), rule.get("maximum")
            if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
                raise InvalidInput(f"{name}: expected {lo}..{hi}, got {raw!r}", field=name)


def checked(r: RouteSpec) -> Handler:
    """``r``'s handler, behind the check of its declared query parameters."""
    if not r.query:
        return r.handler

    @functools.wraps(r.handler)
    async def handler(request: web.Request) -> web.StreamResponse:
        check_query(request.query, r.query)
        return await r.handler(request)

    return handler


def install(app: web.Application) -> None:
    streams: set[asyncio.Task[Any]] = set()
    app[STREAMS] = streams
    app.on_shutdown.append(_end_streams)
    rules = app[ROUTE_RULES]
    for r in ROUTES:
        rules[app.router.add_route(r.method, r.path, checked(r))] = r
    if UI_DIR.exists():
        app.router.add_get("/ui", ui_redirect)
        app.router.add_get("/ui/", ui_index)
        app.router.add_static("/ui/", UI_DIR)


# The other route modules register into ROUTES when imported: imported here, so whoever
# reads ROUTES (the router, the spec, a test) sees every route, whatever it imported first.
from after.api import overlapapi, pauseapi, tokenapi, workerapi  # noqa: E402,F401
