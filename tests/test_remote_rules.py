"""The remote worker rules as tables over data and a chosen clock (after/remote.py):
what a poll delivers, when a session has expired, what a finish report means."""

from __future__ import annotations

from typing import Any

import pytest

from after import remote
from after.remote import Offer, Outcome, Session


def offer(task_id: str, *, delivered: float | None = None, decided: Outcome | bool | None = False) -> Offer:
    o = Offer(doc={"_id": task_id, "date": "2026-12-01T10:00:05Z", "job": {"name": "j"}}, lease=f"l-{task_id}", delivered=delivered)
    if decided is not False:
        o.decision.set_result(decided)  # type: ignore[arg-type]
    return o


@pytest.mark.parametrize(
    ("offers", "now", "limit", "expected"),
    [
        # never delivered: delivered, in claim order, up to the limit
        ([("a", None, False), ("b", None, False), ("c", None, False)], 100.0, 2, ["a", "b"]),
        # delivered lately: not again; delivered more than REDELIVER_AFTER ago: again
        ([("a", 99.0, False), ("b", 100.0 - remote.REDELIVER_AFTER - 0.1, False)], 100.0, 10, ["b"]),
        # accepted (decision None) or discarded (an Outcome): never again
        ([("a", None, None), ("b", 1.0, Outcome("fail")), ("c", None, False)], 100.0, 10, ["c"]),
        ([("a", None, False)], 100.0, 0, []),
    ],
)
async def test_what_a_poll_delivers(offers: list[tuple[str, float | None, Any]], now: float, limit: int, expected: list[str]) -> None:
    made = [offer(i, delivered=d, decided=dec) for i, d, dec in offers]
    assert [o.task_id for o in remote.deliverable(made, now, limit=limit)] == expected


@pytest.mark.parametrize(("seen", "now", "timeout", "gone"), [(100.0, 129.9, 30.0, False), (100.0, 130.1, 30.0, True), (100.0, 100.0, 0.5, False)])
def test_a_session_expires_after_its_timeout_without_a_call(seen: float, now: float, timeout: float, gone: bool) -> None:
    s = Session(id="s", worker="w", host="h", address="a", concurrency=1, connected=0.0, seen=seen, seen_wall=0.0)
    assert remote.expired(s, now, timeout=timeout) is gone


@pytest.mark.parametrize(
    ("body", "kind", "reason", "retryable"),
    [
        ({"status": "done", "result": 3}, "done", None, None),
        ({"status": "canceled"}, "canceled", None, None),
        ({"status": "failed", "error": {"message": "boom"}}, "fail", "failed", True),
        ({"status": "failed", "error": "boom"}, "fail", "failed", True),
        ({"status": "failed", "error": {"message": "bad input", "retryable": False, "reason": "bad_input"}}, "fail", "bad_input", False),
        ({"status": "failed"}, "fail", "failed", True),
        ({"status": "discarded", "error": {"retryable": True}}, "fail", "discarded", False),
    ],
)
def test_what_a_finish_report_means(body: dict[str, Any], kind: str, reason: str | None, retryable: bool | None) -> None:
    out = remote.outcome_of(body)
    assert out.kind == kind
    if reason is None:
        assert out.error is None
    else:
        assert out.error is not None and out.error["reason"] == reason and out.error["retryable"] is retryable and out.error["message"]


@pytest.mark.parametrize(
    ("date", "now", "left"),
    [("2026-12-01T10:00:05Z", 1796119203.5, 1.5), ("2026-12-01T10:00:05Z", 1796119210.0, 0.0), ("not a date", 50.0, 0.0)],
)
def test_when_a_delivered_task_starts(date: str, now: float, left: float) -> None:
    at, start_in = remote.start_at({"date": date}, now)
    assert start_in == left
    if date.startswith("2026"):
        assert at == "2026-12-01T10:00:05.000Z"


def test_the_heartbeat_asked_for_is_a_share_of_the_timeout() -> None:
    assert remote.heartbeat_interval(30.0) == 5.0
    assert remote.heartbeat_interval(1.0) == 0.5
