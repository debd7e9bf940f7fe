"""The decisions of a failing loop (after/outage.py), and how the store names what failed
(after/store.py::translate), driven by tables: no I/O."""

from __future__ import annotations

import json

import aiohttp
import pytest

from after import outage
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
from after.outage import Log, LoopState, Repair
from after.store import translate


@pytest.mark.parametrize(
    ("exc", "session_valid", "cause"),
    [
        (DesignMissing("t view agenda: not found"), None, outage.DESIGN_MISSING),
        (NotFound("document x: not found"), None, outage.MISSING),
        (Forbidden("database t: Access forbidden: None"), None, outage.FORBIDDEN),
        # pouchdb-server answers an authenticated non-member 401: our session decides.
        (CredentialsRefused("t: CouchDB refused our credentials"), True, outage.FORBIDDEN),
        (CredentialsRefused("t: CouchDB refused our credentials"), False, outage.CREDENTIALS),
        (CredentialsRefused("t: CouchDB refused our credentials"), None, outage.CREDENTIALS),
        (ServerError("t: CouchDB answered 500 Internal Server Error", status=500), None, outage.SERVER_ERROR),
        (MalformedAnswer("t: CouchDB's answer is not JSON"), None, outage.MALFORMED),
        (StoreUnavailable("t: CouchDB unreachable (ClientConnectorError)"), None, outage.UNREACHABLE),
        (InvalidInput("t: CouchDB rejected the request"), None, "error (invalid)"),
        (Conflict("x: stale"), None, "error (conflict)"),
        (AfterError("store is not open"), None, "error (internal)"),
        (TypeError("a bug"), None, "unexpected error (TypeError)"),
    ],
)
def test_classify(exc: BaseException, session_valid: bool | None, cause: str) -> None:
    assert outage.classify(exc, session_valid=session_valid) == cause


@pytest.mark.parametrize(
    ("exc", "check"),
    [(CredentialsRefused("x"), True), (Forbidden("x"), False), (StoreUnavailable("x"), False), (ValueError("x"), False)],
)
def test_only_a_401_asks_for_the_session(exc: BaseException, check: bool) -> None:
    assert outage.needs_session_check(exc) is check


@pytest.mark.parametrize(
    ("failures", "base", "cap", "delay"),
    [
        (0, 0.5, 10, 0.0),
        (1, 0.5, 10, 0.5),
        (2, 0.5, 10, 1.0),
        (3, 0.5, 10, 2.0),
        (5, 0.5, 10, 8.0),
        (6, 0.5, 10, 10.0),
        (10_000, 0.5, 10, 10.0),
        (1, 1.0, 2.0, 1.0),
        (4, 1.0, 2.0, 2.0),
    ],
)
def test_backoff(failures: int, base: float, cap: float, delay: float) -> None:
    assert outage.backoff(failures, base=base, cap=cap) == delay


# Each row: the cause of a step (None: it worked), then what is logged, the consecutive
# failures, the total errors, and the delay before the next try.
RUN = [
    (outage.FORBIDDEN, Log.FAILING, 1, 1, 0.5),
    (outage.FORBIDDEN, Log.NOTHING, 2, 2, 1.0),
    (outage.FORBIDDEN, Log.NOTHING, 3, 3, 2.0),
    (outage.UNREACHABLE, Log.FAILING, 4, 4, 4.0),  # the cause changed: logged again
    (outage.UNREACHABLE, Log.NOTHING, 5, 5, 8.0),
    (None, Log.RECOVERED, 0, 5, 0.0),
    (None, Log.NOTHING, 0, 5, 0.0),
    (outage.DESIGN_MISSING, Log.FAILING, 1, 6, 0.5),
]


def test_a_run_of_failures_logs_each_cause_once_and_the_recovery() -> None:
    state = LoopState("window")
    now = 1000.0
    for cause, logged, failures, errors, delay in RUN:
        if cause is None:
            state, what = outage.succeeded(state)
        else:
            state, what = outage.failed(state, cause, f"because {cause}", now)
        assert (what, state.failures, state.errors, state.delay) == (logged, failures, errors, delay), cause
        assert state.failing is (cause is not None)
        assert state.cause == cause
        now += 1
    # The failing run's start is kept while it lasts (a new cause does not reset it).
    state, _ = outage.failed(state, outage.FORBIDDEN, "m", now + 5)
    assert state.since == now - 1


@pytest.mark.parametrize(("cause", "fix"), [(outage.DESIGN_MISSING, Repair.DESIGN), *[(c, Repair.NONE) for c in outage.CAUSES if c != outage.DESIGN_MISSING]])
def test_only_a_missing_design_document_is_repaired(cause: str, fix: Repair) -> None:
    assert outage.repair(cause) is fix


def test_reason_names_the_loop_the_cause_and_for_how_long() -> None:
    state, _ = outage.failed(LoopState("window"), outage.FORBIDDEN, "after view agenda: Access forbidden", 100.0)
    assert outage.reason(state, 112.4) == "window loop failing: access forbidden by _security for 12s (after view agenda: Access forbidden)"


# -- the store's answers, named at its one boundary (after/store.py::translate) ------------------


def _raised(exc: BaseException) -> AfterError:
    try:
        with translate("t view agenda"):
            raise exc
    except AfterError as out:
        return out
    raise AssertionError("translate let it pass")


def _status(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(None, (), status=status, message="Message")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "cause"),
    [
        (_status(401), CredentialsRefused, outage.CREDENTIALS),
        (_status(403), Forbidden, outage.FORBIDDEN),
        (_status(404), NotFound, outage.MISSING),
        (_status(500), ServerError, outage.SERVER_ERROR),
        (_status(503), ServerError, outage.SERVER_ERROR),
        (json.JSONDecodeError("Expecting value", "<html>", 0), MalformedAnswer, outage.MALFORMED),
        (KeyError("bookmark"), MalformedAnswer, outage.MALFORMED),
        (TypeError("list indices must be integers"), MalformedAnswer, outage.MALFORMED),
        (aiohttp.ServerDisconnectedError(), StoreUnavailable, outage.UNREACHABLE),
        (ConnectionRefusedError(111, "refused"), StoreUnavailable, outage.UNREACHABLE),
        (TimeoutError(), StoreUnavailable, outage.UNREACHABLE),
    ],
)
def test_the_store_names_each_failure_so_that_its_cause_can_be_told(exc: BaseException, kind: type[AfterError], cause: str) -> None:
    out = _raised(exc)
    assert type(out) is kind, out
    assert outage.classify(out) == cause


def test_a_5xx_that_aiocouch_has_no_class_for_is_a_server_error() -> None:
    try:
        raise ValueError("Something went wrong") from _status(500)
    except ValueError as exc:
        assert isinstance(_raised(exc), ServerError)
