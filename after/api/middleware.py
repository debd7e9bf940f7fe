"""The one place HTTP errors, credentials and CORS are handled.

``errors`` maps every :class:`after.errors.AfterError` (and aiohttp's own HTTP errors:
unknown route, wrong method, body too large) to the one JSON error shape
``{"error": code, "message": text, "field": name}``; anything else is a 500 with a
generic message, logged with its traceback on the server, never sent to the client.

``auth`` requires ``Authorization: Bearer <token>`` on every write (and on reads when
``server.protect_reads`` is set), and holds a scoped token (:mod:`after.tokens`: a
worker's, or a read-only one) to its scope: 401 for missing, wrong or revoked
credentials, 403 for a call beyond the token's scope. Neither a token nor the header is
ever logged: the daemon runs without an access log, and no message here repeats what
the client sent as credentials.

``cors`` answers preflight requests and is installed only when ``server.cors_origins``
lists origins: by default a browser page from another origin cannot read the API.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web

from after import tokens
from after.errors import AfterError, Forbidden, InvalidInput, TooLarge, Unauthorized, UnsupportedMedia

log = logging.getLogger("after.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}

#: Readable without a token even with server.protect_reads: liveness probes, the spec and
#: its page, the UI shell (its API calls carry the token). Exact paths, or a prefix
#: ending in "/".
PUBLIC_READS = ("/health", "/openapi.json", "/docs", "/ui", "/ui/")


def is_public(path: str) -> bool:
    return path in PUBLIC_READS or path.startswith("/ui/")


def error_response(status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AfterError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        headers = {"WWW-Authenticate": 'Bearer realm="after"'} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        elif exc.status == 404:
            message = f"no route {request.path}"
        elif exc.status == 413:
            message = f"request body too large (limit {request.app[MAX_BODY]} bytes: server.max_body_bytes)"
        else:
            message = exc.reason
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "error"), message, headers=headers)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; see the daemon's log")


TOKEN: web.AppKey[str] = web.AppKey("token", str)
PROTECT_READS: web.AppKey[bool] = web.AppKey("protect_reads", bool)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
#: The scoped tokens' documents this daemon looked up (see :mod:`after.tokens`).
TOKENS: web.AppKey[tokens.TokenCache] = web.AppKey("tokens", tokens.TokenCache)
#: Each route of the router -> its RouteSpec (what :func:`after.tokens.decide` reads of it).
ROUTE_RULES: web.AppKey[dict[Any, tokens.RouteRule]] = web.AppKey("route_rules", dict)
#: Where handlers find who is calling (an :class:`after.tokens.Principal`).
PRINCIPAL = "principal"


async def identify(request: web.Request) -> tokens.Principal | None:
    """Who the request's bearer token is; None without an ``Authorization`` header.

    The admin token is compared with ``hmac.compare_digest``, which takes the same time
    wherever the first differing byte is, so it cannot be guessed byte by byte from
    response times; a scoped token's secret is checked the same way against its hash.
    An unknown, malformed or revoked token is a 401.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if not header.strip():
        raise Unauthorized(tokens.MISSING)
    if scheme.lower() != "bearer":
        raise Unauthorized("wrong credentials: expected Authorization: Bearer <token>")
    if hmac.compare_digest(given.encode(), request.app[TOKEN].encode()):
        return tokens.ADMIN
    parsed = tokens.parse(given)
    if parsed is None:
        if given.startswith(tokens.PREFIX):
            raise Unauthorized("malformed token: expected aft_<id>_<secret> as `after token --worker NAME` printed it")
        raise Unauthorized("wrong credentials: the bearer token does not match")
    token_id, secret = parsed
    found = tokens.check(await request.app[TOKENS].get(token_id), token_id, secret)
    if isinstance(found, tokens.Verdict):
        raise Unauthorized(found.message)
    return found


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hold every request to its token's scope (:func:`after.tokens.decide`).

    Open reads still refuse a wrong token: a client (the UI's sign-in, a script) learns
    at once that its token is wrong, not at its first write.
    """
    if request.method == "OPTIONS":
        return await handler(request)
    principal = await identify(request)
    rule = request.app[ROUTE_RULES].get(request.match_info.route)
    name = request.match_info.get("name")
    verdict = tokens.decide(
        principal, rule, request.method, request.path, name, protect_reads=request.app[PROTECT_READS], public=is_public(request.path)
    )
    if verdict is not None:
        raise (Unauthorized if verdict.status == 401 else Forbidden)(verdict.message)
    request[PRINCIPAL] = principal or tokens.ANONYMOUS
    return await handler(request)


def cors(origins: Collection[str]) -> Middleware:
    """Answer CORS preflights for the listed origins (``*`` for any) and mark their responses.

    Only installed when ``server.cors_origins`` is set. Credentials travel in the
    ``Authorization`` header, never in cookies, so ``Allow-Credentials`` is not sent.
    """
    allowed = frozenset(origins)

    def allow(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin and ("*" in allowed or origin in allowed) else None

    def headers_for(origin: str) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID, If-Match",
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = allow(request)
        if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers=headers_for(origin))
        if origin is not None:
            request[_ORIGIN] = origin
        return await handler(request)

    return middleware


_ORIGIN = "after.cors_origin"


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: CORS headers on every answer to an allowed origin (errors and streams included)."""
    origin = request.get(_ORIGIN)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "ETag"
        response.headers["Vary"] = "Origin"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """The request body as JSON, or a 400/413/415 naming the problem."""
    if not request.body_exists:
        if required:
            raise InvalidInput("body: a JSON body is required", field="body")
        return None
    ctype = request.content_type
    if ctype not in ("application/json", "text/json") and not ctype.endswith("+json"):
        raise UnsupportedMedia(f"body must be JSON (Content-Type: application/json), got {ctype!r}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"request body too large (limit {request.app[MAX_BODY]} bytes: server.max_body_bytes)") from None
    if not raw.strip():
        if required:
            raise InvalidInput("body: a JSON body is required", field="body")
        return None
    try:
        # NaN and Infinity are Python's extensions, not JSON: CouchDB could not store them.
        return json.loads(raw, parse_constant=_no_constants)
    except ValueError as exc:
        raise InvalidInput(f"body: malformed JSON: {exc}", field="body") from None
    except RecursionError:
        raise InvalidInput("body: JSON nested too deeply", field="body") from None
