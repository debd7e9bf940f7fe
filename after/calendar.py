"""A cron task's calendar: excluded days and jitter, as pure functions of the task and a time.

Why a module of its own: every place that computes a cron task's next run (create, the end
of a run, a misfire skip, a recovered lease, ``next_runs``) must agree on the same answer,
on every daemon, or two daemons would disagree about when a task is due. Nothing here
reads a clock or the store; tests drive it with chosen times (tests/test_calendar.py).

- ``exclude``: days (``YYYY-MM-DD``) or inclusive ranges (``YYYY-MM-DD/YYYY-MM-DD``) of the
  task's ``timezone`` on which no occurrence falls. :func:`next_nominal` jumps past a whole
  range at once (to the first instant of the day after it), so a range of ten years costs
  one step, not one per minute.
- ``jitter``: each occurrence is delayed by :func:`offset` seconds, in [0, jitter), derived
  from the task id and the occurrence's nominal time (sha256), so every daemon computes the
  same delay without talking to the others. The stored ``date`` is the delayed time and
  ``occurrence`` the nominal one (:func:`place`); misfire, overlap and catch-up reason on
  the nominal occurrences (:func:`nominal_of`).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from after import timing
from after.errors import InvalidInput, Unprocessable

#: At most this many items in ``exclude``.
MAX_EXCLUDE = 1000
#: ``jitter`` is at most a day (seconds).
MAX_JITTER = 86400.0
#: Exclusions that leave no run in this many days after a time are refused (422).
HORIZON_DAYS = 3653

_ITEM = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:/(\d{4}-\d{2}-\d{2}))?$")
_TICK = timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class Placed:
    """One occurrence: ``date`` when it runs (jittered), ``occurrence`` its nominal cron time."""

    date: datetime
    occurrence: datetime

    def fields(self) -> dict[str, str]:
        """What a task document stores for it."""
        return {"date": timing.fmt(self.date), "occurrence": timing.fmt(self.occurrence)}


def parse_item(item: Any) -> tuple[date, date]:
    """One ``exclude`` item as its first and last day (inclusive), or Unprocessable saying why."""
    if not isinstance(item, str):
        raise Unprocessable(f"expected 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', got {item!r:.80}")
    m = _ITEM.match(item)
    if m is None:
        raise Unprocessable(f"expected 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', got {item!r:.80}")
    try:
        first = date.fromisoformat(m.group(1))
        last = date.fromisoformat(m.group(2)) if m.group(2) else first
    except ValueError as exc:
        raise Unprocessable(f"not a date: {item!r:.80} ({exc})") from None
    if last < first:
        raise Unprocessable(f"the range {item!r} ends before it starts")
    return first, last


@functools.lru_cache(maxsize=1024)
def _spans(items: tuple[str, ...]) -> tuple[tuple[date, ...], tuple[date, ...]]:
    """The exclusions merged into disjoint sorted spans: (their first days, their last days)."""
    spans = sorted(parse_item(i) for i in items)
    starts: list[date] = []
    ends: list[date] = []
    for first, last in spans:
        if ends and first <= ends[-1] + timedelta(days=1):
            ends[-1] = max(ends[-1], last)
        else:
            starts.append(first)
            ends.append(last)
    return tuple(starts), tuple(ends)


def excluded_span(items: Sequence[str], day: date) -> tuple[date, date] | None:
    """The merged span of ``items`` that contains ``day``, or None when ``day`` is not excluded."""
    starts, ends = _spans(tuple(items))
    i = bisect.bisect_right(starts, day) - 1
    if i >= 0 and ends[i] >= day:
        return starts[i], ends[i]
    return None


def _exclusions(task: Mapping[str, Any]) -> tuple[str, ...]:
    items = task.get("exclude")
    return tuple(items) if isinstance(items, list) else ()


def start_of_day(day: date, zi: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``zi`` (after a gap, when midnight does not exist there)."""
    return datetime(day.year, day.month, day.day, tzinfo=zi).astimezone(UTC)


