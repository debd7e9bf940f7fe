"""Scoped API tokens: who a bearer token is, and what it may call.

Besides the one admin token (``server.api_token`` or ``<state>/token``: everything),
an admin issues tokens of two scopes, kept as documents in CouchDB so that every daemon
on the database knows them:

- ``worker``: the remote worker protocol's calls (routes with ``RouteSpec.worker``) for
  the one worker it names, nothing else. What a worker host holds: never the admin token.
- ``read``: reads (GET, HEAD) of every route but the token admin's (``/tokens``), for
  dashboards.

A token is given once as ``aft_<id>_<secret>``; its document (``_id: "token:<id>"``)
keeps only the SHA-256 of the secret, so neither the database nor its backups can
give a working token away. Revoking keeps the document with its ``revoked`` time.

This module is the rule, free of I/O, so tests drive it with tables: parse a token
string, check it against its document, and decide whether a principal may make a
call (:func:`decide`). :class:`TokenCache` keeps the documents a daemon looked up for
:data:`CACHE_SECONDS`: a worker calling hundreds of times a second costs no CouchDB
read per call, and a revocation made on another daemon takes effect within that time
(at once on the daemon that revoked it, and as soon as its changes feed brings the
document to the others).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from after.errors import InvalidInput
from after.schema import REF, Name, _validate

#: The prefix of every token string, so a scoped token is told from the admin token
#: (and found by secret scanners) at a glance.
PREFIX = "aft_"
#: The id space of token documents.
DOC_PREFIX = "token:"
TYPE = "token"
SCOPES = ("worker", "read")
Scope = Literal["worker", "read"]
Kind = Literal["admin", "worker", "read", "anonymous"]

#: How long a daemon trusts a token document it read (seconds): the most a revocation
#: made on another daemon can take to reach this one when its changes feed lags.
CACHE_SECONDS = 5.0
#: Token documents a daemon keeps at most (the least recently used go first).
CACHE_SIZE = 10_000

_ID = re.compile(r"[0-9a-f]{16}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{20,200}")
READS = ("GET", "HEAD")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a request is: set as ``request["principal"]`` for handlers."""

    kind: Kind
    #: The token's id (None for the admin token and for anonymous reads).
    token: str | None = None
    #: The worker a worker token is for.
    worker: str | None = None

    def describe(self) -> str:
        if self.kind == "worker":
            return f"token {self.token} (worker scope: worker {self.worker}'s protocol calls only)"
        if self.kind == "read":
            return f"token {self.token} (read-only scope)"
        return self.kind


ADMIN = Principal("admin")
ANONYMOUS = Principal("anonymous")


