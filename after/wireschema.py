"""The bodies of the remote worker protocol (docs/worker-protocol.md), as pydantic models:
the same models validate each call and describe it in ``/openapi.json``, so the spec
and the checks cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from after.schema import MAX_CONCURRENCY, REF, _validate

LeaseId = Annotated[str, Field(min_length=1, max_length=200, description="the lease the task was delivered with")]
SessionId = Annotated[str, Field(min_length=1, max_length=200, description="the session `connect` answered with")]
LogLines = Annotated[list[Annotated[str, Field(max_length=10_000)]] | None, Field(max_length=1000, description="lines appended to the task's bounded log")]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Progress(_Wire):
    done: Annotated[float, Field(allow_inf_nan=False)] = 0
    total: Annotated[float | None, Field(allow_inf_nan=False)] = None


class Connect(_Wire):
    """``POST /workers/{name}/connect``: a remote worker announces itself."""

    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY, description="tasks it runs at once")] = 1
    host: Annotated[str | None, Field(min_length=1, max_length=255, description="its host name (default: the caller's address)")] = None
    jobs: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]] | None, Field(max_length=1000, description="the jobs it has (shown, not enforced)")
    ] = None
    pid: Annotated[int | None, Field(ge=0, description="its process id (shown)")] = None
    client: Annotated[str | None, Field(max_length=100, description="its library and version (shown)")] = None


class Poll(_Wire):
    """``POST /workers/{name}/poll``: the tasks due for it (long poll)."""

    session: SessionId
    wait: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False, description="seconds to wait for a task")] = 20
    max: Annotated[int | None, Field(ge=0, le=10_000, description="at most this many tasks (default: its free room)")] = None


class SessionCall(_Wire):
    """``POST /workers/{name}/disconnect``."""

    session: SessionId


class Accept(_Wire):
    """``POST /workers/{name}/tasks/{id}/accept``."""

    lease: LeaseId
    session: SessionId | None = None


class Heartbeat(_Wire):
    """``POST /workers/{name}/tasks/{id}/heartbeat``: alive, with progress and log lines."""

    lease: LeaseId
    session: SessionId | None = None
    progress: Progress | None = None
    log: LogLines = None


class ErrorReport(_Wire):
    message: Annotated[str | None, Field(max_length=100_000)] = None
    retryable: bool = True
    reason: Annotated[str | None, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None
    type: Annotated[str | None, Field(max_length=200)] = None
    traceback: Annotated[str | None, Field(max_length=100_000, title="Stack", description="the job's stack trace, as text")] = None


class Finish(_Wire):
    """``POST /workers/{name}/tasks/{id}/finish``: the job's outcome."""

    lease: LeaseId
    session: SessionId | None = None
    status: Literal["done", "failed", "discarded", "canceled"]
    result: Any = None
    error: ErrorReport | Annotated[str, Field(max_length=100_000)] | None = None
    progress: Progress | None = None
    log: LogLines = None


class AcceptItem(Accept):
    id: Annotated[str, Field(min_length=1, max_length=300)]


class FinishItem(Finish):
    id: Annotated[str, Field(min_length=1, max_length=300)]


class AcceptMany(_Wire):
    """``POST /workers/{name}/accept``: accept many delivered tasks in one call."""

    tasks: Annotated[list[AcceptItem], Field(min_length=1, max_length=10_000)]


class FinishMany(_Wire):
    """``POST /workers/{name}/finish``: finish many tasks in one call."""

    tasks: Annotated[list[FinishItem], Field(min_length=1, max_length=10_000)]


MODELS: tuple[type[BaseModel], ...] = (Connect, Poll, SessionCall, Accept, Heartbeat, Finish, AcceptMany, FinishMany)


def parse(model: type[Any], body: Any) -> Any:
    """``body`` as ``model``, or InvalidInput naming the field."""
    return _validate(model, {} if body is None else body, not_object=f"body: expected a JSON object ({model.__name__})", field="body")


def openapi_schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out
