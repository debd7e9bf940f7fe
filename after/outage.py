"""What a background loop does when the store fails: pure decisions over data.

Every loop of the daemon and of the workers (window refresh, changes feed, purge, tick,
heartbeat, a worker's writes) keeps one :class:`LoopState`. After each step it asks
:func:`failed` or :func:`succeeded` for the next state, whether to log, and how long to
wait; :mod:`after.loops` does the waiting, the logging and the repairs. Nothing here
does I/O, so tests drive it with tables.

- :func:`classify` names the cause of an error, in the words ``/health`` shows: a
  view of ``_design/after`` answering not found is ``design document missing``; a 403,
  or a 401 while our session itself is valid (pouchdb-server answers an authenticated
  non-member 401 where CouchDB answers 403), is ``access forbidden by _security``.
- A cause is logged when it appears or changes, not at every retry; recovery is logged
  once. The delay doubles from ``base`` up to ``cap`` while the failures go on.
- :func:`repair` says what the loop may do about a cause itself: recreate the design
  document (the worker role is a database admin through ``_security``).
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from after.errors import (
    AfterError,
    CredentialsRefused,
    DesignMissing,
    Forbidden,
    MalformedAnswer,
    NotFound,
    ServerError,
    StoreUnavailable,
)

DESIGN_MISSING = "design document missing"
FORBIDDEN = "access forbidden by _security"
CREDENTIALS = "CouchDB refused our credentials"
UNREACHABLE = "CouchDB unreachable"
SERVER_ERROR = "CouchDB answered 5xx"
MALFORMED = "malformed answer"
MISSING = "database or document missing"
#: Every cause, in the order /metrics lists them (``after_loop_failing{loop,cause}``).
CAUSES = (DESIGN_MISSING, FORBIDDEN, CREDENTIALS, UNREACHABLE, SERVER_ERROR, MALFORMED, MISSING)


#: The cause of each kind of error, the most specific first (the first match wins). A 401
#: (:class:`CredentialsRefused`) depends on our session: see :func:`classify`.
BY_TYPE: tuple[tuple[type[BaseException], str], ...] = (
    (DesignMissing, DESIGN_MISSING),
    (NotFound, MISSING),
    (Forbidden, FORBIDDEN),
    (ServerError, SERVER_ERROR),
    (MalformedAnswer, MALFORMED),
    (StoreUnavailable, UNREACHABLE),
)


def classify(exc: BaseException, *, session_valid: bool | None = None) -> str:
    """The cause of a loop's failure. ``session_valid``: whether ``GET /_session`` says our
    credentials are good (asked only after a 401; None when unknown)."""
    if isinstance(exc, CredentialsRefused):
        return FORBIDDEN if session_valid else CREDENTIALS
    for kind, cause in BY_TYPE:
        if isinstance(exc, kind):
            return cause
    if isinstance(exc, AfterError):
        return f"error ({exc.code})"
    return f"unexpected error ({type(exc).__name__})"


def needs_session_check(exc: BaseException) -> bool:
    """A 401: is it our credentials, or a ``_security`` that shuts a valid user out?"""
    return isinstance(exc, CredentialsRefused)


class Log(Enum):
    """What the loop must log after a step."""

    NOTHING = "nothing"
    FAILING = "failing"  # a cause appeared, or changed (warning, with the cause)
    RECOVERED = "recovered"  # the loop works again (info, with how long it failed)


@dataclasses.dataclass(frozen=True)
class LoopState:
    """One loop's health. ``since`` is when the current run of failures began (None: fine)."""

    name: str
    since: float | None = None
    cause: str | None = None
    message: str = ""
    failures: int = 0
    #: Every failure since the process started (``after_loop_errors_total{loop}``).
    errors: int = 0
    #: How long to wait before the next try.
    delay: float = 0.0

    @property
    def failing(self) -> bool:
        return self.since is not None


def backoff(failures: int, *, base: float, cap: float) -> float:
    """The wait after ``failures`` consecutive failures: base, 2 base, 4 base, ... up to cap."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 30)))


def failed(state: LoopState, cause: str, message: str, now: float, *, base: float = 0.5, cap: float = 10.0) -> tuple[LoopState, Log]:
    """The state after a failed step, and whether to log (only a new or changed cause)."""
    failures = state.failures + 1
    new = dataclasses.replace(
        state,
        since=state.since if state.since is not None else now,
        cause=cause,
        message=message,
        failures=failures,
        errors=state.errors + 1,
        delay=backoff(failures, base=base, cap=cap),
    )
    return new, Log.FAILING if cause != state.cause else Log.NOTHING


def succeeded(state: LoopState) -> tuple[LoopState, Log]:
    """The state after a step that worked, and whether to log a recovery."""
    if not state.failing:
        return state, Log.NOTHING
    return dataclasses.replace(state, since=None, cause=None, message="", failures=0, delay=0.0), Log.RECOVERED


class Repair(Enum):
    NONE = "none"
    DESIGN = "design"  # write _design/after again (Store.ensure_design)


def repair(cause: str) -> Repair:
    """What the loop can fix by itself about ``cause``."""
    return Repair.DESIGN if cause == DESIGN_MISSING else Repair.NONE


def reason(state: LoopState, now: float) -> str:
    """The ``/health`` line of a failing loop."""
    seconds = 0.0 if state.since is None else max(0.0, now - state.since)
    return f"{state.name} loop failing: {state.cause} for {seconds:.0f}s ({state.message})"