class RouteRule(Protocol):
    """What :func:`decide` reads of a route (``after.api.routes.RouteSpec``)."""

    @property
    def worker(self) -> bool: ...

    @property
    def admin(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A refusal: the HTTP status (401 or 403) and the message that says why."""

    status: Literal[401, 403]
    message: str


MISSING = "missing credentials: send Authorization: Bearer <token> (see `after token`)"


def doc_id(token_id: str) -> str:
    return token_id if token_id.startswith(DOC_PREFIX) else DOC_PREFIX + token_id


def valid_id(token_id: str) -> bool:
    return _ID.fullmatch(token_id) is not None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """``aft_<id>_<secret>`` -> (id, secret); None when ``token`` is not of that shape."""
    if not token.startswith(PREFIX):
        return None
    token_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not valid_id(token_id) or not _SECRET.fullmatch(secret):
        return None
    return token_id, secret


def new(scope: Scope, *, worker: str | None, label: str | None, created: str, created_by: str) -> tuple[str, dict[str, Any]]:
    """A new token: (the string to give once, the document to store)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    doc: dict[str, Any] = {
        "_id": doc_id(token_id),
        "type": TYPE,
        "scope": scope,
        "label": label or "",
        "created": created,
        "created_by": created_by,
        "hash": digest(secret),
    }
    if scope == "worker":
        doc["worker"] = worker
    return f"{PREFIX}{token_id}_{secret}", doc


def check(doc: Mapping[str, Any] | None, token_id: str, secret: str) -> Principal | Verdict:
    """The principal a token's document makes of ``secret``, or a 401 saying why not.

    A document that is not a well-formed token document (written by hand, or by a later
    version) grants nothing.
    """
    if doc is None or doc.get("type") != TYPE or doc.get("_id") != doc_id(token_id):
        return Verdict(401, f"unknown token {token_id}: it was never issued on this database")
    stored = doc.get("hash")
    if not isinstance(stored, str) or not hmac.compare_digest(stored.encode(), digest(secret).encode()):
        return Verdict(401, f"wrong credentials: the secret of token {token_id} does not match")
    if doc.get("revoked"):
        return Verdict(401, f"token {token_id} was revoked at {doc['revoked']}; ask for a new one (`after token --worker NAME` or `--read-only`)")
    scope, worker = doc.get("scope"), doc.get("worker")
    if scope == "worker" and isinstance(worker, str) and worker:
        return Principal("worker", token_id, worker)
    if scope == "read":
        return Principal("read", token_id)
    return Verdict(401, f"token {token_id} has no valid scope (scope {scope!r}): it grants nothing")


def decide(
    principal: Principal | None,
    route: RouteRule | None,
    method: str,
    path: str,
    name: str | None,
    *,
    protect_reads: bool,
    public: bool,
) -> Verdict | None:
    """None when ``principal`` may call ``method path``; else the refusal.

    ``principal`` is None when the request carries no credentials; ``route`` is None
    when no route matches (the router answers 404/405 to whoever may get that far);
    ``name`` is the path's ``{name}`` (a worker route's worker).

    - Without credentials: reads are open unless ``server.protect_reads`` (public paths
      always), writes and the admin's routes are 401.
    - The admin token: everything.
    - A worker token: the worker protocol routes of its own worker (and public paths).
    - A read token: GET/HEAD of every route but the admin's.
    """
    read = method in READS
    what = f"{method} {path}"
    admin_route = route is not None and route.admin
    if principal is None or principal.kind == "anonymous":
        if read and not admin_route and (public or not protect_reads):
            return None
        return Verdict(401, MISSING)
    if principal.kind == "admin":
        return None
    if public and read:
        return None
    if principal.kind == "worker":
        if route is None or not route.worker:
            return Verdict(403, f"{principal.describe()}: it cannot call {what} (only POST /workers/{principal.worker}/... of the worker protocol)")
        if name != principal.worker:
            return Verdict(403, f"{principal.describe()}: it cannot act for worker {name!r} ({what})")
        return None
    if admin_route:
        return Verdict(403, f"{principal.describe()}: {what} needs the admin token")
    if not read:
        return Verdict(403, f"{principal.describe()}: it cannot write ({what}); reads (GET) only")
    return None


Label = Annotated[str, Field(max_length=200, description="what it is for (shown in the list)")]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class WorkerTokenRequest(_Body):
    """``POST /tokens`` for a worker host: the worker protocol's calls for ``worker`` only."""

    scope: Literal["worker"]
    worker: Annotated[Name, Field(description="the worker it may act for (letters, digits, `_ . @ -`, at most 64)")]
    label: Label = ""


class ReadTokenRequest(_Body):
    """``POST /tokens`` for a dashboard: reads only."""

    scope: Literal["read"]
    label: Label = ""


TokenRequest = WorkerTokenRequest | ReadTokenRequest


def request_body(body: Any) -> TokenRequest:
    """The body of ``POST /tokens``, or InvalidInput naming the field."""
    not_object = 'body: expected an object {"scope": "worker", "worker": NAME} or {"scope": "read"}'
    if not isinstance(body, dict):
        raise InvalidInput(not_object, field="body")
    scope = body.get("scope")
    if scope == "worker":
        return _validate(WorkerTokenRequest, body, not_object=not_object, field="body")
    if scope == "read":
        if "worker" in body:
            raise InvalidInput('worker: only a token of scope "worker" names a worker', field="worker")
        return _validate(ReadTokenRequest, body, not_object=not_object, field="body")
    if "scope" not in body:
        raise InvalidInput('scope: required ("worker" or "read")', field="scope")
    raise InvalidInput(f'scope: expected "worker" or "read", got {scope!r:.80}', field="scope")


def openapi_schemas() -> dict[str, Any]:
    """The bodies and answers of ``/tokens``, for ``components.schemas``."""
    out: dict[str, Any] = {}
    for model in (WorkerTokenRequest, ReadTokenRequest):
        out[model.__name__] = model.model_json_schema(ref_template=REF, mode="validation")
    listed = {
        "id": {"type": "string", "description": "the token's id (the part after aft_ in the token)"},
        "scope": {"enum": list(SCOPES)},
        "worker": {"type": ["string", "null"], "description": "worker scope: the worker it may act for"},
        "label": {"type": "string"},
        "created": {"type": "string"},
    }
    out["TokenRequest"] = {
        "oneOf": [{"$ref": REF.format(model="WorkerTokenRequest")}, {"$ref": REF.format(model="ReadTokenRequest")}],
        "discriminator": {"propertyName": "scope", "mapping": {"worker": REF.format(model="WorkerTokenRequest"), "read": REF.format(model="ReadTokenRequest")}},
    }
    out["NewToken"] = {
        "type": "object",
        "required": ["id", "token", "scope", "worker", "label", "created"],
        "properties": {**listed, "token": {"type": "string", "description": "the token itself: shown once, never again"}},
    }
    out["Token"] = {
        "type": "object",
        "required": ["id", "scope", "worker", "label", "created"],
        "properties": {
            **listed,
            "created_by": {"type": ["string", "null"]},
            "revoked": {"type": "string", "description": "when it was revoked (absent while it is valid)"},
        },
    }
    out["TokenList"] = {"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": {"$ref": REF.format(model="Token")}}}}
    return out


