"""The task's fields, defined once: what a REST body, a direct document and the spec accept.

Why one definition: the validation code, the OpenAPI schema and the README's field table
were three hand-kept copies, and they disagreed (a string ``job`` was valid input but
stopped a worker when written straight into CouchDB; the spec forbade ``"jobs": ""`` that
the code took). Here the fields are pydantic models (strict: no ``"5"`` for 5, no
``true`` for 1): :class:`TaskInput` checks REST bodies, :class:`StoredTask` checks
documents that arrived any other way (the same fields, plus what After itself writes),
:func:`openapi_schemas` is what ``/openapi.json`` publishes and :func:`field_table` is
the README's table (a test holds the README to it).

Every failure becomes one :class:`~after.errors.InvalidInput` (422
:class:`~after.errors.Unprocessable` for well-formed but impossible values: a cron that
never fires, an unknown zone) naming the field, e.g. ``retry.max`` or ``job.name``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from after import calendar, timing
from after.errors import InvalidInput, Unprocessable

# -- bounds -------------------------------------------------------------------------------------
# Where the code needs a bound (asyncio timers overflow past ~2**31 s on some platforms,
# datetime past year 9999), it is here, and so in the spec and the README.

#: A job's timeout: at most 30 days.
MAX_TIMEOUT = 30 * 86400.0
#: A retry delay, its cap and a misfire grace: at most 365 days.
MAX_DELAY = 365 * 86400.0
#: How long a finished task is kept: at most 10 years.
MAX_RETENTION = 10 * 365 * 86400.0
#: Retries of one task.
MAX_RETRIES = 1000
#: Priority range (higher first among tasks due in the same second).
MAX_PRIORITY = 1_000_000
#: ``jitter`` (seconds) and ``exclude`` (items): :mod:`after.calendar`'s bounds.
MAX_JITTER = calendar.MAX_JITTER
MAX_EXCLUDE = calendar.MAX_EXCLUDE
#: Tasks a worker runs at once.
MAX_CONCURRENCY = 1000

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
STATUSES = ("waiting", "schedule", "scheduled", "done", "err", "reschedule", "cancel", "canceled")

M = TypeVar("M", bound=BaseModel)

_NAME = re.compile(NAME_PATTERN)

DATE_FORMS = "ISO 8601 (Z or an offset; none = UTC; a bare date = midnight UTC) or epoch seconds"
DATE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$", "description": "no offset: UTC"},
        {"type": "number", "exclusiveMinimum": -62e9, "exclusiveMaximum": 253e9, "description": "epoch seconds"},
    ],
    "description": DATE_FORMS,
}


def _problem(exc: InvalidInput) -> PydanticCustomError:
    """A message of :mod:`after.timing` (``"date: cannot parse …"``) as a field error."""
    message = exc.message
    if exc.field and message.startswith(exc.field + ": "):
        message = message[len(exc.field) + 2 :]
    kind = "unprocessable" if isinstance(exc, Unprocessable) else "invalid"
    return PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"))


def _date(value: Any) -> str:
    try:
        return timing.fmt(timing.parse_date(value))
    except InvalidInput as exc:
        raise _problem(exc) from None


def _cron(value: str) -> str:
    try:
        return timing.check_cron(value)
    except InvalidInput as exc:
        raise _problem(exc) from None


def _keeps(check: Callable[[str], object]) -> Callable[[str], str]:
    """A validator that keeps the value when ``check`` accepts it, else a field error of its message."""

    def validate(value: str) -> str:
        try:
            check(value)
        except InvalidInput as exc:
            raise _problem(exc) from None
        return value

    return validate


_zone = _keeps(timing.zone)
#: One item of ``exclude``: a day or an inclusive range of days (:func:`after.calendar.parse_item`).
_exclude_item = _keeps(calendar.parse_item)


#: A date in any accepted form; validated to the one stored form (UTC, ms, ``Z``).
Date = Annotated[str | float, AfterValidator(_date), WithJsonSchema(DATE_SCHEMA)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


# Bounded numbers of seconds (finite: no NaN, no infinity).
Delay = Annotated[float, Field(ge=0, le=MAX_DELAY, allow_inf_nan=False)]
Timeout = Annotated[float, Field(ge=0.001, le=MAX_TIMEOUT, allow_inf_nan=False)]
Retention = Annotated[float, Field(ge=0, le=MAX_RETENTION, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


class Job(_Strict):
    """What runs: a registered job's name and its arguments."""

    name: Annotated[str, Field(min_length=1, max_length=200, description="the job's registered name")]
    arguments: Annotated[list[Any], Field(description="positional arguments")] = []
    kwargs: Annotated[dict[str, Any], Field(description="keyword arguments")] = {}


