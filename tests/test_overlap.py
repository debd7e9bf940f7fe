"""Overlap policies and backfill ranges as pure functions of documents and a chosen ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from after import model, occurrences, overlap, schema, timing
from after.errors import InvalidInput, Unprocessable

NOW = datetime(2037, 1, 1, 12, 0, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def cron_task(**extra: Any) -> dict[str, Any]:
    doc = {
        "_id": "task:p",
        "_rev": "3-a",
        "type": "task",
        "worker": "w",
        "job": {"name": "noop", "arguments": [], "kwargs": {}},
        "cron": "0 * * * *",
        "status": "waiting",
        "date": timing.fmt(NOW),
        "history": [],
    }
    doc.update(extra)
    return doc


def child(parent: dict[str, Any], at: datetime, status: str, **extra: Any) -> dict[str, Any]:
    doc = overlap.child_doc(parent, at, now=NOW, by="d", backfill=bool(extra.pop("backfilled", False)))
    doc.update(status=status, _rev="2-c", **extra)
    return doc


def step(parent: dict[str, Any], children: list[dict[str, Any]] = [], *, now: datetime = NOW, room: int = 100) -> overlap.Step:  # noqa: B006
    return overlap.step(parent, children, now=now, by="d", limit=50, runs_limit=100, room=room)


# -- which occurrences a range yields -----------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "tz", "start", "end", "expected"),
    [
        # inclusive at both ends, oldest first
        ("0 * * * *", None, utc(2026, 1, 1, 0), utc(2026, 1, 1, 3), [utc(2026, 1, 1, h) for h in range(4)]),
        ("0 * * * *", None, utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 2, 59, 59), [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
        # an empty range, and a one-instant range
        ("0 * * * *", None, utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 0, 50), []),
        ("0 * * * *", None, utc(2026, 1, 1, 5), utc(2026, 1, 1, 5), [utc(2026, 1, 1, 5)]),
        # the task's time zone: 09:00 in Lisbon's summer is 08:00 UTC
        ("0 9 * * *", "Europe/Lisbon", utc(2026, 7, 1), utc(2026, 7, 3), [utc(2026, 7, 1, 8), utc(2026, 7, 2, 8)]),
    ],
)
def test_occurrences_between(cron: str, tz: str | None, start: datetime, end: datetime, expected: list[datetime]) -> None:
    task = cron_task(cron=cron, timezone=tz)
    assert overlap.occurrences_between(task, start, end) == expected


def test_occurrences_between_is_bounded_and_refuses_a_reversed_range() -> None:
    task = cron_task(cron="* * * * *")
    assert len(overlap.occurrences_between(task, utc(2026, 1, 1), utc(2026, 1, 1) + timedelta(minutes=999))) == 1000
    with pytest.raises(Unprocessable) as err:
        overlap.occurrences_between(task, utc(2026, 1, 1), utc(2026, 1, 1) + timedelta(minutes=1000))
    assert err.value.field == "to" and "1000" in err.value.message
    with pytest.raises(Unprocessable) as err:
        overlap.occurrences_between(task, utc(2026, 1, 2), utc(2026, 1, 1))
    assert err.value.field == "to"
    with pytest.raises(InvalidInput):
        overlap.occurrences_between(cron_task(cron=None), utc(2026, 1, 1), utc(2026, 1, 2))


def test_merge_backfill_deduplicates_sorts_and_bounds() -> None:
    task = cron_task(backfill=[timing.fmt(utc(2026, 1, 1, 2))])
    merged = overlap.merge_backfill(task, [utc(2026, 1, 1, 3), utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)])
    assert merged == [timing.fmt(utc(2026, 1, 1, h)) for h in (1, 2, 3)]
    big = cron_task(backfill=[timing.fmt(utc(2026, 1, 1) + timedelta(minutes=i)) for i in range(1000)])
    with pytest.raises(Unprocessable):
        overlap.merge_backfill(big, [utc(2027, 1, 1)])


def test_child_ids_are_deterministic() -> None:
    assert overlap.child_id("task:p", utc(2026, 1, 1)) == "task:p@1767225600"
    c = overlap.child_doc(cron_task(timeout=5.0, retry={"max": 1}), utc(2026, 1, 1), now=NOW, by="d", backfill=True)
    assert c["_id"] == "task:p@1767225600" and c["parent"] == "task:p" and c["occurrence"] == "2026-01-01T00:00:00.000Z"
    assert "cron" not in c and c["timeout"] == 5.0 and c["retry"] == {"max": 1} and c["backfilled"] is True
    schema.stored(c)  # a valid stored task
    model.normalized(c)


# -- replace -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "now", "due"),
    [
        ({"overlap": "replace", "status": "scheduled"}, NOW + timedelta(hours=1), NOW + timedelta(hours=1)),
        ({"overlap": "replace", "status": "schedule"}, NOW + timedelta(hours=2), NOW + timedelta(hours=1)),
        # not yet: the next occurrence has not come
        ({"overlap": "replace", "status": "scheduled"}, NOW + timedelta(minutes=59), None),
        # not running, not replace, asked already, a one-shot task
        ({"overlap": "replace", "status": "waiting"}, NOW + timedelta(hours=1), None),
        ({"overlap": "wait", "status": "scheduled"}, NOW + timedelta(hours=1), None),
        ({"status": "scheduled"}, NOW + timedelta(hours=1), None),
        ({"overlap": "replace", "status": "scheduled", "replacing": {"occurrence": "x"}}, NOW + timedelta(hours=1), None),
        ({"overlap": "replace", "status": "scheduled", "cron": None}, NOW + timedelta(hours=1), None),
    ],
)
def test_replace_due(extra: dict[str, Any], now: datetime, due: datetime | None) -> None:
    assert overlap.replace_due(cron_task(**extra), now) == due


def test_replace_intent_then_its_acknowledgment_is_the_replaced_run() -> None:
    running = cron_task(overlap="replace", status="scheduled", started=timing.fmt(NOW), lease={"id": "l", "daemon": "d", "until": "x"}, attempts=1)
    later = NOW + timedelta(hours=1, seconds=1)
    intent = overlap.replace_intent(running, NOW + timedelta(hours=1), by="d", now=later, limit=50)
    assert intent["status"] == "cancel" and intent["replacing"]["occurrence"] == timing.fmt(NOW + timedelta(hours=1))
    acknowledged = model.set_status(dict(intent), model.CANCELED, "worker:w", later, limit=50)
    out = occurrences.settle(acknowledged, by="worker:w", now=later, limit=50, runs_limit=100)
    assert out["status"] == "reschedule" and out["date"] == timing.fmt(NOW + timedelta(hours=1))
    assert "replacing" not in out and "lease" not in out and out["attempts"] == 0
    assert out["runs"][-1] == {"date": timing.fmt(NOW), "started": timing.fmt(NOW), "finished": timing.fmt(later), "status": "replaced", "by": "d"}


def test_a_plain_cancel_is_left_as_it_is() -> None:
    doc = model.set_status(cron_task(overlap="replace"), model.CANCELED, "w", NOW, limit=50)
    assert occurrences.settle(dict(doc), by="w", now=NOW, limit=50, runs_limit=100) == doc


def test_a_run_that_ended_as_it_was_replaced_keeps_its_own_outcome() -> None:
    marker = {"occurrence": timing.fmt(NOW + timedelta(hours=1)), "by": "d"}
    doc = cron_task(status="canceled", replacing=marker, runs=[{"date": timing.fmt(NOW), "status": "done"}])
    out = overlap.as_replaced(doc, by="w", now=NOW, limit=50, runs_limit=100)
    assert [r["status"] for r in out["runs"]] == ["done"] and out["status"] == "reschedule"


# -- allow -----------------------------------------------------------------------------------------


def test_allow_spawns_the_due_occurrence_and_moves_on() -> None:
    parent = cron_task(overlap="allow")
    plan = step(parent)
    assert [c["_id"] for c in plan.spawn] == [overlap.child_id("task:p", NOW)]
    assert plan.parent is not None and plan.parent["date"] == timing.fmt(NOW + timedelta(hours=1)) and plan.parent["status"] == "reschedule"


def test_allow_with_a_child_running_still_spawns_the_next_one() -> None:
    parent = cron_task(overlap="allow")
    running = child(parent, NOW - timedelta(hours=1), "scheduled")
    plan = step(parent, [running])
    assert len(plan.spawn) == 1 and plan.remove == []


def test_allow_spawned_already_moves_on_without_spawning_again() -> None:
    parent = cron_task(overlap="allow")
    plan = step(parent, [child(parent, NOW, "waiting")])
    assert plan.spawn == [] and plan.parent is not None and plan.parent["date"] == timing.fmt(NOW + timedelta(hours=1))


def test_allow_is_bounded_by_live_children() -> None:
    parent = cron_task(overlap="allow")
    live = [child(parent, NOW - timedelta(hours=i + 1), "scheduled") for i in range(overlap.MAX_LIVE_CHILDREN)]
    plan = step(parent, live)
    assert plan.spawn == [] and plan.parent is None  # waits: due again when one ends
    assert step(parent, room=0).spawn == []


def test_allow_not_due_yet_does_nothing() -> None:
    assert step(cron_task(overlap="allow"), now=NOW - timedelta(seconds=1)) == overlap.Step()


def test_finished_children_are_recorded_once_then_removed() -> None:
    parent = cron_task(overlap="allow", date=timing.fmt(NOW + timedelta(hours=1)))
    ended = child(parent, NOW - timedelta(hours=1), "done", started="s", finished="f")
    plan = step(parent, [ended])
    assert plan.parent is not None and plan.remove == [ended]
    run = plan.parent["runs"][-1]
    assert run["id"] == ended["_id"] and run["status"] == "done" and run["occurrence"] == ended["occurrence"]
    again = step(plan.parent, [ended])  # the removal was lost: not recorded twice
    assert again.parent is None and again.remove == [ended]


# -- backfill ---------------------------------------------------------------------------------------------


def hours(*hs: int) -> list[str]:
    return [timing.fmt(utc(2026, 1, 1, h)) for h in hs]


@pytest.mark.parametrize("policy", ["wait", "skip", "replace", None])
def test_backfill_runs_one_at_a_time_oldest_first(policy: str | None) -> None:
    parent = cron_task(overlap=policy, date=timing.fmt(NOW + timedelta(hours=1)), backfill=hours(3, 1, 2))
    plan = step(parent)
    assert [c["occurrence"] for c in plan.spawn] == hours(1)
    assert plan.parent is not None and plan.parent["backfill"] == hours(2, 3)
    running = [dict(plan.spawn[0], status="scheduled", _rev="1-x")]
    assert step(plan.parent, running).spawn == []
    done = [dict(plan.spawn[0], status="done", _rev="3-x")]
    nxt = step(plan.parent, done)
    assert [c["occurrence"] for c in nxt.spawn] == hours(2) and nxt.parent is not None and nxt.parent["runs"][-1]["backfill"] is True


def test_backfill_with_allow_runs_concurrently_within_the_bounds() -> None:
    parent = cron_task(overlap="allow", date=timing.fmt(NOW + timedelta(hours=1)), backfill=hours(*range(10)))
    assert len(step(parent).spawn) == 10
    assert len(step(parent, room=4).spawn) == 4


def test_backfill_spawned_already_is_dropped_from_pending() -> None:
    parent = cron_task(date=timing.fmt(NOW + timedelta(hours=1)), backfill=hours(1, 2))
    plan = step(parent, [child(parent, utc(2026, 1, 1, 1), "scheduled", backfilled=True)])
    assert plan.spawn == [] and plan.parent is not None and plan.parent["backfill"] == hours(2)


def test_a_finished_task_drops_its_pending_backfill() -> None:
    parent = cron_task(status="canceled", backfill=hours(1, 2))
    plan = step(parent)
    assert plan.spawn == [] and plan.parent is not None and plan.parent["backfill"] == []


# -- the schema ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["wait", "skip", "replace", "allow"])
def test_overlap_accepts_the_four_policies(value: str) -> None:
    fields = schema.task_input({"worker": "w", "job": "x", "cron": "* * * * *", "overlap": value})
    assert fields.overlap == value


def test_overlap_refuses_others_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        schema.task_input({"worker": "w", "job": "x", "cron": "* * * * *", "overlap": "buffer"})
    assert err.value.field == "overlap"


def test_a_direct_document_with_a_bad_backfill_is_invalid() -> None:
    with pytest.raises(InvalidInput) as err:
        model.normalized(cron_task(backfill="yesterday"))
    assert err.value.field == "backfill"


def test_ctx_occurrence() -> None:
    assert occurrences.occurrence_of({"occurrence": "2026-01-01T00:00:00Z"}) == utc(2026, 1, 1)
    assert occurrences.occurrence_of({"cron": "* * * * *", "date": "2026-01-01T00:01:00Z"}) == utc(2026, 1, 1, 0, 1)
    assert occurrences.occurrence_of({"date": "2026-01-01T00:01:00Z"}) is None


def test_a_canceled_task_cancels_its_unfinished_children() -> None:
    parent = cron_task(overlap="allow", status="canceled")
    kids = [child(parent, NOW - timedelta(hours=h), status) for h, status in ((3, "scheduled"), (2, "waiting"), (1, "done"))]
    plan = step(parent, kids)
    assert sorted(c["_id"] for c in plan.cancel) == sorted(k["_id"] for k in kids[:2])
    assert all(c["status"] == "cancel" for c in plan.cancel) and plan.spawn == []
    assert step(cron_task(overlap="allow"), kids[:2], now=NOW - timedelta(seconds=1)).cancel == []


def test_allow_spawns_an_occurrence_due_within_the_claim_ahead() -> None:
    parent = cron_task(overlap="allow")
    early = NOW - timedelta(seconds=1.5)
    assert step(parent, now=early).spawn == []
    plan = overlap.step(parent, [], now=early, by="d", limit=50, runs_limit=100, ahead=2.0)
    assert [c["date"] for c in plan.spawn] == [timing.fmt(NOW)]  # due at its occurrence, claimed ahead


def test_pending_entries_in_other_date_forms_run_in_time_order() -> None:
    task = cron_task(backfill=["2026-01-02T00:00:00Z", "2026-01-01T12:00:00+00:00", "2026-01-01T00:00:00.000Z"])
    assert [timing.parse_date(v) for v in overlap.pending(task)] == [utc(2026, 1, 1), utc(2026, 1, 1, 12), utc(2026, 1, 2)]
    assert overlap.merge_backfill(task, [utc(2026, 1, 2)]) == [timing.fmt(d) for d in (utc(2026, 1, 1), utc(2026, 1, 1, 12), utc(2026, 1, 2))]


def test_the_remote_client_s_ctx_occurrence() -> None:
    from after.client.jobs import Context

    assert Context({"id": "t", "task": {"occurrence": "2026-01-01T00:00:00.000Z"}}).occurrence == utc(2026, 1, 1)
    assert Context({"id": "t", "task": {"cron": "* * * * *", "date": "2026-01-01T00:01:00.000Z"}}).occurrence == utc(2026, 1, 1, 0, 1)
    assert Context({"id": "t", "task": {"date": "2026-01-01T00:01:00.000Z"}}).occurrence is None


# -- with the calendar (jitter, excluded days: after.calendar) ---------------------------------


def test_a_backfill_range_has_no_occurrence_on_an_excluded_day() -> None:
    task = cron_task(cron="0 9 * * *", exclude=["2026-01-02", "2026-01-04/2026-01-05"])
    got = overlap.occurrences_between(task, utc(2026, 1, 1), utc(2026, 1, 6, 23))
    assert got == [utc(2026, 1, 1, 9), utc(2026, 1, 3, 9), utc(2026, 1, 6, 9)]


def test_replace_comes_at_the_next_occurrences_jittered_time_and_not_on_an_excluded_day() -> None:
    from after import calendar

    nominal = NOW
    base = cron_task(overlap="replace", status="scheduled", jitter=600.0, exclude=["2037-01-02"], cron="0 12 * * *")
    base.update(calendar.place(base, nominal).fields())
    at = overlap.replace_at(base)
    want = calendar.place(base, utc(2037, 1, 3, 12))  # the 2nd is excluded
    assert at == want.date and want.occurrence <= at < want.occurrence + timedelta(seconds=600)
    intent = overlap.replace_intent(base, at, by="d", now=at, limit=50)
    assert intent["replacing"]["nominal"] == timing.fmt(utc(2037, 1, 3, 12))
    acknowledged = model.set_status(dict(intent), model.CANCELED, "worker:w", at, limit=50)
    out = overlap.as_replaced(acknowledged, by="w", now=at, limit=50, runs_limit=100)
    assert out["date"] == timing.fmt(at) and out["occurrence"] == timing.fmt(utc(2037, 1, 3, 12))


def test_allow_spawns_a_jittered_child_for_the_nominal_occurrence_and_places_the_next() -> None:
    from after import calendar

    parent = cron_task(overlap="allow", jitter=900.0)
    parent.update(calendar.place(parent, NOW).fields())
    due = timing.parse_date(parent["date"])
    plan = step(parent, now=due)
    (kid,) = plan.spawn
    assert kid["occurrence"] == timing.fmt(NOW) and kid["date"] == parent["date"]
    nxt = calendar.place(parent, NOW + timedelta(hours=1))
    assert plan.parent is not None and plan.parent["date"] == timing.fmt(nxt.date) and plan.parent["occurrence"] == timing.fmt(nxt.occurrence)


def test_an_allow_task_s_id_must_leave_room_for_its_children_s_ids() -> None:
    base = {"worker": "w", "job": "x", "cron": "* * * * *", "overlap": "allow"}
    schema.task_input({**base, "id": "a" * 183})  # task: + 183 + @<epoch> fits in 200
    with pytest.raises(Unprocessable) as err:
        schema.task_input({**base, "id": "a" * 184})
    assert err.value.field == "id" and "188" in err.value.message
    schema.task_input({**base, "overlap": "wait", "id": "a" * 190})  # no children: the id's own bound
