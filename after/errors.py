"""Every error After raises on purpose, in one tree.

The HTTP layer maps these to statuses in one middleware (``api/middleware.py``), the CLI
maps them to exit code 1 with a one-line message; nothing else needs try/except. Errors
of the libraries underneath (aiocouch, aiohttp client) are translated into this tree at
one boundary, ``store.py``.

::

    AfterError                      500  (a bug or an unexpected state; never bad input)
     ├── ConfigError                      a setting is missing or invalid (daemon refuses to start)
     ├── InvalidInput               400  a request body, parameter or document field is wrong
     │    └── Unprocessable         422  well-formed but impossible (bad cron, unknown zone)
     ├── Unauthorized               401  missing or wrong bearer token
     ├── NotFound                   404  no such task / worker
     ├── Conflict                   409  a stale revision: somebody else changed the document
     ├── TooLarge                   413  request body over the configured limit
     ├── UnsupportedMedia           415  request body is not JSON
     ├── StoreUnavailable           503  CouchDB cannot be reached or refused us
     │    ├── CredentialsRefused          401 from CouchDB: our user or password (or, on
     │    │                               pouchdb-server, a _security that shuts us out)
     │    ├── ServerError                 CouchDB answered 5xx
     │    └── MalformedAnswer             an answer that is not what CouchDB answers (bad
     │                                    JSON, an unexpected shape)
     ├── Forbidden                  403  refused by validate_doc_update or by _security
     └── DesignMissing (NotFound)   503  a view of ``_design/after`` answered not found
"""

from __future__ import annotations

from typing import Any


class AfterError(Exception):
    """Base of every error After raises deliberately."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class ConfigError(AfterError):
    """A configuration file, environment variable or option is invalid."""

    code = "config"


class InvalidInput(AfterError):
    """Input that can be named and fixed by the caller: a field, a parameter, a date."""

    status = 400
    code = "invalid"


class Unprocessable(InvalidInput):
    """Well-formed input that cannot be honoured (unknown time zone, bad cron)."""

    status = 422
    code = "unprocessable"


class Unauthorized(AfterError):
    status = 401
    code = "unauthorized"


class NotFound(AfterError):
    status = 404
    code = "not_found"


class SessionGone(NotFound):
    """A remote worker's session is unknown here (expired, or from before a restart): it
    must connect again; every lease of the old session is void."""

    code = "session_gone"


class Conflict(AfterError):
    """The document changed since it was read (a CouchDB 409 on its revision).

    For the scheduler this is the normal way of learning that another daemon or a
    client got there first; it is never retried blindly.
    """

    status = 409
    code = "conflict"


class TooLarge(AfterError):
    status = 413
    code = "too_large"


class UnsupportedMedia(AfterError):
    status = 415
    code = "unsupported_media_type"


class StoreUnavailable(AfterError):
    """CouchDB did not answer, or answered with a server error."""

    status = 503
    code = "store_unavailable"


class CredentialsRefused(StoreUnavailable):
    """CouchDB answered 401: it does not take our credentials for this request."""


class ServerError(StoreUnavailable):
    """CouchDB answered with a server error (5xx)."""

    def __init__(self, message: str, *, status: int = 500) -> None:
        super().__init__(message)
        self.http_status = status


class MalformedAnswer(StoreUnavailable):
    """CouchDB (or something in its place) answered what no CouchDB answers: not JSON, or
    JSON of an unexpected shape."""


class DesignMissing(NotFound):
    """A view of After's design document answered not found: ``_design/after`` is gone.

    A fault of the database, not of the request: a REST call answers 503 until the
    daemon has written the design document again.
    """

    status = 503
    code = "design_missing"


class Uncertain(AfterError):
    """CouchDB took a write on fewer replicas than the quorum (a cluster's 202 ``accepted``).

    A competing edit may hold the majority, so the write is not known to be ours: a claim
    answered so is not dispatched, an acceptance so does not start a job. ``doc`` is what
    was written, with the revision CouchDB gave it (it may become a conflicting leaf).
    """

    status = 202
    code = "accepted"

    def __init__(self, message: str, *, doc: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.doc: dict[str, Any] = dict(doc or {})


class Forbidden(AfterError):
    """CouchDB's validate_doc_update refused a write (e.g. a client writing ``scheduled``)."""

    status = 403
    code = "forbidden"