def next_nominal(task: Mapping[str, Any], after: datetime) -> datetime:
    """The first cron occurrence of ``task`` strictly after ``after`` that is not on an excluded day.

    Unprocessable naming ``exclude`` when the exclusions leave none in :data:`HORIZON_DAYS`
    days (naming ``cron`` when the expression itself has no run left).
    """
    expr, tz = task["cron"], task.get("timezone")
    items = _exclusions(task)
    limit = after + timedelta(days=HORIZON_DAYS)
    cur = after
    while True:
        nxt = timing.next_cron(expr, cur, tz=tz)
        if not items:
            return nxt
        if nxt > limit:
            break
        zi = timing.zone(tz)
        span = excluded_span(items, nxt.astimezone(zi).date())
        if span is None:
            return nxt
        if span[1] >= date.max - timedelta(days=1):
            break
        cur = start_of_day(span[1] + timedelta(days=1), zi) - _TICK
    raise Unprocessable(f"exclude: leaves no run of {expr!r} in the {HORIZON_DAYS // 365} years after {timing.fmt(after)}", field="exclude")


def offset(task_id: str, nominal: datetime, jitter: float) -> float:
    """Seconds in [0, jitter), in milliseconds, that the occurrence ``nominal`` of ``task_id`` is delayed.

    A hash, not a random draw: every daemon (and every restart) finds the same delay, and
    one task's occurrences are spread differently from each other and from other tasks'.
    """
    if not jitter or jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{task_id}|{timing.fmt(nominal)}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return math.floor(fraction * jitter * 1000) / 1000


def place(task: Mapping[str, Any], nominal: datetime) -> Placed:
    """The occurrence ``nominal`` of ``task`` with its jitter applied."""
    jitter = task.get("jitter")
    delay = offset(str(task.get("_id", "")), nominal, float(jitter)) if isinstance(jitter, int | float) and not isinstance(jitter, bool) else 0.0
    return Placed(nominal + timedelta(seconds=delay), nominal)


def nominal_of(task: Mapping[str, Any]) -> datetime | None:
    """The nominal occurrence the task's ``date`` stands for (:func:`_occurrence`), else the
    ``date`` itself; None when the date does not parse."""
    return _occurrence(task) or timing.due_at(task)


def _occurrence(task: Mapping[str, Any]) -> datetime | None:
    """``occurrence`` while it still stands for ``date``, else None.

    It does while ``date`` is that occurrence placed (its jitter), or lies between it and
    the next occurrence: a retry of the run, or a client's rerun, is the same occurrence.
    A date moved past the next occurrence (a reschedule to next week) is a new start: the
    stale ``occurrence`` is ignored, and the next runs follow the new date.
    """
    due = timing.due_at(task)
    raw = task.get("occurrence")
    if due is None or raw is None:
        return None
    try:
        nominal = timing.parse_date(raw, field="occurrence")
    except InvalidInput:
        return None
    if timing.fmt(place(task, nominal).date) == timing.fmt(due):
        return nominal
    if due < nominal or not task.get("cron"):
        return None
    try:
        return nominal if due < next_nominal(task, nominal) else None
    except InvalidInput:
        return nominal  # no occurrence after it: the date can only stand for this one


def run_fields(task: Mapping[str, Any]) -> dict[str, str]:
    """What a record in ``runs`` adds for a jittered run: the nominal occurrence it ran for."""
    nominal = _occurrence(task)
    return {"occurrence": timing.fmt(nominal)} if nominal is not None and task.get("jitter") else {}


def upcoming(task: Mapping[str, Any], after: datetime, count: int = 5) -> list[Placed]:
    """The next ``count`` occurrences strictly after ``after`` (nominal), placed: for ``next_runs``."""
    out: list[Placed] = []
    cur = after
    for _ in range(count):
        cur = next_nominal(task, cur)
        out.append(place(task, cur))
    return out


def first(task: Mapping[str, Any], now: datetime) -> Placed:
    """A new cron task's first occurrence after ``now`` (create): also the check that its
    exclusions leave it a run."""
    return place(task, next_nominal(task, now))