def revoked(doc: Mapping[str, Any], at: str) -> dict[str, Any]:
    """``doc`` revoked at ``at`` (a revoked one keeps its first revocation time)."""
    return dict(doc) if doc.get("revoked") else {**doc, "revoked": at}


def public_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A token document as listed: never its hash (nor, of course, the secret)."""
    out: dict[str, Any] = {
        "id": str(doc.get("_id", ""))[len(DOC_PREFIX) :],
        "scope": doc.get("scope"),
        "worker": doc.get("worker"),
        "label": doc.get("label", ""),
        "created": doc.get("created"),
        "created_by": doc.get("created_by"),
    }
    if doc.get("revoked"):
        out["revoked"] = doc["revoked"]
    return out


Loader = Callable[[str], Awaitable[dict[str, Any] | None]]


class TokenCache:
    """Token documents by id, each trusted for ``ttl`` seconds after it was read.

    ``load(doc_id)`` reads one (None: no such document). Lookups of one id at once share
    one read. When a read fails (CouchDB unreachable) and a document read before is at
    hand, that one is used: a worker keeps working through a short outage, as it would
    with its tasks' own writes retried; without one, the failure is raised (503).
    """

    def __init__(self, load: Loader, *, ttl: float = CACHE_SECONDS, size: int = CACHE_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._docs: collections.OrderedDict[str, tuple[float, dict[str, Any] | None]] = collections.OrderedDict()
        self._reading: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        #: CouchDB reads made (for tests and metrics: one per id per ttl at most).
        self.reads = 0

    def put(self, doc: Mapping[str, Any]) -> None:
        """Take a document this daemon wrote, or one its changes feed brought."""
        key = doc.get("_id")
        if isinstance(key, str):
            self._keep(key, None if doc.get("_deleted") else dict(doc))

    def _keep(self, key: str, doc: dict[str, Any] | None) -> None:
        self._docs[key] = (self._clock(), doc)
        self._docs.move_to_end(key)
        while len(self._docs) > self.size:
            self._docs.popitem(last=False)

    def observe(self, changes: list[dict[str, Any]], _seq: Any = None) -> None:
        """A listener of the scheduler's changes feed: a token document changed on any
        daemon replaces the one held here (a revocation takes effect at once)."""
        for change in changes:
            key = change.get("id")
            if isinstance(key, str) and key.startswith(DOC_PREFIX) and key in self._docs:
                doc = change.get("doc")
                if change.get("deleted"):
                    self._keep(key, None)
                elif isinstance(doc, dict):
                    self._keep(key, doc)
                else:
                    del self._docs[key]

    async def get(self, token_id: str) -> dict[str, Any] | None:
        key = doc_id(token_id)
        held = self._docs.get(key)
        if held is not None and self._clock() - held[0] < self.ttl:
            return held[1]
        pending = self._reading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._reading[key] = future
        try:
            self.reads += 1
            doc = await self._load(key)
        except Exception as exc:
            if held is not None:
                future.set_result(held[1])
                return held[1]
            future.set_exception(exc)
            future.exception()  # retrieved: a failure nobody else awaited is not "never retrieved"
            raise
        finally:
            del self._reading[key]
        self._keep(key, doc)
        future.set_result(doc)
        return doc
