"""The OpenAPI 3.1 description, generated from the route table (:data:`after.api.routes.ROUTES`).

Paths, methods, parameters and bodies come from the table the router is built from, so
a route cannot exist without its description. The error responses every operation can
give are added here by rule (401 unless public, 404 with a path parameter, 413/415 with
a body, 503 when it touches CouchDB), so they are never forgotten on a new route.
Schemas for request bodies come from :mod:`after.schema`, the models that validate
them (the schemathesis test sends what this spec allows and what it forbids, and checks
every answer against it). A readable HTML page (``/docs``) is rendered from
the same document.
"""

from __future__ import annotations

import html as htmlmod
import json
import re
from collections.abc import Iterable
from typing import Any

from after import __version__, model, overlap, pauses, schema, tokens, webhooks, wireschema
from after.api.middleware import is_public

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable code: invalid, unauthorized, not_found, method_not_allowed, conflict, too_large, ..."},
        "message": {"type": "string", "description": "what is wrong, for a person"},
        "field": {"type": "string", "description": "the field, parameter or header at fault (`[i].job.name` in a list)"},
    },
    "example": {"error": "invalid", "message": "date: cannot parse 'someday' as a date", "field": "date"},
}
DATE = schema.DATE_SCHEMA
HISTORY_ENTRY = {
    "type": "object",
    "required": ["status", "at", "by"],
    "properties": {"status": {"type": "string"}, "at": {"type": "string"}, "by": {"type": "string"}, "reason": {"type": "string"}},
}
TASK = {
    "type": "object",
    "description": "The task document as stored in CouchDB (see the README's schema), plus computed `next_runs`, `next_occurrences`, `waiting_on` and `notice`",
    "required": ["_id", "_rev", "type", "status"],
    "properties": {
        "_id": {"type": "string"},
        "_rev": {"type": "string"},
        "type": {"const": "task"},
        "worker": {"type": "string"},
        "date": DATE,
        "job": {"type": "object"},
        "status": {"enum": list(model.STATUSES)},
        "attempts": {"type": "integer"},
        "result": {},
        "error": {"type": ["object", "null"]},
        "history": {"type": "array", "items": HISTORY_ENTRY},
        "next_runs": {"type": "array", "items": {"type": "string"}, "description": "a cron task's next five run times (jitter applied)"},
        "next_occurrences": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the nominal cron occurrences of `next_runs` (before jitter; excluded days skipped)",
        },
        "waiting_on": {"type": "array", "items": {"type": "string"}, "description": "the dependencies (`after`) not done yet"},
        "notice": {"type": "string"},
        "deliveries": {"type": "array", "items": webhooks.DELIVERY_SCHEMA},
        "paused": pauses.PAUSED_SCHEMA,
    },
}
WORKER = {
    "type": "object",
    "required": ["name", "state", "running"],
    "properties": {
        "name": {"type": "string"},
        "state": {"enum": ["starting", "running", "backoff", "crashloop", "stopping", "stopped"]},
        "running": {"type": "boolean"},
        "pid": {"type": ["integer", "null"]},
        "uptime": {"type": ["number", "null"]},
        "tasks_run": {"type": "integer"},
        "running_tasks": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
        "restarts": {"type": "integer"},
        "job_processes": {"type": "integer", "description": "its warm job processes, idle or running a job (isolated jobs)"},
        "concurrency": {"type": "integer"},
        "jobs_modules": {"type": "array", "items": {"type": "string"}},
        "jobs": {"type": ["array", "null"], "items": {"type": "string"}, "description": "the jobs it declared (null until it said hello)"},
        "daemon": {"type": "string", "description": "the id of the daemon that runs it"},
        "host": {"type": ["string", "null"]},
        "here": {"type": "boolean", "description": "run by the daemon that answers"},
        "remote": {"type": "boolean", "description": "a remote worker's session (docs/worker-protocol.md), held by `daemon`"},
        "session": {"type": "string", "description": "remote: its session id"},
        "address": {"type": "string", "description": "remote: the address it calls from"},
        "client": {"type": ["string", "null"], "description": "remote: its library, as it said"},
        "connected": {"type": "string", "description": "remote: when its session began"},
        "last_heartbeat": {"type": "string", "description": "remote: its last call"},
        "live": {"type": "boolean", "description": "remote: it called within two heartbeat intervals"},
        "sessions": {"type": "array", "items": {"type": "object"}, "description": "remote: every session of this name here"},
        "paused": {**pauses.PAUSED_SCHEMA, "description": "its name's pause on this database (POST /workers/{name}/pause), or null"},
    },
}
DAEMON = {
    "type": "object",
    "required": ["id", "state"],
    "properties": {
        "id": {"type": "string", "description": "daemon:<host>:<pid>"},
        "state": {"enum": ["live", "stopped", "gone"], "description": "gone: no heartbeat for three periods"},
        "here": {"type": "boolean"},
        "host": {"type": "string"},
        "pid": {"type": "integer"},
        "version": {"type": "string"},
        "url": {"type": "string", "description": "its REST port"},
        "started": {"type": "string"},
        "beat": {"type": "string", "description": "its last heartbeat"},
        "tick": {"type": ["string", "null"], "description": "its scheduler's last tick, as of that heartbeat"},
        "until": {"type": "string", "description": "gone after this time without a new heartbeat"},
        "quorum": {"enum": ["ok", "lost"], "description": "lost: its writes reach fewer CouchDB replicas than the quorum"},
        "workers": {"type": "array", "items": {"type": "object"}},
    },
}
SCHEMAS: dict[str, Any] = {
    "Error": ERROR,
    # TaskInput, WorkerStart and what they use (Job, Retry, Misfire): from after.schema,
    # the models that validate what these routes receive.
    **schema.openapi_schemas(),
    # The remote worker protocol's bodies (after.wireschema).
    **wireschema.openapi_schemas(),
    # /tokens (after.tokens).
    **tokens.openapi_schemas(),
    # pause and resume (after.pauses).
    **pauses.openapi_schemas(),
    # POST /tasks/{id}/backfill (after.overlap).
    **overlap.openapi_schemas(),
    "TaskInputOrList": {
        "oneOf": [
            {"$ref": "#/components/schemas/TaskInput"},
            {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"$ref": "#/components/schemas/TaskInput"}},
        ]
    },
    "Task": TASK,
    "TaskList": {
        "type": "object",
        "required": ["tasks", "next"],
        "properties": {
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
            "next": {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last"},
        },
    },
    "Created": {
        "oneOf": [
            {
                "type": "object",
                "description": "one task was posted",
                "required": ["id", "rev", "task"],
                "properties": {"id": {"type": "string"}, "rev": {"type": "string"}, "task": {"$ref": "#/components/schemas/Task"}},
            },
            {
                "type": "object",
                "description": "a list was posted",
                "required": ["ids", "tasks"],
                "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}},
                    "tasks": {
                        "type": "array",
                        "items": {"type": "object", "required": ["id", "rev"], "properties": {"id": {"type": "string"}, "rev": {"type": "string"}}},
                    },
                },
            },
        ]
    },
    "History": {
        "type": "object",
        "required": ["id", "history"],
        "properties": {"id": {"type": "string"}, "history": {"type": "array", "items": HISTORY_ENTRY}},
    },
    "Reschedule": {"type": "object", "required": ["date"], "additionalProperties": False, "properties": {"date": DATE}},
    "Deleted": {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}}},
    "Worker": WORKER,
    "Daemon": DAEMON,
    "DaemonList": {"type": "object", "required": ["daemons"], "properties": {"daemons": {"type": "array", "items": {"$ref": "#/components/schemas/Daemon"}}}},
    "WorkerList": {"type": "object", "required": ["workers"], "properties": {"workers": {"type": "array", "items": {"$ref": "#/components/schemas/Worker"}}}},
    "Info": {
        "type": "object",
        "required": ["name", "version", "uptime", "couchdb"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "uptime": {"type": "number"},
            "daemon": {"type": "string"},
            "couchdb": {
                "type": "object",
                "required": ["reachable", "database"],
                "properties": {"reachable": {"type": "boolean"}, "database": {"type": "string"}, "embedded": {"type": "boolean"}},
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "reasons"],
        "properties": {"status": {"enum": ["ok", "unhealthy"]}, "reasons": {"type": "array", "items": {"type": "string"}}},
    },
    "Stats": {
        "type": "object",
        "required": ["counts"],
        "properties": {"counts": {"type": "object"}, "lag_ms": {"type": "array"}, "throughput": {"type": "array"}, "upcoming": {"type": "array"}},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def build(routes: Iterable[Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (``RouteSpec`` s)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        responses = dict(r.responses)
        op: dict[str, Any] = {"summary": r.summary, "tags": [r.tag], "operationId": r.handler.__name__, "responses": responses}
        if r.handler.__doc__:
            op["description"] = r.handler.__doc__.strip()
        path_names = re.findall(r"{(\w+)}", r.path)
        params = [{"name": p, "in": "path", "required": True, "schema": r.path_params.get(p, {"type": "string", "minLength": 1})} for p in path_names]
        params += list(r.query) + list(r.headers)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": r.body_required, "content": {"application/json": {"schema": r.body}}}
        if params or r.body is not None:
            responses.setdefault("400", _error("Invalid input: a malformed body, parameter or field (named in `field`)"))
        # The same rules the auth middleware applies (after.tokens.decide).
        if r.write or r.admin:
            op["security"] = [{"bearer": []}]
            responses.setdefault("401", _error("Missing, wrong or revoked bearer token"))
        elif not is_public(r.path):
            op["security"] = [{}, {"bearer": []}]
            responses.setdefault("401", _error("Missing (when server.protect_reads is set), wrong or revoked bearer token"))
        if not is_public(r.path):
            if r.admin:
                scope = "Needs the admin token"
            elif r.worker:
                scope = "A worker token of another worker, or a read-only token"
            elif r.write:
                scope = "A worker or read-only token (writes need the admin token)"
            else:
                scope = "A worker token (it may call only its worker's protocol routes)"
            responses.setdefault("403", _error(scope))
        if path_names:
            responses.setdefault("404", _error("No such task, worker or token"))
        if r.body is not None:
            responses.setdefault("413", _error("Body larger than server.max_body_bytes"))
            responses.setdefault("415", _error("Body is not JSON (Content-Type: application/json)"))
        if r.store:
            responses.setdefault("503", _error("CouchDB unreachable"))
        op["responses"] = dict(sorted(responses.items()))
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "After",
            "version": __version__,
            "description": (
                "A RESTful task scheduler with named workers over CouchDB. JSON in and out; every error is "
                '`{"error": code, "message": text, "field": name}`. Writes need `Authorization: Bearer <token>` '
                "(`after token` prints it); reads too when `server.protect_reads` is set. Scoped tokens (`/tokens`): a worker "
                "token may call only its worker's protocol routes, a read-only token only reads."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _schema_link(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{name}">{htmlmod.escape(name)}</a>'
    return f"<code>{htmlmod.escape(json.dumps(schema))}</code>"


def html(spec: dict[str, Any]) -> str:
    """A self-contained page (no scripts, nothing fetched): every operation, then every schema."""
    esc = htmlmod.escape
    toc: list[str] = []
    ops: list[str] = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            anchor = op["operationId"]
            lock = " 🔒" if op.get("security") == [{"bearer": []}] else ""
            toc.append(f'<li><a href="#{anchor}"><code>{method.upper()} {esc(path)}</code></a>{lock} — {esc(op["summary"])}</li>')
            rows = "".join(
                f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td><td>{_schema_link(p.get('schema'))}</td>"
                f"<td>{esc(p.get('description', ''))}</td></tr>"
                for p in op.get("parameters", [])
            )
            params = f"<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>{rows}</table>" if rows else ""
            body = ""
            if "requestBody" in op:
                content = op["requestBody"]["content"]["application/json"]
                optional = "" if op["requestBody"].get("required") else " (optional)"
                body = f"<p>Body{optional}: {_schema_link(content.get('schema'))}</p>"
            resp_rows = "".join(
                f"<tr><td><code>{esc(code)}</code></td><td>{esc(r.get('description', ''))}</td>"
                f"<td>{', '.join(esc(ct) + ' ' + _schema_link(c.get('schema')) for ct, c in r.get('content', {}).items())}</td></tr>"
                for code, r in op["responses"].items()
            )
            ops.append(
                f'<section id="{anchor}"><h3><code>{method.upper()} {esc(path)}</code>{lock}</h3><p>{esc(op["summary"])}</p>'
                f"{params}{body}<table><tr><th>status</th><th></th><th>body</th></tr>{resp_rows}</table></section>"
            )
    schemas = "".join(
        f'<section id="schema-{esc(name)}"><h3>{esc(name)}</h3><pre>{esc(json.dumps(schema, indent=2))}</pre></section>'
        for name, schema in spec["components"]["schemas"].items()
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>After API</title>"
        "<style>body{font:15px system-ui;margin:2em;max-width:70em}td,th{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left;"
        "vertical-align:top}section{margin:1.5em 0}pre{background:#f6f6f6;padding:.7em;overflow:auto}h3{margin-bottom:.3em}</style>"
        f"<h1>After API {esc(spec['info']['version'])}</h1>"
        "<p>Writes (🔒) need <code>Authorization: Bearer &lt;token&gt;</code> (<code>after token</code> prints it). "
        'Errors are <code>{"error", "message", "field"}</code>. '
        "The machine-readable spec is <a href=/openapi.json>/openapi.json</a>.</p>"
        f"<h2>Routes</h2><ul>{''.join(toc)}</ul>{''.join(ops)}<h2>Schemas</h2>{schemas}</html>"
    )