class Retry(_Strict):
    """Retries of a failed run (a timeout or crash counts as a failure)."""

    max: Annotated[int, Field(ge=0, le=MAX_RETRIES, description="retries after the first run")] = 0
    backoff: Literal["fixed", "exponential"] = "fixed"
    delay: Annotated[Delay, Field(description="seconds before a retry (the first, with exponential)")] = 10.0
    max_delay: Annotated[Delay | None, Field(description="cap of an exponential delay")] = None


class Misfire(_Strict):
    """What a task found overdue does (after downtime)."""

    policy: Literal["run", "skip", "coalesce"] = "run"
    grace: Annotated[Delay | None, Field(description="seconds late that still run (skip, coalesce)")] = None


class Lease(BaseModel):
    """Who holds a running task, until when (written by After only)."""

    model_config = ConfigDict(strict=True, extra="allow")
    id: str
    daemon: str
    until: Date


def _kind(tag_of: dict[type, str], default: str) -> Any:
    """A callable discriminator: only the branch that fits the JSON type is validated, so the
    error names the field that is wrong inside it (``job.name``), not every branch's miss."""

    def pick(value: Any) -> str:
        for kind, tag in tag_of.items():
            if isinstance(value, kind) and not isinstance(value, bool):
                return tag
        return default

    return Discriminator(pick)


#: Union branch tags: left out of a field's path in error messages.
_TAGS = {"short", "full", "count"}

JobField = Annotated[
    Annotated[str, Tag("short"), Field(min_length=1, max_length=200)] | Annotated[Job, Tag("full")],
    _kind({str: "short"}, "full"),
    Field(description='the job: its registered name, or {"name", "arguments", "kwargs"}'),
]
RetryField = Annotated[
    Annotated[Annotated[int, Tag("count"), Field(ge=0, le=MAX_RETRIES)] | Annotated[Retry, Tag("full")], _kind({int: "count"}, "full")] | None,
    Field(description="retries: a number (`3` = `{max: 3}`, fixed 10 s apart) or {max, backoff, delay, max_delay}"),
]
MisfireField = Annotated[
    Annotated[Annotated[Literal["run", "skip", "coalesce"], Tag("short")] | Annotated[Misfire, Tag("full")], _kind({str: "short"}, "full")] | None,
    Field(description="overdue after downtime: `run` (default), `skip` (past grace), `coalesce` (one run for many missed); or {policy, grace}"),
]


#: Webhooks one task may name, and the outcomes they may be for (after.webhooks).
MAX_HOOKS = 10
OUTCOMES = ("done", "err", "canceled")
URL_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"


class NotifyHook(_Strict):
    """A webhook: After POSTs the outcome, signed (see the README, Completion webhooks)."""

    url: Annotated[str, Field(min_length=8, max_length=2000, pattern=URL_PATTERN, description="http(s) URL the outcome is POSTed to")]
    on: Annotated[
        list[Literal["done", "err", "canceled"]],
        Field(min_length=1, max_length=3, description="the outcomes it is for (default: all three)"),
    ] = ["done", "err", "canceled"]


