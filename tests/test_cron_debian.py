"""Cron runs exactly when Debian's cron would run the same crontab line.

The reference is ``tests/debian_cron.py``, a model of Debian's ``entry.c`` and ``cron.c``
(its own parser and minute clock, no croniter). The model itself is checked against
cronsim (a library that follows Debian's day rules) where no offset changes. The
differential run is seeded; ``AFTER_TEST_CRON_FULL=1`` runs the large version (356
expressions, 9 starts around every change of 2026-2027, ten runs from each: 82,592
sequences; ``pytest -n 2 --timeout 0 tests/test_cron_debian.py``).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import debian_cron
import pytest
from cronsim import CronSim, CronSimError

from after import timing
from after.errors import Unprocessable

FULL = os.environ.get("AFTER_TEST_CRON_FULL") == "1"

ZONES = [
    "UTC",
    "Europe/Lisbon",
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute shift
    "America/Santiago",  # its gap is at midnight
    "Asia/Kolkata",
    "Pacific/Chatham",  # changes at 02:45 / 03:45
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- the expressions --------------------------------------------------------------------------------


def _part(rng: random.Random, low: int, high: int, near: list[int], names: list[str] | None = None) -> str:
    """One field of Debian's grammar: ``*``, ``*/S``, ``N``, ``N-M`` (often ``N-N``),
    ``N-M/S``, lists (some starting with ``*``), names in any case where Debian takes them."""

    def number() -> int:
        return rng.choice(near) if near and rng.random() < 0.6 else rng.randint(low, high)

    def shown(v: int) -> str:
        if names and rng.random() < 0.3:
            name = names[v - low]
            return rng.choice([name, name.upper(), name.capitalize()])
        return str(v)

    kind = rng.random()
    if kind < 0.25:
        return "*"
    if kind < 0.33:
        return f"*/{rng.choice([2, 3, 5, 7, 10, 15, 20, 30, 45])}"
    if kind < 0.36:
        return f"*/{rng.choice([2, 3, 7])},{shown(number())}"  # a list that starts with *
    a = number()
    if kind < 0.6:
        return shown(a)
    b = rng.randint(a, min(high, a + rng.choice([0, 0, 1, 2, 5, 30])))
    if kind < 0.75:
        return f"{shown(a)}-{shown(b)}"
    if kind < 0.85:
        return f"{shown(a)}-{shown(b)}/{rng.choice([1, 2, 3, 10, 15])}"
    return ",".join(sorted({shown(number()) for _ in range(rng.randint(2, 3))}))


def expressions(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = list(debian_cron.SPECIALS)
    while len(out) < n:
        minute = _part(rng, 0, 59, [0, 15, 30, 45, 59])
        hour = _part(rng, 0, 23, [0, 1, 2, 3, 4])
        dom = "*" if rng.random() < 0.6 else _part(rng, 1, 31, [1, 15, 25, 29, 31])
        month = "*" if rng.random() < 0.7 else _part(rng, 1, 12, [3, 4, 9, 10, 11], debian_cron.MONTHS)
        dow = "*" if rng.random() < 0.6 else _part(rng, 0, 7, [0, 6, 7], debian_cron.DAYS)
        out.append(f"{minute} {hour} {dom} {month} {dow}")
    return out


def starts(zone: str, *, every: int) -> list[datetime]:
    """Instants around each offset change of 2026-2027 in ``zone``, and a few others."""
    out = [utc(2026, 1, 1), utc(2026, 6, 15, 12, 7)]
    for minute, _ in debian_cron._changes(zone, 2026, 2027)[1::every]:
        at = datetime.fromtimestamp(minute * 60, UTC)
        if at.year >= 2026:
            out += [at + timedelta(minutes=m) for m in (-1441, -181, -61, -30, -1, 0, 29, 59, 61)]
    return out


def _after(expr: str, zone: str, start: datetime, count: int) -> list[datetime] | str:
    try:
        return timing.occurrences(expr, start, tz=zone, count=count)
    except Unprocessable as exc:
        return f"refused: {exc}"


YEARS = 12  # how far the model looks


def _agree(ours: list[datetime] | str, theirs: list[datetime], start: datetime, count: int) -> bool:
    """After's runs are the model's; where the model found fewer than ``count`` in its
    years, After's runs within them are the model's and the rest come later."""
    if isinstance(ours, str):
        return not theirs  # refused as never firing: the model found no run either
    if len(theirs) == count:
        return ours == theirs
    window = start + timedelta(days=YEARS * 365)
    return ours[: len(theirs)] == theirs and (len(ours) == len(theirs) or ours[len(theirs)] >= window)


@pytest.mark.parametrize("zone", ZONES)
def test_after_runs_every_line_when_debian_cron_runs_it(zone: str) -> None:
    exprs = expressions(13, 356 if FULL else 90)
    count = 10 if FULL else 4
    diffs: list[str] = []
    checked = 0
    points = starts(zone, every=1 if FULL else 2)
    rng = random.Random(zone)
    for expr in exprs:
        for start in points if FULL else rng.sample(points, min(3, len(points))):
            ours, theirs = _after(expr, zone, start, count), debian_cron.runs(expr, zone, start, count, years=YEARS)
            checked += 1
            if not _agree(ours, theirs, start, count):
                diffs.append(f"{expr!r} {zone} from {timing.fmt(start)}:\n  after  {_show(ours)}\n  debian {_show(theirs)}")
    assert checked >= len(exprs) * min(3, len(points))
    assert not diffs, f"{len(diffs)} of {checked} sequences differ; first:\n" + "\n".join(diffs[:8])


def _show(runs: list[datetime] | str) -> str:
    return runs if isinstance(runs, str) else " ".join(timing.fmt(r)[:16] for r in runs)


def cronsim_departs(expr: str) -> bool:
    """Where cronsim 2.8 itself departs from Debian: it reads an equal-bound range with a
    step (``15-15/2``, ``sun-sun/1``) as ``15-<last>/2``, where Debian's get_range sets 15
    alone."""
    names = [None, None, None, debian_cron.MONTHS, debian_cron.DAYS]
    for field, names_of in zip(expr.split(), names, strict=True):
        for item in field.split(","):
            rng, slash, _ = item.partition("/")
            first, dash, last = rng.partition("-")
            if slash and dash and first != "*":
                low = 1 if names_of is debian_cron.MONTHS else 0
                if debian_cron._number(first, low, names_of) == debian_cron._number(last, low, names_of):
                    return True
    return False


def test_the_model_agrees_with_cronsim_where_no_offset_changes() -> None:
    """The reference is checked too: cronsim follows Debian's grammar and day rule."""
    start = utc(2026, 1, 1)
    compared = 0
    for expr in expressions(7, 400 if FULL else 200):
        if expr.startswith("@") or cronsim_departs(expr):
            continue
        compared += 1
        ours = debian_cron.runs(expr, "UTC", start, 6)
        try:
            it = CronSim(expr, start)
        except CronSimError:  # cronsim refuses a line that never fires, and a reversed range
            continue
        theirs = [next(it) for _ in range(len(ours))]
        assert ours == theirs, expr
    assert compared > 150 if not FULL else compared > 300


