"""The scheduling decisions as pure functions of a chosen ``now``: no clock, no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from after import model, timing
from after.errors import InvalidInput, Unprocessable

NOW = datetime(2037, 1, 1, 12, 0, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def task(tid: str, date: datetime, *, status: str = "waiting", priority: int = 0, **extra: Any) -> dict[str, Any]:
    return {"_id": tid, "type": "task", "worker": "w", "job": {"name": "noop"}, "status": status, "date": timing.fmt(date), "priority": priority, **extra}


# -- dates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-22T10:00:00Z", utc(2026, 11, 22, 10)),
        ("2026-11-22T11:00:00+01:00", utc(2026, 11, 22, 10)),
        ("2026-11-22T10:00:00", utc(2026, 11, 22, 10)),
        ("2026-11-22", utc(2026, 11, 22)),
        (1795341600, utc(2026, 11, 22, 10)),
        (1795341600.5, utc(2026, 11, 22, 10) + timedelta(milliseconds=500)),
    ],
)
def test_parse_date_accepts_the_documented_forms(value: Any, expected: datetime) -> None:
    assert timing.parse_date(value) == expected


@pytest.mark.parametrize("value", ["tomorrow", "", None, True, [], "2026-13-01", float("nan")])
def test_parse_date_rejects_other_input_naming_the_field(value: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        timing.parse_date(value, field="expires")
    assert err.value.field == "expires"


def test_stored_dates_sort_as_times() -> None:
    a = timing.fmt(utc(2026, 1, 1, 9, 59, 59) + timedelta(milliseconds=999))
    b = timing.fmt(utc(2026, 1, 1, 10))
    assert a < b and b == "2026-01-01T10:00:00.000Z"


# -- what is due, in which order ----------------------------------------------------------------------


def test_only_due_tasks_fire() -> None:
    tasks = [task("a", NOW - timedelta(seconds=1)), task("b", NOW), task("c", NOW + timedelta(milliseconds=1))]
    fired = [a.task["_id"] for a in timing.plan(NOW, tasks) if a.kind == "fire"]
    assert fired == ["a", "b"]


def test_overdue_first_oldest_due_then_priority() -> None:
    tasks = [
        task("recent-high", NOW - timedelta(seconds=5), priority=10),
        task("old-low", NOW - timedelta(hours=3), priority=0),
        task("older", NOW - timedelta(hours=4), priority=-5),
        task("now", NOW, priority=100),
    ]
    order = [a.task["_id"] for a in timing.plan(NOW, tasks)]
    assert order == ["older", "old-low", "recent-high", "now"]


def test_same_second_higher_priority_first() -> None:
    base = NOW - timedelta(seconds=1)
    tasks = [
        task("low", base + timedelta(milliseconds=100), priority=1),
        task("high", base + timedelta(milliseconds=900), priority=9),
        task("mid", base, priority=5),
    ]
    assert [a.task["_id"] for a in timing.plan(NOW, tasks)] == ["high", "mid", "low"]


def test_cancel_and_lease_recovery_come_before_fires() -> None:
    expired_lease = task("held", NOW, status="scheduled", lease={"until": timing.fmt(NOW - timedelta(seconds=1))})
    live_lease = task("live", NOW, status="scheduled", lease={"until": timing.fmt(NOW + timedelta(seconds=30))})
    tasks = [task("due", NOW - timedelta(seconds=1)), task("stop", NOW, status="cancel"), expired_lease, live_lease]
    plan = [(a.kind, a.task["_id"]) for a in timing.plan(NOW, tasks)]
    assert plan == [("cancel", "stop"), ("recover", "held"), ("fire", "due")]


def test_expired_task_is_not_fired() -> None:
    t = task("x", NOW - timedelta(minutes=5), expires=timing.fmt(NOW - timedelta(minutes=1)))
    (action,) = timing.plan(NOW, [t])
    assert action.kind == "expire" and action.reason == "expired"


# -- misfire policies ---------------------------------------------------------------------------------


def test_misfire_run_runs_however_late() -> None:
    t = task("x", NOW - timedelta(days=3), misfire={"policy": "run", "grace": None})
    assert timing.plan(NOW, [t])[0].kind == "fire"


def test_misfire_skip_within_grace_fires_beyond_grace_misses() -> None:
    within = task("in", NOW - timedelta(seconds=30), misfire={"policy": "skip", "grace": 60})
    beyond = task("out", NOW - timedelta(seconds=61), misfire={"policy": "skip", "grace": 60})
    kinds = {a.task["_id"]: (a.kind, a.reason) for a in timing.plan(NOW, [within, beyond])}
    assert kinds == {"in": ("fire", ""), "out": ("miss", "missed")}


def test_misfire_skip_default_grace_tolerates_a_busy_tick() -> None:
    t = task("x", NOW - timedelta(seconds=timing.DEFAULT_GRACE - 1), misfire={"policy": "skip", "grace": None})
    assert timing.plan(NOW, [t])[0].kind == "fire"


def test_misfire_skip_of_a_cron_task_moves_to_the_next_occurrence() -> None:
    t = task("x", NOW - timedelta(hours=2), cron="0 * * * *", timezone="UTC", misfire={"policy": "skip", "grace": 10})
    (action,) = timing.plan(NOW, [t])
    assert action.kind == "miss" and action.next_date == NOW + timedelta(hours=1)


def test_cron_run_policy_catches_up_each_missed_occurrence() -> None:
    due = NOW - timedelta(hours=3)
    t = task("x", due, cron="0 * * * *", timezone="UTC")
    assert timing.next_after_run(t, started=NOW) == due + timedelta(hours=1)


def test_cron_coalesce_folds_missed_occurrences_into_one_run() -> None:
    t = task("x", NOW - timedelta(hours=3), cron="0 * * * *", timezone="UTC", misfire={"policy": "coalesce", "grace": None})
    assert timing.plan(NOW, [t])[0].kind == "fire"
    assert timing.next_after_run(t, started=NOW + timedelta(seconds=1)) == NOW + timedelta(hours=1)


def test_cron_stops_repeating_at_expires() -> None:
    t = task("x", NOW, cron="0 * * * *", timezone="UTC", expires=timing.fmt(NOW + timedelta(minutes=30)))
    assert timing.next_after_run(t, started=NOW) is None


# -- retries ------------------------------------------------------------------------------------------


def test_fixed_backoff() -> None:
    assert timing.retry_delay({"backoff": "fixed", "delay": 7}, 3, rand=lambda: 0.9) == 7


def test_exponential_backoff_doubles_with_equal_jitter_and_a_cap() -> None:
    retry = {"backoff": "exponential", "delay": 10, "max_delay": 100}
    assert [timing.retry_delay(retry, n, rand=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 50]
    assert [timing.retry_delay(retry, n, rand=lambda: 0.999999) for n in (1, 2)] == pytest.approx([10, 20], rel=1e-5)


def test_attempts_left() -> None:
    assert timing.can_retry({"attempts": 1, "retry": {"max": 1}})
    assert not timing.can_retry({"attempts": 2, "retry": {"max": 1}})
    assert not timing.can_retry({"attempts": 1, "retry": None})


# -- cron and daylight saving -------------------------------------------------------------------------

LISBON = "Europe/Lisbon"
# 2026: clocks go forward on 29 March at 01:00 UTC (01:00 WET -> 02:00 WEST) and back on
# 25 October at 01:00 UTC (02:00 WEST -> 01:00 WET).


def runs(expr: str, start: datetime, count: int, tz: str = LISBON) -> list[datetime]:
    return timing.occurrences(expr, start, tz=tz, count=count)


def test_daily_0230_lisbon_across_spring_forward() -> None:
    got = runs("30 2 * * *", utc(2026, 3, 27, 12), 3)
    assert got == [utc(2026, 3, 28, 2, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 1, 30)]


def test_daily_0230_lisbon_across_fall_back() -> None:
    got = runs("30 2 * * *", utc(2026, 10, 23, 12), 3)
    assert got == [utc(2026, 10, 24, 1, 30), utc(2026, 10, 25, 2, 30), utc(2026, 10, 26, 2, 30)]


def test_fixed_time_in_the_spring_gap_runs_at_the_change() -> None:
    # 01:30 does not exist in Lisbon on 29 March 2026: like Debian's cron, it runs when the
    # clocks go forward, at 02:00 WEST (01:00 UTC).
    got = runs("30 1 * * *", utc(2026, 3, 28, 12), 2)
    assert got == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]


def test_fixed_time_in_the_repeated_hour_runs_once_at_the_first() -> None:
    # 01:30 happens twice on 25 October 2026 (00:30 UTC and 01:30 UTC): once, the first.
    got = runs("30 1 * * *", utc(2026, 10, 24, 12), 2)
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_interval_schedule_follows_real_time_through_the_repeated_hour() -> None:
    got = runs("*/30 * * * *", utc(2026, 10, 24, 23, 59), 6)
    # 00:00 00:30 UTC (01:00, 01:30 WEST), then 01:00 01:30 UTC (01:00, 01:30 WET again), ...
    assert got == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 0),
        utc(2026, 10, 25, 2, 30),
    ]


def test_interval_schedule_skips_the_missing_hour() -> None:
    got = runs("0 * * * *", utc(2026, 3, 28, 23, 30), 3)
    # 00:00 WET = 00:00 UTC, then 02:00 WEST = 01:00 UTC: one hour of real time, no gap.
    assert got == [utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0)]


def test_bad_cron_and_zone_are_unprocessable() -> None:
    with pytest.raises(Unprocessable):
        timing.check_cron("61 * * * *")
    with pytest.raises(Unprocessable):
        timing.zone("Mars/Olympus")


# -- the task document ---------------------------------------------------------------------------------


def test_new_task_defaults_and_history() -> None:
    doc = model.new_task({"worker": "w", "date": "2030-01-01", "job": "noop"}, now=NOW, by="api")
    assert doc["status"] == "waiting" and doc["attempts"] == 0
    assert doc["misfire"] == {"policy": "run", "grace": None}
    assert doc["history"] == [{"status": "waiting", "at": timing.fmt(NOW), "by": "api"}]
    assert doc["_id"].startswith("task:")


def test_cron_task_without_date_is_due_at_its_next_occurrence() -> None:
    doc = model.new_task({"worker": "w", "cron": "0 3 * * *", "timezone": "UTC", "job": "noop"}, now=NOW)
    assert doc["date"] == timing.fmt(utc(2037, 1, 2, 3))


def test_history_is_bounded_and_keeps_creation() -> None:
    doc = model.new_task({"worker": "w", "date": "2030-01-01", "job": "noop"}, now=NOW)
    for i in range(30):
        model.set_status(doc, "reschedule", f"x{i}", NOW, limit=10)
    assert len(doc["history"]) == 10
    assert doc["history"][0]["status"] == "waiting" and doc["history"][-1]["by"] == "x29"


GOOD = {"type": "task", "status": "waiting", "worker": "w", "date": "2030-01-01", "job": {"name": "noop"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, None),
        ({"job": "noop"}, None),  # the REST shorthand is valid in a document too
        ({"retry": 3, "misfire": "skip"}, None),
        ({"type": None}, "type: required"),
        ({"type": "job"}, "type: input should be 'task'"),
        ({"status": "bogus"}, "status: input should be"),
        ({"worker": None}, "worker: required"),
        ({"worker": 5}, "worker: input should be a valid string"),
        ({"date": "soon"}, "date: cannot parse 'soon'"),
        ({"date": None}, "date: required"),
        ({"job": None}, "job: required"),
        ({"job": {"name": 1}}, "job.name: input should be a valid string"),
        ({"job": {"name": "x", "arguments": "a"}}, "job.arguments: input should be a valid list"),
        ({"cron": "nope"}, "cron: not a valid cron expression"),
        ({"cron": "0 0 30 2 *"}, "cron: '0 0 30 2 *' never fires"),
        ({"timeout": 1e12}, "timeout: input should be less than or equal to 2592000"),
        ({"timeout": "5"}, "timeout: input should be a valid number"),
        ({"retry": {"max": -1}}, "retry.max: input should be greater than or equal to 0"),
        ({"attempts": "x"}, "attempts: input should be a valid integer"),
        ({"lease": "mine"}, "lease: input should be a valid dictionary"),
        ({"history": [1]}, "history[0]: input should be a valid dictionary"),
    ],
)
def test_problem_names_what_is_wrong_with_a_direct_document(change: dict[str, Any], message: str | None) -> None:
    doc = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    got = model.problem(doc)
    assert (got is None) if message is None else (got is not None and got.startswith(message)), got


def test_transitions() -> None:
    assert model.allowed(None, "waiting") and not model.allowed(None, "done")
    assert model.allowed("scheduled", "done") and not model.allowed("done", "scheduled")


def test_cron_runs_never_overlap_and_overlap_skip_drops_occurrences_that_fell_during_a_run() -> None:
    due = NOW
    started = NOW + timedelta(seconds=1)
    finished = NOW + timedelta(minutes=12)  # a run of an every-5-minutes task took 12 minutes
    wait = task("w", due, cron="*/5 * * * *", timezone="UTC")
    skip = task("s", due, cron="*/5 * * * *", timezone="UTC", overlap="skip")
    # wait (default): the occurrence that came due during the run (12:05) runs right after it.
    assert timing.next_after_run(wait, started=started, finished=finished) == NOW + timedelta(minutes=5)
    # skip: 12:05 and 12:10 fell during the run; the next is 12:15.
    assert timing.next_after_run(skip, started=started, finished=finished) == NOW + timedelta(minutes=15)


def test_fire_lag_counts_from_when_a_task_could_first_run() -> None:
    """Finding 9: a task posted now with a date in 2020 is not 7 years late."""
    doc = model.new_task({"worker": "w", "date": "2020-01-01", "job": "noop"}, now=NOW)
    assert timing.eligible_at(doc) == NOW
    late = model.new_task({"worker": "w", "date": timing.fmt(NOW + timedelta(hours=1)), "job": "noop"}, now=NOW)
    assert timing.eligible_at(late) == NOW + timedelta(hours=1)  # downtime past its date is real lag
    rescheduled = model.set_status(dict(doc), "reschedule", "api", NOW + timedelta(days=1), limit=50)
    assert timing.eligible_at(rescheduled) == NOW + timedelta(days=1)


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 6 *", "0 0 31 9,11 *", "0 0 30-31 2 *"])
def test_a_cron_that_never_fires_is_unprocessable(expr: str) -> None:
    with pytest.raises(Unprocessable, match="never fires"):
        timing.check_cron(expr)
    assert timing.check_cron("0 0 29 2 *")  # every leap year: fires


@pytest.mark.parametrize(
    ("n", "batch", "first", "chunks"),
    [
        (0, 500, 50, []),
        (10, 500, 50, [(0, 10)]),
        (50, 500, 50, [(0, 50)]),
        (1000, 500, 50, [(0, 50), (50, 550), (550, 1000)]),
        (120, 20, 50, [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100), (100, 120)]),  # never above the batch
        (3, 1, 50, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_claim_chunks(n: int, batch: int, first: int, chunks: list[tuple[int, int]]) -> None:
    assert timing.claim_chunks(n, batch, first) == chunks
