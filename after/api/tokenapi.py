"""``/tokens``: the admin issues, lists and revokes scoped tokens (:mod:`after.tokens`).

Admin only (``admin=True``: not a read token, and not anonymous readers even when reads
are open). The token string is in the answer of ``POST /tokens`` only; the database
keeps its hash, and ``GET /tokens`` shows neither.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from after import timing, tokens
from after.api import STORE
from after.api.middleware import PRINCIPAL, TOKENS, read_json
from after.api.routes import json_resp, ref, route
from after.errors import Conflict, NotFound
from after.store import Store

#: Revocations retried on a conflict (another daemon revoking the same token at once).
REVOKE_TRIES = 5


async def load(store: Store, doc_id: str) -> dict[str, Any] | None:
    """One token document, or None when there is none (the TokenCache's loader)."""
    try:
        return await store.get(doc_id)
    except NotFound:
        return None


def _token_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    token_id = raw.removeprefix(tokens.DOC_PREFIX)
    if not tokens.valid_id(token_id):
        raise NotFound(f"no token {raw!r} (an id is 16 hex digits, as `after token --list` shows)")
    return token_id


@route(
    "POST",
    "/tokens",
    "Issue a worker token (one worker's protocol calls) or a read-only token; the token is shown once",
    tag="tokens",
    admin=True,
    body=ref("TokenRequest"),
    responses={"201": json_resp(ref("NewToken"), "Created")},
)
async def create_token(request: web.Request) -> web.Response:
    body = tokens.request_body(await read_json(request))
    worker = body.worker if isinstance(body, tokens.WorkerTokenRequest) else None
    principal: tokens.Principal = request[PRINCIPAL]
    token, doc = tokens.new(body.scope, worker=worker, label=body.label, created=timing.fmt(datetime.now(UTC)), created_by=principal.kind)
    doc = await request.app[STORE].put(doc)
    request.app[TOKENS].put(doc)  # usable here at once, not after the feed brings it
    view = tokens.public_view(doc)
    return web.json_response(
        {"id": view["id"], "token": token, "scope": view["scope"], "worker": view["worker"], "label": view["label"], "created": view["created"]},
        status=201,
    )


@route(
    "GET",
    "/tokens",
    "Every token issued on this database, revoked ones too (never a secret)",
    tag="tokens",
    admin=True,
    responses={"200": json_resp(ref("TokenList"))},
)
async def list_tokens(request: web.Request) -> web.Response:
    docs = await request.app[STORE].by_prefix(tokens.DOC_PREFIX)
    listed = [tokens.public_view(d) for d in docs if d.get("type") == tokens.TYPE]
    listed.sort(key=lambda t: (str(t.get("created") or ""), t["id"]))
    return web.json_response({"tokens": listed})


@route(
    "DELETE",
    "/tokens/{id}",
    "Revoke a token: refused from then on (on other daemons within seconds); it stays listed with `revoked`",
    tag="tokens",
    admin=True,
    responses={"200": json_resp(ref("Token"))},
)
async def revoke_token(request: web.Request) -> web.Response:
    token_id = _token_id(request)
    store = request.app[STORE]
    for _ in range(REVOKE_TRIES):
        doc = await load(store, tokens.doc_id(token_id))
        if doc is None or doc.get("type") != tokens.TYPE:
            raise NotFound(f"no token {token_id!r}")
        if doc.get("revoked"):
            break
        try:
            doc = await store.put(tokens.revoked(doc, timing.fmt(datetime.now(UTC))))
            break
        except Conflict:
            continue
    else:
        raise Conflict(f"token {token_id}: changed by someone else {REVOKE_TRIES} times while revoking it; try again")
    request.app[TOKENS].put(doc)
    return web.json_response(tokens.public_view(doc))