def test_where_cronsim_departs_from_debian_the_model_follows_debian() -> None:
    start = utc(2026, 1, 1)
    assert debian_cron.runs("0 15-15/2 * * *", "UTC", start, 2) == [utc(2026, 1, 1, 15), utc(2026, 1, 2, 15)]
    it = CronSim("0 15-15/2 * * *", start)
    assert [next(it) for _ in range(2)] == [utc(2026, 1, 1, 15), utc(2026, 1, 1, 17)]
    assert debian_cron.runs("0 9 * * sun-sun/1", "UTC", start, 2) == [utc(2026, 1, 4, 9), utc(2026, 1, 11, 9)]
    it = CronSim("0 9 * * sun-sun/1", start)
    assert [next(it) for _ in range(2)] == [utc(2026, 1, 1, 9), utc(2026, 1, 2, 9)]


# -- one table row for each way After used to differ (issue 13), as Debian runs it -------------------

NY, LISBON, LORD_HOWE, SANTIAGO = "America/New_York", "Europe/Lisbon", "Australia/Lord_Howe", "America/Santiago"

CASES = [
    # 1. an equal-bound range is that one value, not the whole field
    ("0 0 * * 5-5", "UTC", utc(2026, 1, 1), [utc(2026, 1, 2), utc(2026, 1, 9)]),
    ("3-3 0 * * *", "UTC", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 3), utc(2026, 1, 2, 0, 3)]),
    ("0 15-15/2 * * *", "UTC", utc(2026, 1, 1), [utc(2026, 1, 1, 15), utc(2026, 1, 2, 15)]),
    # 2. a day field that starts with * makes the day rule AND
    ("0 9 1 * */2", "UTC", utc(2026, 1, 1), [utc(2026, 1, 1, 9), utc(2026, 2, 1, 9), utc(2026, 3, 1, 9), utc(2026, 8, 1, 9)]),
    ("0 9 */1 * 1", "UTC", utc(2026, 1, 1), [utc(2026, 1, 5, 9), utc(2026, 1, 12, 9)]),
    ("0 9 1,15 * 1", "UTC", utc(2026, 1, 1), [utc(2026, 1, 1, 9), utc(2026, 1, 5, 9), utc(2026, 1, 12, 9), utc(2026, 1, 15, 9)]),
    # 3. fixed-time unless the minute or the hour starts with *: ranges and steps are fixed-time
    ("0 1-3 * * *", LISBON, utc(2026, 10, 24, 12), [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3), utc(2026, 10, 26, 1)]),
    ("30 0-4 * * *", LISBON, utc(2026, 3, 28, 23), [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30)]),
    ("0 1-23/2 * * *", NY, utc(2026, 11, 1, 4, 30), [utc(2026, 11, 1, 5), utc(2026, 11, 1, 8), utc(2026, 11, 1, 10)]),
    ("*/30 1 * * *", LISBON, utc(2026, 10, 24, 23), [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30)]),
    ("*/30 1 * * *", NY, utc(2026, 11, 1, 4, 30), [utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 30)]),
    # 4. a fixed-time job whose time is skipped runs when the clocks go forward
    ("30 2 * * *", NY, utc(2026, 3, 7, 12), [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]),
    ("30 2,3 * * *", NY, utc(2026, 3, 7, 12), [utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)]),
    ("30 1 * * *", LISBON, utc(2026, 3, 28, 12), [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]),
    ("30 1 * * *", LISBON, utc(2026, 10, 24, 12), [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
    ("30 2 * * *", LISBON, utc(2026, 10, 24, 12), [utc(2026, 10, 25, 2, 30), utc(2026, 10, 26, 2, 30)]),
    # ... a wildcard job has no run at a time that does not exist
    ("*/20 2 * * *", NY, utc(2026, 3, 8, 6), [utc(2026, 3, 9, 6), utc(2026, 3, 9, 6, 20)]),
    # 5. six fields: seconds first; the class is the minute's and the hour's
    ("0 30 2 * * *", "UTC", utc(2026, 1, 1), [utc(2026, 1, 1, 2, 30), utc(2026, 1, 2, 2, 30)]),
    ("30 0 2 * * *", "UTC", utc(2026, 1, 1), [datetime(2026, 1, 1, 2, 0, 30, tzinfo=UTC), datetime(2026, 1, 2, 2, 0, 30, tzinfo=UTC)]),
    ("0 2 * * * 0", NY, utc(2026, 3, 8, 5), [utc(2026, 3, 8, 5, 2), utc(2026, 3, 8, 6, 2), utc(2026, 3, 8, 7, 2)]),
    ("15 30 2 * * *", NY, utc(2026, 3, 7, 12), [datetime(2026, 3, 8, 7, 0, 15, tzinfo=UTC), datetime(2026, 3, 9, 6, 30, 15, tzinfo=UTC)]),
    # 6. every match is a time that does not exist, but it is fixed-time: each runs at the
    # change, 10 s apart (Debian sleeps 10 s after each run of its catch-up)
    ("0-29/10 2 * 10 0#1", LORD_HOWE, utc(2026, 1, 1), [utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 15, 30, 10), utc(2026, 10, 3, 15, 30, 20)]),
    ("0,30 2,3 * * *", NY, utc(2026, 3, 8), [utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 0, 10), utc(2026, 3, 8, 7, 0, 20), utc(2026, 3, 8, 7, 30)]),
    # a change of 3 hours or more is a jump: Apia skipped 30 December 2011 (-10 -> +14)
    ("0 12 * * *", "Pacific/Apia", utc(2011, 12, 29), [utc(2011, 12, 29, 22), utc(2011, 12, 30, 22)]),
    # 7. Debian's shortcuts
    ("@yearly", "UTC", utc(2026, 6, 1), [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ("@annually", "UTC", utc(2026, 6, 1), [utc(2027, 1, 1)]),
    ("@monthly", "UTC", utc(2026, 6, 1), [utc(2026, 7, 1), utc(2026, 8, 1)]),
    ("@weekly", "UTC", utc(2026, 1, 1), [utc(2026, 1, 4), utc(2026, 1, 11)]),
    ("@daily", LISBON, utc(2026, 1, 1), [utc(2026, 1, 2), utc(2026, 1, 3)]),
    ("@midnight", SANTIAGO, utc(2026, 9, 5, 12), [utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)]),  # midnight skipped: at the change
    ("@hourly", NY, utc(2026, 11, 1, 4, 30), [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]),
    # Where cronsim departs from Debian, After follows Debian: a start inside the repeated hour ...
    ("30 1 * * *", NY, utc(2026, 11, 1, 6, 10), [utc(2026, 11, 2, 6, 30)]),
    ("30 * * * *", NY, utc(2026, 11, 1, 6, 10), [utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 7, 30)]),
    # ... a 30-minute change (Lord Howe, 2026-04-05: 02:00 LHDT back to 01:30 LHST) ...
    ("45 1 * * *", LORD_HOWE, utc(2026, 4, 4, 12), [utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)]),
    ("*/15 1 * * *", LORD_HOWE, utc(2026, 4, 4, 14, 50), [utc(2026, 4, 4, 15, 0), utc(2026, 4, 4, 15, 15), utc(2026, 4, 5, 14, 30)]),
    # ... and Chatham's change at 02:45 (2026-09-27: 02:45 +1245 -> 03:45 +1345)
    ("0 3 * * *", "Pacific/Chatham", utc(2026, 9, 26, 12), [utc(2026, 9, 26, 14), utc(2026, 9, 27, 13, 15)]),
    # extensions: L, n#k, ?, names in any case
    ("0 0 L * *", "UTC", utc(2026, 1, 1), [utc(2026, 1, 31), utc(2026, 2, 28), utc(2026, 3, 31)]),
    ("0 0 L 2 *", "UTC", utc(2027, 3, 1), [utc(2028, 2, 29)]),
    ("0 0 1,L * *", "UTC", utc(2026, 1, 2), [utc(2026, 1, 31), utc(2026, 2, 1), utc(2026, 2, 28)]),
    ("0 0 ? * 1", "UTC", utc(2026, 1, 1), [utc(2026, 1, 5), utc(2026, 1, 12)]),
    ("0 0 * * FRI#2", "UTC", utc(2026, 1, 1), [utc(2026, 1, 9), utc(2026, 2, 13)]),
    ("0 0 * Jan-Feb Mon", "UTC", utc(2026, 1, 1), [utc(2026, 1, 5), utc(2026, 1, 12)]),
]


