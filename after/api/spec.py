"""The OpenAPI 3.1 description, generated from the route table (:data:`after.api.routes.ROUTES`).

Schemas for request bodies are written out here by hand from :mod:`after.model` (the
validation code is the authority; a test posts the spec's examples and checks both
agree). A readable HTML page (``/docs``) is rendered from the same document.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Iterable
from typing import Any

from after import __version__, model

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
}
DATE = {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "ISO 8601 (Z or offset; bare date = midnight UTC) or epoch seconds"}
JOB = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "arguments": {"type": "array"}, "kwargs": {"type": "object"}},
        },
    ]
}
TASK_INPUT = {
    "type": "object",
    "required": ["worker", "job"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "_id": {"type": "string"},
        "worker": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"},
        "date": DATE,
        "job": JOB,
        "cron": {"type": ["string", "null"]},
        "timezone": {"type": ["string", "null"]},
        "priority": {"type": "integer"},
        "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "expires": {"oneOf": [DATE, {"type": "null"}]},
        "retry": {
            "oneOf": [
                {"type": "null"},
                {"type": "integer", "minimum": 0},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "max": {"type": "integer", "minimum": 0},
                        "backoff": {"enum": ["fixed", "exponential"]},
                        "delay": {"type": "number", "minimum": 0},
                        "max_delay": {"type": "number", "minimum": 0},
                    },
                },
            ]
        },
        "misfire": {
            "oneOf": [
                {"type": "null"},
                {"enum": ["run", "skip", "coalesce"]},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"policy": {"enum": ["run", "skip", "coalesce"]}, "grace": {"type": ["number", "null"], "minimum": 0}},
                },
            ]
        },
        "retention": {"type": ["number", "null"], "minimum": 0},
        "overlap": {"enum": ["wait", "skip", None]},
    },
    "example": {"worker": "mailer", "date": "2030-01-01T10:00:00Z", "job": {"name": "shell", "arguments": ["echo hi"]}},
}
TASK = {
    "type": "object",
    "required": ["_id", "_rev", "type", "worker", "date", "job", "status"],
    "properties": {
        "_id": {"type": "string"},
        "_rev": {"type": "string"},
        "type": {"const": "task"},
        "worker": {"type": "string"},
        "date": {"type": "string"},
        "job": {"type": "object"},
        "status": {"enum": list(model.STATUSES)},
        "attempts": {"type": "integer"},
        "result": {},
        "error": {"type": ["object", "null"]},
        "history": {"type": "array", "items": {"type": "object"}},
        "next_runs": {"type": "array", "items": {"type": "string"}},
        "notice": {"type": "string"},
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
        "concurrency": {"type": "integer"},
        "jobs_modules": {"type": "array", "items": {"type": "string"}},
        "jobs": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": ERROR,
    "TaskInput": TASK_INPUT,
    "TaskInputOrList": {
        "oneOf": [{"$ref": "#/components/schemas/TaskInput"}, {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/TaskInput"}}]
    },
    "Task": TASK,
    "TaskList": {
        "type": "object",
        "required": ["tasks", "next"],
        "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}, "next": {"type": ["string", "null"]}},
    },
    "Created": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "rev": {"type": "string"},
            "task": {"$ref": "#/components/schemas/Task"},
            "ids": {"type": "array", "items": {"type": "string"}},
            "tasks": {"type": "array"},
        },
    },
    "History": {"type": "object", "required": ["history"], "properties": {"id": {"type": "string"}, "history": {"type": "array", "items": {"type": "object"}}}},
    "Reschedule": {"type": "object", "required": ["date"], "properties": {"date": DATE}},
    "Deleted": {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}}},
    "Worker": WORKER,
    "WorkerList": {"type": "object", "required": ["workers"], "properties": {"workers": {"type": "array", "items": {"$ref": "#/components/schemas/Worker"}}}},
    "WorkerStart": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "concurrency": {"type": "integer", "minimum": 1, "maximum": 1000},
            "jobs": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        },
    },
    "Info": {
        "type": "object",
        "required": ["name", "version", "uptime", "couchdb"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "uptime": {"type": "number"},
            "daemon": {"type": "string"},
            "couchdb": {"type": "object"},
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

_UNAUTH = {"description": "Missing or wrong bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def build(routes: Iterable[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "tags": [r.tag], "operationId": r.handler.__name__, "responses": dict(r.responses)}
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in re.findall(r"{(\w+)}", r.path)]
        params += list(r.query)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r.body}}}
        if r.write:
            op["security"] = [{"bearer": []}]
            op["responses"].setdefault("401", _UNAUTH)
            op["responses"].setdefault(
                "400", {"description": "Invalid input", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            )
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "After", "version": __version__, "description": "A RESTful task scheduler with named workers over CouchDB."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def html(spec: dict[str, Any]) -> str:
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            lock = " 🔒" if op.get("security") else ""
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{htmlmod.escape(path)}</code>{lock}</td>"
                f"<td>{htmlmod.escape(op['summary'])}</td><td>{htmlmod.escape(params)}</td></tr>"
            )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>After API</title>"
        "<style>body{font:15px system-ui;margin:2em}td{padding:.3em .8em;border-bottom:1px solid #ddd}</style>"
        f"<h1>After API {htmlmod.escape(spec['info']['version'])}</h1>"
        "<p>Writes (🔒) need <code>Authorization: Bearer &lt;token&gt;</code> (<code>after token</code>). "
        "The machine-readable spec is <a href=/openapi.json>/openapi.json</a>.</p>"
        "<table><tr><th>Method</th><th>Path</th><th>Does</th><th>Parameters</th></tr>" + "".join(rows) + "</table></html>"
    )
