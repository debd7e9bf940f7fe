"""The one place HTTP errors and credentials are handled.

``errors`` maps every :class:`after.errors.AfterError` (and aiohttp's own HTTP errors:
unknown route, wrong method, body too large) to the one JSON error shape
``{"error": code, "message": text, "field": name}``; anything else is a 500 with a
generic message, logged with its traceback on the server, never sent to the client.

``auth`` requires ``Authorization: Bearer <token>`` on every write (and on reads when
``server.protect_reads`` is set), compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from after.errors import AfterError, InvalidInput, TooLarge, Unauthorized, UnsupportedMedia

log = logging.getLogger("after.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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

#: Paths readable without a token even with server.protect_reads (liveness probes, the UI shell).
PUBLIC_READS = ("/health", "/ui", "/openapi.json", "/docs")


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
        return error_response(exc.status, exc.code, exc.message, exc.field)
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


def check_token(request: web.Request) -> None:
    expected = request.app[TOKEN]
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not header:
        raise Unauthorized("missing credentials: send Authorization: Bearer <token> (see `after token`)")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("wrong credentials: the bearer token does not match")


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        if request.app[PROTECT_READS] and request.method != "OPTIONS" and not request.path.startswith(PUBLIC_READS):
            check_token(request)
    else:
        check_token(request)
    return await handler(request)


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
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"body: malformed JSON: {exc}", field="body") from None