class Paused(_Strict):
    """A task's pause (``paused``): who paused it, when, why. Set by After's pause routes,
    or by a client (created paused; a document written straight into CouchDB)."""

    by: Annotated[str, Field(min_length=1, max_length=200, description="who paused it: `api`, `cli`, `python`, or a direct writer's own word")]
    at: Annotated[Date, Field(description="when it was paused")]
    note: Annotated[str | None, Field(max_length=1000, description="why")] = None


class TaskFields(_Strict):
    """The fields a client sets. Documented in this order in the README."""

    id: Annotated[
        str | None,
        Field(min_length=1, max_length=200, pattern="^[^_]", description="the task's id (`task:` is prefixed if missing); absent or null: a new one"),
    ] = None
    id_: Annotated[str | None, Field(alias="_id", min_length=1, max_length=200, pattern="^[^_]", description="the same as `id`")] = None
    worker: Annotated[Name, Field(description="the named worker that runs it (letters, digits, `_ . @ -`, at most 64)")]
    date: Annotated[Date | None, Field(description="when it is due; required unless `cron` is given (then: its next run)")] = None
    job: JobField
    cron: Annotated[
        Annotated[str, AfterValidator(_cron)] | None,
        Field(description="crontab(5) line, run as Debian's cron runs it (6 fields: seconds first); 422 if invalid or never fires", examples=["*/5 * * * *"]),
    ] = None
    timezone: Annotated[
        Annotated[str, AfterValidator(_zone)] | None,
        Field(description="IANA zone of the cron expression (default UTC); only with cron; 422 if unknown", examples=["Europe/Lisbon"]),
    ] = None
    priority: Annotated[int, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="higher first among tasks due in the same second")] = 0
    timeout: Annotated[Timeout | None, Field(description="seconds; the job is killed after it (default: `scheduler.default_timeout`)")] = None
    expires: Annotated[Date | None, Field(description="not started by then: ends `err` reason `expired`")] = None
    retry: RetryField = None
    misfire: MisfireField = None
    retention: Annotated[Retention | None, Field(description="seconds a finished task is kept (default: `scheduler.retention_days`)")] = None
    overlap: Annotated[
        Literal["wait", "skip", "replace", "allow"] | None,
        Field(
            description="a cron run due while the previous one runs: `wait` (default: after it), `skip`, `replace` "
            "(cancel the running one, recorded `replaced` in `runs`) or `allow` (each occurrence runs as a child "
            "`<id>@<epoch>`, at most 100 unfinished at once)"
        ),
    ] = None

    # -- schedule controls (issue 16): each control's client fields in its own block --
    # deps
    after: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200, pattern="^[^_]")]] | None,
        Field(
            max_length=100,
            description="ids of the tasks it waits for (`task:` prefixed if missing; at most 100): due only once every one is `done` "
            "(a cron task: has a `done` run) and its `date` has come; 422 naming unknown ids or a cycle",
            examples=[["task:extract", "task:download"]],
        ),
    ] = None
    after_failed: Annotated[
        Literal["err", "run"] | None,
        Field(description="a dependency ended `err` or `canceled`: `err` (default: this task ends `err`, reason `dependency`) or `run` (it runs anyway)"),
    ] = None

    # pause
    paused: Annotated[
        Paused | None,
        Field(description="`{by, at, note}`: paused, it does not start (a run under way finishes); null: not paused. See Pause and resume"),
    ] = None

    # notify
    notify: Annotated[
        list[NotifyHook] | None,
        Field(max_length=MAX_HOOKS, description="webhooks POSTed (signed) when the task (each run, for cron) ends: [{url, on}], at most 10"),
    ] = None

    # calendar (jitter, exclude)
    jitter: Annotated[
        Annotated[float, Field(gt=0, le=MAX_JITTER, allow_inf_nan=False)] | None,
        Field(
            description="seconds: each cron occurrence runs a delay in [0, jitter) after its time, "
            "the same on every daemon (from the task id and the occurrence); only with cron"
        ),
    ] = None
    exclude: Annotated[
        Annotated[list[Annotated[str, AfterValidator(_exclude_item)]], Field(max_length=MAX_EXCLUDE)] | None,
        Field(
            description="days (`YYYY-MM-DD`) or inclusive ranges (`YYYY-MM-DD/YYYY-MM-DD`) of the task's timezone "
            "with no cron occurrence (at most 1000); only with cron; 422 if none is left in 10 years",
            examples=[["2026-12-25", "2026-12-31/2027-01-01"]],
        ),
    ] = None

    # end of schedule controls