@pytest.mark.parametrize(("expr", "zone", "start", "expected"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_each_case_runs_as_debian_runs_it(expr: str, zone: str, start: datetime, expected: list[datetime]) -> None:
    assert timing.occurrences(expr, start, tz=zone, count=len(expected)) == expected
    if (len(expr.split()) == 5 or expr.startswith("@")) and not any(mark in expr for mark in ("L", "#", "?")):
        assert debian_cron.runs(expr, zone, start, len(expected)) == expected  # the model agrees


REFUSED = [
    ("0 25 * * *", "hour: value 25 is out of range 0-23"),
    ("5/10 * * * *", "minute: a step needs a range"),
    ("*/0 * * * *", "minute: step in '*/0' must be a number above 0"),
    ("0 0 * * 5-1", "day of week: reversed range '5-1'"),
    ("0 0 * * fri-sun", "day of week: reversed range 'fri-sun'"),  # sun is 0: Debian never runs it
    ("0 0 15W * *", "day of month: '15W'"),
    ("0 0 L-2 * *", "day of month: 'L-2'"),
    ("0 0 * * 5L", "day of week: '5L'"),
    ("0 0 1 * 1#2", "day of week: '1#2' needs a day of month of *"),
    ("0 0 * * 1#6", "day of week: '1#6': the week must be 1-5"),
    ("0 0 * * * 2026", "a year field is not supported (six fields are seconds first)"),
    ("0 0 0 * * * 2026", "a year field is not supported"),
    ("0 0 0 * * * *", "expected 5 fields (or 6 with seconds first), got 7"),
    ("H 0 * * *", "minute: 'H' is not a number"),
    ("0 0 * foo *", "month: 'foo' is not a number or a name"),
    ("@reboot", "@reboot has no time"),
    ("@often", "unknown shortcut '@often'"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
]


@pytest.mark.parametrize(("expr", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_after_does_not_run_is_refused_naming_the_field(expr: str, message: str) -> None:
    with pytest.raises(Unprocessable) as err:
        timing.check_cron(expr)
    assert message in err.value.message and err.value.field == "cron"


def test_a_line_whose_every_match_does_not_exist_is_refused_in_that_zone_only() -> None:
    with pytest.raises(Unprocessable, match="never fires"):
        timing.check_cron("*/15 2 * 3 0#2", tz=NY)
    assert timing.check_cron("*/15 2 * 3 0#2", tz="UTC")
    with pytest.raises(Unprocessable, match="never fires"):
        timing.next_cron("*/15 2 * 3 0#2", utc(2026, 1, 1), tz=NY)
