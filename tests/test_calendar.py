"""after.calendar: excluded days and jitter as pure functions of a task and a chosen time (a fake
clock: every ``now`` is given), and the paths that compute a cron task's next run going through it."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from after import calendar, model, timing
from after.errors import InvalidInput, Unprocessable


def t(text: str) -> datetime:
    return timing.parse_date(text)


def task(cron: str, *, tz: str = "UTC", jitter: float | None = None, exclude: list[str] | None = None, tid: str = "task:cal") -> dict[str, Any]:
    out: dict[str, Any] = {"_id": tid, "cron": cron, "timezone": tz}
    if jitter is not None:
        out["jitter"] = jitter
    if exclude is not None:
        out["exclude"] = exclude
    return out


# -- exclusions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "tz", "exclude", "after", "expected"),
    [
        # a day
        ("0 9 * * *", "UTC", ["2026-12-25"], "2026-12-24T10:00:00Z", "2026-12-26T09:00:00Z"),
        # not excluded: unchanged
        ("0 9 * * *", "UTC", ["2026-12-25"], "2026-12-23T10:00:00Z", "2026-12-24T09:00:00Z"),
        # a range across the year end, inclusive at both ends
        ("0 9 * * *", "UTC", ["2026-12-31/2027-01-01"], "2026-12-30T10:00:00Z", "2027-01-02T09:00:00Z"),
        # overlapping and adjacent items merge into one span
        ("0 9 * * *", "UTC", ["2027-01-03/2027-01-05", "2026-12-31/2027-01-01", "2027-01-02"], "2026-12-30T10:00:00Z", "2027-01-06T09:00:00Z"),
        # the day is the task's zone's: 10:00 in Auckland on Christmas is 21:00 UTC on the 24th
        ("0 10 * * *", "Pacific/Auckland", ["2026-12-25"], "2026-12-23T22:00:00Z", "2026-12-25T21:00:00Z"),
        # every second: the next run after an excluded day is its first second
        ("* * * * * *", "UTC", ["2026-12-02"], "2026-12-02T17:00:00Z", "2026-12-03T00:00:00Z"),
        # every second in New York: its midnight, not UTC's
        ("* * * * * *", "America/New_York", ["2026-12-02"], "2026-12-02T17:00:00Z", "2026-12-03T05:00:00Z"),
        # DST day (spring forward in New York: 02:30 does not exist; Debian runs it at 03:00): excluded
        ("30 2 * * *", "America/New_York", ["2026-03-08"], "2026-03-07T12:00:00Z", "2026-03-09T06:30:00Z"),
        # the same day not excluded runs once, right after the gap
        ("30 2 * * *", "America/New_York", [], "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z"),
        # DST day (fall back: 01:30 happens twice, Debian runs it once): excluded
        ("30 1 * * *", "America/New_York", ["2026-11-01"], "2026-10-31T12:00:00Z", "2026-11-02T06:30:00Z"),
        # a day whose midnight does not exist (Santiago springs forward at 00:00 in September)
        ("* * * * *", "America/Santiago", ["2026-09-05"], "2026-09-05T12:00:00Z", "2026-09-06T04:00:00Z"),
        # a long range is one jump
        ("*/5 * * * *", "UTC", ["2026-01-01/2030-12-31"], "2026-06-01T00:00:00Z", "2031-01-01T00:00:00Z"),
    ],
)
def test_next_nominal_skips_excluded_days(cron: str, tz: str, exclude: list[str], after: str, expected: str) -> None:
    assert calendar.next_nominal(task(cron, tz=tz, exclude=exclude), t(after)) == t(expected)


def test_next_nominal_jumps_ranges_instead_of_stepping() -> None:
    """1000 one-day exclusions in a row of an every-second cron: found at once."""
    start = date(2026, 1, 1)
    items = [(start + timedelta(days=i)).isoformat() for i in range(1000)]
    began = time.perf_counter()
    nxt = calendar.next_nominal(task("* * * * * *", exclude=items), t("2025-12-31T23:59:59Z"))
    assert nxt == t((start + timedelta(days=1000)).isoformat())
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize(
    ("exclude", "cron"),
    [
        (["2026-01-01/2099-12-31"], "0 9 * * *"),
        # every 25 December is excluded for twelve years, and it runs only on 25 December
        ([f"{y}-12-25" for y in range(2026, 2038)], "0 9 25 12 *"),
        (["2026-01-01/9999-12-31"], "* * * * *"),
    ],
)
def test_exclusions_that_leave_no_run_are_refused(exclude: list[str], cron: str) -> None:
    with pytest.raises(Unprocessable) as exc:
        calendar.next_nominal(task(cron, exclude=exclude), t("2026-06-01T00:00:00Z"))
    assert exc.value.field == "exclude"
    with pytest.raises(Unprocessable) as exc:
        model.new_task({"worker": "w", "job": "noop", "cron": cron, "exclude": exclude}, now=t("2026-06-01T00:00:00Z"))
    assert exc.value.field == "exclude" and "no run" in exc.value.message


@pytest.mark.parametrize(
    ("items", "field", "words"),
    [
        (["2026-12-25", "2026-12-32"], "exclude[1]", "not a date"),
        (["2026-12-25/2026-12-24"], "exclude[0]", "ends before it starts"),
        (["25/12/2026"], "exclude[0]", "YYYY-MM-DD"),
        (["2026-12-25/"], "exclude[0]", "YYYY-MM-DD"),
        (["2026-12-25T00:00:00Z"], "exclude[0]", "YYYY-MM-DD"),
    ],
)
def test_malformed_or_reversed_items_are_422_naming_the_item(items: list[str], field: str, words: str) -> None:
    with pytest.raises(Unprocessable) as exc:
        model.new_task({"worker": "w", "job": "noop", "cron": "0 9 * * *", "exclude": items}, now=t("2026-06-01T00:00:00Z"))
    assert exc.value.field == field and words in exc.value.message


@pytest.mark.parametrize(
    ("body", "field", "cls"),
    [
        ({"date": "2027-01-01", "jitter": 5}, "jitter", Unprocessable),
        ({"date": "2027-01-01", "exclude": ["2027-01-01"]}, "exclude", Unprocessable),
        ({"cron": "0 9 * * *", "jitter": 0}, "jitter", InvalidInput),
        ({"cron": "0 9 * * *", "jitter": 86400.5}, "jitter", InvalidInput),
        ({"cron": "0 9 * * *", "jitter": "5"}, "jitter", InvalidInput),
        ({"cron": "0 9 * * *", "exclude": "2027-01-01"}, "exclude", InvalidInput),
        ({"cron": "0 9 * * *", "exclude": ["2027-01-01"] * 1001}, "exclude", InvalidInput),
    ],
)
def test_bad_jitter_or_exclude_names_the_field(body: dict[str, Any], field: str, cls: type[InvalidInput]) -> None:
    with pytest.raises(cls) as exc:
        model.new_task({"worker": "w", "job": "noop", **body}, now=t("2026-06-01T00:00:00Z"))
    assert exc.value.field == field


def test_a_direct_document_with_a_bad_exclusion_is_invalid_naming_it() -> None:
    doc = {"_id": "task:d", "type": "task", "status": "waiting", "worker": "w", "job": "noop", "date": "2027-01-01", "cron": "0 9 * * *"}
    assert model.problem({**doc, "exclude": ["2027-02-30"]}) is not None and "exclude[0]" in str(model.problem({**doc, "exclude": ["2027-02-30"]}))
    assert "jitter" in str(model.problem({**doc, "cron": None, "jitter": 3}))
    assert model.problem({**doc, "exclude": ["2027-01-01/2027-01-31"], "jitter": 60, "occurrence": "2027-01-01T09:00:00Z"}) is None


# -- jitter -----------------------------------------------------------------------------------


def test_offset_is_the_same_across_calls_below_jitter_and_differs_per_occurrence() -> None:
    nominals = [t("2026-12-02T00:00:00Z") + timedelta(minutes=5 * i) for i in range(200)]
    offsets = [calendar.offset("task:a", n, 300) for n in nominals]
    assert offsets == [calendar.offset("task:a", n, 300) for n in nominals]  # deterministic: every daemon agrees
    assert all(0 <= o < 300 for o in offsets)
    assert len(set(offsets)) > 190  # spread, not one delay for all
    assert min(offsets) < 30 and max(offsets) > 270
    assert [calendar.offset("task:b", n, 300) for n in nominals] != offsets  # and per task
    assert all(timedelta(seconds=o).microseconds % 1000 == 0 for o in offsets)  # milliseconds, as dates are stored
    assert calendar.offset("task:a", nominals[0], 0) == 0.0


@pytest.mark.parametrize("jitter", [0.001, 0.5, 1, 59.999, 86400])
def test_offset_stays_below_jitter_at_any_size(jitter: float) -> None:
    for i in range(500):
        assert 0 <= calendar.offset(f"task:{i}", t("2026-12-02T00:00:00Z"), jitter) < jitter


def test_place_and_upcoming_show_jittered_dates_of_nominal_occurrences() -> None:
    tk = task("0 9 * * *", jitter=600, exclude=["2026-12-03"])
    runs = calendar.upcoming(tk, t("2026-12-02T00:00:00Z"), 3)
    assert [p.occurrence for p in runs] == [t("2026-12-02T09:00:00Z"), t("2026-12-04T09:00:00Z"), t("2026-12-05T09:00:00Z")]
    for p in runs:
        assert p.date - p.occurrence == timedelta(seconds=calendar.offset("task:cal", p.occurrence, 600))
    assert calendar.place(task("0 9 * * *"), t("2026-12-02T09:00:00Z")).date == t("2026-12-02T09:00:00Z")


def test_nominal_of_uses_occurrence_only_while_date_is_its_placement() -> None:
    tk = task("0 9 * * *", jitter=600)
    placed = calendar.place(tk, t("2026-12-02T09:00:00Z"))
    doc = {**tk, **placed.fields()}
    assert calendar.nominal_of(doc) == t("2026-12-02T09:00:00Z")
    # a client's reschedule moved the date past the next occurrence: the stale occurrence is not used
    assert calendar.nominal_of({**doc, "date": "2026-12-10T12:00:00Z"}) == t("2026-12-10T12:00:00Z")
    # a retry (or a rerun) before the next occurrence is the same occurrence
    assert calendar.nominal_of({**doc, "date": "2026-12-02T09:30:00Z"}) == t("2026-12-02T09:00:00Z")
    assert calendar.nominal_of({**doc, "date": "2026-12-03T08:59:59Z"}) == t("2026-12-02T09:00:00Z")
    assert calendar.nominal_of({**doc, "date": "2026-12-03T09:00:00Z"}) == t("2026-12-03T09:00:00Z")
    # and a date before its occurrence does not stand for it
    assert calendar.nominal_of({**doc, "date": "2026-12-02T08:00:00Z"}) == t("2026-12-02T08:00:00Z")
    assert calendar.nominal_of({**doc, "occurrence": "junk"}) == placed.date
    assert calendar.nominal_of({**tk, "date": "2026-12-10T12:00:00Z"}) == t("2026-12-10T12:00:00Z")


def test_create_stores_the_jittered_date_and_the_nominal_occurrence() -> None:
    now = t("2026-12-02T17:00:00Z")
    doc = model.new_task({"id": "j", "worker": "w", "job": "noop", "cron": "0 9 * * *", "jitter": 3600, "exclude": ["2026-12-03"]}, now=now)
    assert doc["occurrence"] == "2026-12-04T09:00:00.000Z"
    assert t(doc["date"]) == t(doc["occurrence"]) + timedelta(seconds=calendar.offset("task:j", t(doc["occurrence"]), 3600))
    assert doc["jitter"] == 3600 and doc["exclude"] == ["2026-12-03"]
    # a given first date is kept as it is (it is no cron occurrence)
    given = model.new_task({"worker": "w", "job": "noop", "cron": "0 9 * * *", "jitter": 60, "date": "2026-12-02T18:00:00Z"}, now=now)
    assert given["date"] == "2026-12-02T18:00:00.000Z" and "occurrence" not in given


# -- the paths that compute a next run go through the calendar -----------------------------------


def stored(**fields: Any) -> dict[str, Any]:
    base = {"_id": "task:p", "type": "task", "status": "scheduled", "worker": "w", "job": {"name": "noop"}, "timezone": "UTC"}
    return {**base, **fields}


def test_next_after_run_is_nominal_from_the_nominal_occurrence_and_skips_excluded_days() -> None:
    tk = stored(cron="0 9 * * *", jitter=1800, exclude=["2026-12-03/2026-12-04"])
    doc = {**tk, **calendar.place(tk, t("2026-12-02T09:00:00Z")).fields()}
    started = timing.parse_date(doc["date"])
    nxt = timing.next_after_run(doc, started=started, finished=started + timedelta(seconds=1))
    assert nxt == t("2026-12-05T09:00:00Z")
    placed = calendar.place(doc, nxt)
    assert placed.date >= nxt and placed.date - nxt < timedelta(seconds=1800)


def test_next_after_run_catches_up_on_nominal_occurrences_with_jitter() -> None:
    """misfire ``run``: the occurrence after the one just run, even when its jittered date is already past."""
    tk = stored(cron="*/10 * * * * *", jitter=9)
    doc = {**tk, **calendar.place(tk, t("2026-12-02T09:00:00Z")).fields()}
    late = t("2026-12-02T09:00:35Z")
    assert timing.next_after_run(doc, started=late, finished=late) == t("2026-12-02T09:00:10Z")
    # coalesce: from the actual start
    co = {**doc, "misfire": {"policy": "coalesce", "grace": None}}
    assert timing.next_after_run(co, started=late, finished=late) == t("2026-12-02T09:00:40Z")


def test_a_misfire_skip_goes_to_the_next_non_excluded_nominal_occurrence() -> None:
    now = t("2026-12-02T12:00:00Z")
    doc = stored(status="waiting", cron="0 9 * * *", jitter=60, exclude=["2026-12-03"], date="2026-12-02T09:00:30Z", misfire={"policy": "skip", "grace": 10})
    (action,) = timing.plan(now, [doc])
    assert action.kind == "miss" and action.next_date == t("2026-12-04T09:00:00Z")


def test_recovered_and_finished_cron_tasks_get_placed_dates() -> None:
    """The runner's and the scheduler's hooks: ``calendar.place(...).fields()`` sets both fields."""
    doc = stored(cron="0 9 * * *", jitter=600)
    nxt = timing.next_after_run({**doc, "date": "2026-12-02T09:00:00Z"}, started=t("2026-12-02T09:00:01Z"))
    assert nxt is not None
    fields = calendar.place(doc, nxt).fields()
    assert fields["occurrence"] == "2026-12-03T09:00:00.000Z"
    assert t(fields["date"]) - t(fields["occurrence"]) == timedelta(seconds=calendar.offset("task:p", nxt, 600))


def test_a_jobs_context_names_the_nominal_occurrence() -> None:
    from after.jobs import TaskContext

    doc = stored(cron="0 9 * * *", jitter=600)
    doc.update(calendar.place(doc, t("2026-12-02T09:00:00Z")).fields())
    assert TaskContext(task=doc, worker="w").occurrence == t("2026-12-02T09:00:00Z")
    assert TaskContext(task=stored(date="2026-12-02T09:00:00Z"), worker="w").occurrence is None


def test_a_retried_occurrence_keeps_its_occurrence_and_the_next_run_follows_it() -> None:
    """misfire ``run``: a run retried 20 minutes later is still the 09:00 occurrence; after
    it, the next is the 10:00 one (not the first after the retry)."""
    tk = stored(cron="0 * * * *", jitter=60, exclude=["2026-12-03"])
    doc = {**tk, **calendar.place(tk, t("2026-12-02T09:00:00Z")).fields(), "date": "2026-12-02T09:20:00.000Z"}
    assert calendar.run_fields(doc) == {"occurrence": "2026-12-02T09:00:00.000Z"}
    assert timing.next_after_run(doc, started=t("2026-12-02T09:20:00Z")) == t("2026-12-02T10:00:00Z")
    last = {**doc, **calendar.place(tk, t("2026-12-02T23:00:00Z")).fields()}
    assert timing.next_after_run(last, started=t("2026-12-02T23:00:30Z")) == t("2026-12-04T00:00:00Z")