def _needs_a_date(fields: TaskFields) -> None:
    if fields.date is None and fields.cron is None:
        raise PydanticCustomError("missing_date", "required (ISO 8601, epoch seconds, or a cron expression)")
    if fields.timezone is not None and fields.cron is None:
        raise PydanticCustomError("unprocessable", "timezone: only meaningful with cron")
    _runs_in_zone(fields)
    _calendar_needs_cron(fields)
    _controls_fit(fields)


def _calendar_needs_cron(fields: TaskFields) -> None:
    """``jitter`` and ``exclude`` shape cron occurrences: a one-shot task has none."""
    for name in ("jitter", "exclude"):
        if getattr(fields, name) is not None and fields.cron is None:
            raise PydanticCustomError("unprocessable", f"{name}: only meaningful with cron")


#: Room an occurrence's child id takes after its parent's (``@`` and epoch seconds, e.g.
#: ``@2000000000``; after.overlap.child_id): an ``allow`` task's id must leave it.
CHILD_ID_ROOM = 12


def _controls_fit(fields: TaskFields) -> None:
    """Options that mean nothing alone are refused, not silently dropped: ``after_failed``
    without ``after``; an ``allow`` task whose id leaves no room for its children's ids."""
    if fields.after_failed is not None and not fields.after:
        raise PydanticCustomError("unprocessable", "after_failed: only meaningful with after (the tasks it waits for)")
    given = fields.id if fields.id is not None else fields.id_
    if fields.overlap == "allow" and given is not None:
        full = given if given.startswith("task:") else "task:" + given
        if len(full) + CHILD_ID_ROOM > 200:
            raise PydanticCustomError(
                "unprocessable", f"id: at most {200 - CHILD_ID_ROOM} characters with overlap `allow` (each occurrence runs as <id>@<epoch>)"
            )


def _runs_in_zone(fields: TaskFields) -> None:
    """``cron`` and ``timezone`` are valid alone; together they may never run (every
    match a time that does not exist in the zone, ``*/15 2 * 3 0#2`` in New York)."""
    if fields.timezone is not None and fields.cron is not None:
        try:
            timing.check_cron(fields.cron, tz=fields.timezone)
        except InvalidInput as exc:
            raise PydanticCustomError("unprocessable", exc.message.replace("{", "{{").replace("}", "}}")) from None


