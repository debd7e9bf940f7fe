"""The one boundary where aiocouch's and aiohttp's errors become After's (:mod:`after.errors`).

Every call :class:`after.store.Store` makes runs inside :func:`translate`, so the rest of
After (and its loops, :mod:`after.loops`) sees one exception tree: a conflict, a
refusal, a missing design document, a store that is down or answers garbage.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiocouch
import aiohttp

from after.design import DESIGN
from after.errors import (
    AfterError,
    Conflict,
    CredentialsRefused,
    DesignMissing,
    Forbidden,
    InvalidInput,
    MalformedAnswer,
    NotFound,
    ServerError,
    StoreUnavailable,
)


@contextlib.contextmanager
def translate(what: str) -> Any:
    """Map aiocouch / aiohttp errors to After's tree. The only place that knows them.

    An answer that is not what CouchDB answers (not JSON, a body of another shape that
    aiocouch trips over with a KeyError or TypeError) is a :class:`MalformedAnswer`, never
    a stray exception: the caller's loop treats it like any other failure of the store.
    """
    try:
        yield
    except AfterError:
        raise
    except aiocouch.ConflictError as exc:
        raise Conflict(f"{what}: the document changed meanwhile (stale revision)") from exc
    except aiocouch.NotFoundError as exc:
        raise NotFound(f"{what}: not found") from exc
    except aiocouch.ForbiddenError as exc:
        raise Forbidden(f"{what}: {exc}") from exc
    except aiocouch.UnauthorizedError as exc:
        raise CredentialsRefused(f"{what}: CouchDB refused our credentials") from exc
    except aiocouch.BadRequestError as exc:
        raise InvalidInput(f"{what}: CouchDB rejected the request: {exc}") from exc
    except (aiohttp.ContentTypeError, json.JSONDecodeError) as exc:
        raise MalformedAnswer(f"{what}: CouchDB's answer is not JSON ({type(exc).__name__})") from exc
    except aiohttp.ClientResponseError as exc:
        raise response_error(what, exc) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise StoreUnavailable(f"{what}: CouchDB unreachable ({type(exc).__name__}: {exc})") from exc
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise MalformedAnswer(f"{what}: unexpected answer from CouchDB ({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        # aiocouch raises a bare ValueError for a status it has no class for (a 5xx).
        if isinstance(exc.__cause__, aiohttp.ClientResponseError):
            raise response_error(what, exc.__cause__) from exc
        raise MalformedAnswer(f"{what}: unexpected answer from CouchDB ({type(exc).__name__}: {exc})") from exc


def response_error(what: str, exc: aiohttp.ClientResponseError) -> AfterError:
    """The error of After's tree for an HTTP error status that aiocouch did not name."""
    if exc.status == 401:
        return CredentialsRefused(f"{what}: CouchDB refused our credentials")
    if exc.status == 403:
        return Forbidden(f"{what}: {exc.message}")
    if exc.status == 404:
        return NotFound(f"{what}: not found")
    if exc.status >= 500:
        return ServerError(f"{what}: CouchDB answered {exc.status} {exc.message}", status=exc.status)
    return StoreUnavailable(f"{what}: CouchDB answered {exc.status} {exc.message}")


@contextlib.contextmanager
def design_view(database: str, name: str) -> Any:
    """A view of ``_design/after`` that answers not found: the design document is gone."""
    try:
        yield
    except NotFound as exc:
        raise DesignMissing(f"{database} view {name}: not found (design document _design/{DESIGN} missing)") from exc