class TaskInput(TaskFields):
    """A task as a client posts it (``POST /tasks``): unknown fields are refused."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "anyOf": [{"required": ["date"]}, {"required": ["cron"], "properties": {"cron": {"type": "string"}}}],
            "example": {"worker": "mailer", "date": "2030-01-01T10:00:00Z", "job": {"name": "shell", "arguments": ["echo hi"]}},
        },
    )

    @model_validator(mode="after")
    def _check(self) -> TaskInput:
        _needs_a_date(self)
        return self


class HistoryEntry(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    status: str
    at: str
    by: str


class StoredTask(TaskFields):
    """A task document as stored (also one written straight into CouchDB): the client's
    fields, plus what After writes. Unknown fields are kept (a direct writer's own notes);
    a known field of the wrong shape makes the document invalid."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    type: Annotated[Literal["task"], Field(description='`"task"` (a document whose id starts with `task:` and lacks it is invalid)')]
    status: Annotated[Literal[STATUSES], Field(description="`waiting` for a new task; the rest is After's (see the status protocol)")]  # type: ignore[valid-type]
    attempts: Annotated[int, Field(ge=0)] = 0
    starts: Annotated[int, Field(ge=0)] = 0
    lease: Lease | None = None
    history: list[HistoryEntry] | None = None
    runs: list[Any] | None = None
    created: Date | None = None
    updated: Date | None = None

    # -- what After writes for the schedule controls (issue 16) --
    # deps
    dependencies: Annotated[
        dict[str, Any] | None,
        Field(description="its dependencies' outcomes when it was claimed ({id: {status, result, error}}): the job's `ctx.dependencies`; by After"),
    ] = None

    # pause

    # notify
    deliveries: Annotated[list[Any] | None, Field(description="the last webhook deliveries (written by After)")] = None

    # calendar / overlap (occurrence, resume)
    occurrence: Annotated[Date | None, Field(description="the cron occurrence (its nominal time, before jitter) that `date` stands for; written by After")] = (
        None
    )
    parent: Annotated[
        str | None, Field(min_length=1, max_length=200, description="the task whose occurrence this child runs (overlap `allow`, backfill); written by After")
    ] = None
    backfill: Annotated[
        list[Date] | None,
        Field(max_length=1000, description="occurrences still to run of a backfill (POST /tasks/{id}/backfill), oldest first; written by After"),
    ] = None
    backfilled: Annotated[bool | None, Field(description="a child that runs a backfilled occurrence; written by After")] = None
    replacing: Annotated[
        dict[str, Any] | None, Field(description="a replace under way (overlap `replace`): the occurrence that replaces the running one; written by After")
    ] = None

    # end of schedule controls

    @model_validator(mode="after")
    def _check(self) -> StoredTask:
        if self.date is None:
            raise PydanticCustomError("missing_date", "required (ISO 8601 or epoch seconds)")
        _runs_in_zone(self)
        _calendar_needs_cron(self)
        return self


class WorkerStart(_Strict):
    """``POST /workers/{name}``: start a worker."""

    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY, description="tasks run at once (default 4)")] = 4
    jobs: Annotated[
        Annotated[
            Annotated[str, Field(pattern=MODULE_PATTERN), Tag("short")] | Annotated[list[Annotated[str, Field(pattern=MODULE_PATTERN)]], Tag("full")],
            _kind({str: "short"}, "full"),
        ]
        | None,
        Field(description="Python modules registering jobs, imported by the worker (a name or a list)"),
    ] = None

    def modules(self) -> list[str]:
        if self.jobs is None:
            return []
        return [self.jobs] if isinstance(self.jobs, str) else list(self.jobs)


# -- errors ------------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _TAGS and not part.startswith(("function-", "literal[", "nullable[")):
            out += ("." if out else "") + part
    return out


_WORDS = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "missing_date": None,
}


def translate(exc: ValidationError, *, prefix: str = "") -> InvalidInput:
    """The first of pydantic's errors as one of ours, naming the field (``retry.max``)."""
    errors = exc.errors(include_url=False)
    # A missing date is reported for the model as a whole; it is the field ``date``.
    first = min(errors, key=lambda e: 0 if e["type"] in ("extra_forbidden",) else 1)
    field = _path(first["loc"])
    if first["type"] == "missing_date":
        field = field + ".date" if field else "date"
    message = _WORDS.get(first["type"], first["msg"]) or first["msg"]
    if first["type"] == "string_pattern_mismatch" and field.endswith("worker"):
        message = "invalid name (letters, digits, _ . @ -; at most 64)"
    for name in ("timezone", "cron", "jitter", "exclude", "after_failed", "id"):
        if first["type"] == "unprocessable" and message.startswith(name + ": "):
            field, message = (f"{field}.{name}" if field else name), message[len(name) + 2 :]
    if first["type"] not in ("missing", "extra_forbidden", "missing_date", "invalid", "unprocessable"):
        message = message[0].lower() + message[1:] if message else message
        given = first.get("input")
        if not isinstance(given, dict | list):
            message += f", got {given!r:.80}"
    full = prefix + field if field else prefix.rstrip(".")
    cls = Unprocessable if first["type"] == "unprocessable" else InvalidInput
    return cls(f"{full}: {message}" if full else message, field=full or None)


def _validate(model: type[M], data: Any, *, not_object: str, field: str | None = None) -> M:
    """``data`` as ``model``, or one InvalidInput naming the field."""
    if not isinstance(data, dict):
        raise InvalidInput(not_object, field=field)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc) from None


def task_input(body: Any) -> TaskInput:
    """``body`` (a REST body) as a :class:`TaskInput`, or InvalidInput naming the field."""
    return _validate(TaskInput, body, not_object="a task must be a JSON object")


def stored(doc: Any) -> StoredTask:
    """``doc`` (a stored task) as a :class:`StoredTask`, or InvalidInput naming the field."""
    return _validate(StoredTask, doc, not_object="a task must be a JSON object")


def worker_start(body: Any) -> WorkerStart:
    """The body of ``POST /workers/{name}`` (optional) as a :class:`WorkerStart`."""
    if body is None:
        return WorkerStart()
    return _validate(WorkerStart, body, not_object="body: expected an object {concurrency, jobs}", field="body")


def valid_name(name: object) -> bool:
    """A worker name: letters, digits, ``_ . @ -``, at most 64. The whole string (a name
    becomes a file name)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


# -- normal forms ------------------------------------------------------------------------------


def job_of(value: JobField) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value, "arguments": [], "kwargs": {}}
    return value.model_dump()


def retry_of(value: RetryField) -> dict[str, Any] | None:
    if value is None:
        return None
    retry = Retry(max=value) if isinstance(value, int) else value
    out = retry.model_dump()
    if out["max_delay"] is None:
        del out["max_delay"]
    return out


def misfire_of(value: MisfireField) -> dict[str, Any]:
    if value is None:
        return {"policy": "run", "grace": None}
    if isinstance(value, str):
        return {"policy": value, "grace": None}
    return value.model_dump()


def normal_fields(fields: TaskFields) -> dict[str, Any]:
    """The stored form of the client's fields: shorthands expanded, dates in the one form."""
    return {
        "worker": fields.worker,
        "job": job_of(fields.job),
        "priority": fields.priority,
        "timeout": fields.timeout,
        "expires": fields.expires,
        "retry": retry_of(fields.retry),
        "misfire": misfire_of(fields.misfire),
    }


# -- published forms ---------------------------------------------------------------------------

REF = "#/components/schemas/{model}"


def openapi_schemas() -> dict[str, Any]:
    """``TaskInput``, ``WorkerStart`` and the models they use, for ``components.schemas``."""
    out: dict[str, Any] = {}
    for model in (TaskInput, WorkerStart):
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if schema.get("description") == DATE_FORMS:
        return "date"
    if "$ref" in schema:
        return "object"
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [_type_text(s, defs) for s in schema[key]]
            return " or ".join(dict.fromkeys(p for p in parts if p != "null")) + (" or null" if "null" in parts else "")
    kind = schema.get("type", "any")
    text = str(kind)
    lo, hi = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
    if lo is not None or hi is not None:
        text += f" {_num(lo) if lo is not None else ''}..{_num(hi) if hi is not None else ''}"
    return text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def field_table() -> str:
    """The README's table of task fields, from :class:`TaskInput`'s schema."""
    schema = TaskInput.model_json_schema(ref_template=REF)
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, prop in schema["properties"].items():
        if name == "_id":
            continue
        req = "yes" if name in required else ("unless `cron`" if name == "date" else "")
        desc = str(prop.get("description", "")).replace("|", "\\|")
        rows.append(f"| `{name}` | {_type_text(prop, defs)} | {req} | {desc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(field_table())
