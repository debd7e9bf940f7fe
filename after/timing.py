"""Time decisions as pure functions of ``now``: no clock is read in this module.

Everything the scheduler decides about time lives here so tests can drive it with a
chosen ``now`` ("let's pretend it's 2037") and no sleeping:

- :func:`parse_date` / :func:`fmt`: the accepted input forms and the one stored form.
- :func:`next_cron` / :func:`occurrences`: the next runs of a cron expression in a time
  zone, as Debian's cron runs it (the rules are :mod:`after.crontab`'s and :mod:`after.cronclock`'s).
- :func:`retry_delay`: how long a failed attempt waits.
- :func:`plan`: given the tasks the scheduler holds and ``now``, what to do this tick
  (fire, skip as missed, expire, recover an expired lease, acknowledge a cancel), in order.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from after import cronclock, crontab
from after.errors import InvalidInput, Unprocessable

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: ``skip`` and ``coalesce`` with no ``grace`` tolerate this much lateness (seconds):
#: a tick that runs a little late because the host was busy must not count as a misfire.
DEFAULT_GRACE = 5.0
#: Exponential backoff never waits longer than this (seconds) unless ``retry.max_delay`` says so.
DEFAULT_MAX_DELAY = 3600.0


def parse_date(value: Any, *, field: str = "date") -> datetime:
    """Parse the date forms After accepts into an aware UTC datetime.

    Accepted: epoch seconds (int or float), ISO 8601 with ``Z`` or an offset, ISO 8601
    without offset (taken as UTC), and a bare ``YYYY-MM-DD`` (midnight UTC).
    Raises InvalidInput naming ``field`` otherwise.
    """
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: expected a date, got {value!r}", field=field)
    if isinstance(value, int | float):
        if not math.isfinite(value) or not -62e9 < value < 253e9:  # years 1..9999
            raise InvalidInput(f"{field}: epoch seconds out of range: {value!r}", field=field)
        return EPOCH + timedelta(seconds=float(value))
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}: expected an ISO 8601 date or epoch seconds", field=field)
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(f"{field}: cannot parse {value!r} as a date", field=field) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-02:00 is after year 9999 in UTC
        raise InvalidInput(f"{field}: {value!r} is out of range", field=field) from None


def fmt(dt: datetime) -> str:
    """The one stored form: UTC, milliseconds, ``Z``. Such strings sort as times do."""
    dt = dt.astimezone(UTC)
    # Not strftime("%Y"): it does not pad years before 1000 to four digits on Linux.
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}Z"


def ts(dt: datetime) -> float:
    return float(dt.timestamp())


def from_ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def zone(name: Any, *, field: str = "timezone") -> ZoneInfo:
    if name is not None and not isinstance(name, str):
        raise Unprocessable(f"{field}: expected a zone name like 'Europe/Lisbon', got {name!r}", field=field)
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise Unprocessable(f"{field}: unknown time zone {name!r}", field=field) from None


def check_cron(expr: Any, *, tz: str | None = None, field: str = "cron") -> str:
    """``expr`` if it is a cron expression After can run, else Unprocessable naming ``field``.

    The grammar is Debian's crontab(5) (see :mod:`after.crontab`). With ``tz``, an
    expression whose every match is a time that does not exist there (``*/15 2 * 3 0#2``
    in New York: the second Sunday of March skips 02:00-03:00) is refused as well; the
    zone's rules are probed from :data:`_CRON_PROBE` on, so the check needs no clock.
    Parsing is cached: every stored task's cron is checked whenever the scheduler sees it.
    """
    if not isinstance(expr, str):
        raise Unprocessable(f"{field}: not a valid cron expression: {expr!r}", field=field)
    try:
        cron = crontab.parse(expr)
        if tz is not None:
            _probe(cron, zone(tz, field="timezone"))
    except crontab.CronError as exc:
        raise _refused(expr, exc, field) from None
    return expr


def _refused(expr: str, exc: crontab.CronError, field: str) -> Unprocessable:
    if isinstance(exc, crontab.NeverFires):
        return Unprocessable(f"{field}: {exc}", field=field)
    return Unprocessable(f"{field}: not a valid cron expression: {expr!r} ({exc})", field=field)


@functools.lru_cache(maxsize=4096)
def _probe(cron: crontab.Cron, zi: ZoneInfo) -> datetime:
    return cronclock.next_run(cron, _CRON_PROBE, zi)


#: Where :func:`check_cron` looks for a first run in a zone.
_CRON_PROBE = datetime(2026, 1, 1, tzinfo=UTC)


def next_cron(expr: str, after: datetime, *, tz: str | None = None, field: str = "cron") -> datetime:
    """The first run of ``expr`` strictly after ``after``, as Debian's cron would run it
    with ``TZ=tz``: wall-clock matches of ``tz``, and Debian's daylight-saving rules for
    fixed-time and wildcard lines (:func:`after.cronclock.next_run`, the README's "Timing").

    Unprocessable naming ``field`` when ``expr`` is not one After runs, or has no run left.
    """
    if not isinstance(expr, str):
        raise Unprocessable(f"{field}: not a valid cron expression: {expr!r}", field=field)
    try:
        return cronclock.next_run(crontab.parse(expr), after, zone(tz))
    except crontab.CronError as exc:
        raise _refused(expr, exc, field) from None


def occurrences(expr: str, after: datetime, *, tz: str | None = None, count: int = 5) -> list[datetime]:
    out: list[datetime] = []
    cur = after
    for _ in range(count):
        cur = next_cron(expr, cur, tz=tz)
        out.append(cur)
    return out


def retry_delay(retry: Mapping[str, Any], attempt: int, *, rand: Callable[[], float]) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after attempt ``attempt`` failed.

    ``fixed``: always ``delay``. ``exponential``: ``delay * 2**(attempt-1)``, capped at
    ``max_delay``, then "equal jitter" (half fixed, half random) so that many tasks that
    failed together (a database was down) do not retry in lockstep. ``rand`` returns a
    float in [0, 1): tests pass a constant.
    """
    delay = float(retry.get("delay", 10.0))
    if retry.get("backoff", "fixed") != "exponential":
        return delay
    cap = float(retry.get("max_delay", DEFAULT_MAX_DELAY))
    raw = min(cap, delay * float(2 ** max(0, attempt - 1)))
    return raw / 2 + float(rand()) * raw / 2


def can_retry(task: Mapping[str, Any]) -> bool:
    """True when the task has attempts left: ``attempts`` counts starts, ``retry.max`` retries."""
    retry = task.get("retry") or {}
    return int(task.get("attempts", 0)) <= int(retry.get("max", 0))


# ---------------------------------------------------------------------------------------
# The tick's decision


@dataclasses.dataclass(frozen=True)
class Action:
    """One thing the scheduler must do with one task this tick."""

    kind: str  # fire | miss | expire | recover | cancel
    task: Mapping[str, Any]
    reason: str = ""
    next_date: datetime | None = None  # for miss of a cron task: the next occurrence (nominal: calendar.place dates it)


def due_at(task: Mapping[str, Any]) -> datetime | None:
    try:
        return parse_date(task.get("date"))
    except InvalidInput:
        return None


def eligible_at(task: Mapping[str, Any]) -> datetime | None:
    """When the task could first run: its due time, but not before it was created or
    rescheduled (its last ``waiting`` or ``reschedule``). The fire lag is measured from
    here: a task posted today with a date in 2020 is run at once, not 7 years late."""
    due = due_at(task)
    if due is None:
        return None
    history = task.get("history")
    for entry in reversed(history if isinstance(history, list) else []):
        if isinstance(entry, Mapping) and entry.get("status") in ("waiting", "reschedule"):
            try:
                return max(due, parse_date(entry.get("at")))
            except InvalidInput:
                break
    return due


def agenda_time(task: Mapping[str, Any]) -> datetime | None:
    """When the scheduler must next look at this task, or None if never (terminal).

    Pending tasks at their ``date``, held ones when their lease ends, cancel intents now.
    """
    status = task.get("status")
    if status in ("waiting", "reschedule"):
        return due_at(task) or EPOCH
    if status in ("schedule", "scheduled"):
        lease = task.get("lease") or {}
        try:
            return parse_date(lease.get("until"))
        except InvalidInput:
            return EPOCH
    if status == "cancel":
        return EPOCH
    return None


def order_key(task: Mapping[str, Any]) -> tuple[int, int, float, str]:
    """Oldest due second first; within one second higher priority first; then exact time."""
    due = due_at(task) or EPOCH
    t = due.timestamp()
    return (math.floor(t), -int(task.get("priority") or 0), t, str(task.get("_id", "")))


#: The first claim request of a tick holds at most this many tasks: with a backlog (a
#: restart, a burst), the first jobs start after one small write instead of a full batch,
#: and the rest are claimed in full batches while they run.
FIRST_CLAIMS = 50


def claim_chunks(n: int, batch: int, first: int = FIRST_CLAIMS) -> list[tuple[int, int]]:
    """The ``(start, end)`` slices of ``n`` claims (oldest first): a small first request, then full ``batch`` es."""
    out: list[tuple[int, int]] = []
    start, size = 0, max(1, min(first, batch))
    while start < n:
        out.append((start, min(n, start + size)))
        start += size
        size = max(1, batch)
    return out


def plan(now: datetime, tasks: Iterable[Mapping[str, Any]], *, ahead: float = 0.0) -> list[Action]:
    """Decide what to do with every task whose agenda time has come, in execution order.

    Cancels and lease recoveries come first (they free or end work), then expiries and
    misses (cheap, and they must not wait behind a long queue), then fires in
    :func:`order_key` order, so after downtime the oldest overdue task runs first.

    ``ahead`` (seconds): also fire tasks due that soon. They are claimed and handed to
    their worker early, and the worker starts them at their due time: the claim's
    round trip to CouchDB is paid before the due second, not after it.
    """
    horizon = now + timedelta(seconds=ahead)
    housekeeping: list[Action] = []
    fires: list[Mapping[str, Any]] = []
    for task in tasks:
        status = task.get("status")
        if status == "cancel":
            housekeeping.append(Action("cancel", task))
            continue
        if status in ("schedule", "scheduled"):
            until = agenda_time(task)
            if until is not None and until <= now:
                housekeeping.append(Action("recover", task, reason="lost"))
            continue
        if status not in ("waiting", "reschedule"):
            continue
        due = due_at(task)
        if due is None or due > horizon:
            continue
        expires = task.get("expires")
        if expires is not None:
            try:
                if parse_date(expires, field="expires") <= now:
                    housekeeping.append(Action("expire", task, reason="expired"))
                    continue
            except InvalidInput:
                pass
        misfire = task.get("misfire") or {}
        policy = misfire.get("policy", "run")
        grace = misfire.get("grace")
        late = (now - due).total_seconds()
        if policy == "skip":
            limit = DEFAULT_GRACE if grace is None else float(grace)
            if late > limit:
                nxt = None
                if task.get("cron"):
                    from after import calendar  # builds on this module

                    nxt = calendar.next_nominal(task, now)
                housekeeping.append(Action("miss", task, reason="missed", next_date=nxt))
                continue
        fires.append(task)
    fires.sort(key=order_key)
    return housekeeping + [Action("fire", t) for t in fires]


def next_after_run(task: Mapping[str, Any], *, started: datetime, finished: datetime | None = None) -> datetime | None:
    """The next occurrence of a cron task once the run due at its ``date`` is over.

    ``run`` (default) catches up every missed occurrence one by one (the next after the
    due date); ``coalesce`` folds missed occurrences into the run just made (the next
    after the actual start). Runs of one cron task never overlap: the next occurrence
    is scheduled only when a run ends. An occurrence that came due while the run was
    going runs right after it (``overlap: "wait"``, the default) or is skipped
    (``overlap: "skip"``). Returns None for one-shot tasks, or when past ``expires``.

    Occurrences are nominal (before jitter; excluded days skipped): the one just run is
    :func:`after.calendar.nominal_of`, and :func:`after.calendar.place` gives the returned
    one's ``date`` and ``occurrence``.
    """
    from after import calendar  # builds on this module

    expr = task.get("cron")
    if not expr:
        return None
    policy = (task.get("misfire") or {}).get("policy", "run")
    due = calendar.nominal_of(task) or started
    base = started if policy in ("coalesce", "skip") else due
    if task.get("overlap") == "skip" and finished is not None:
        # Occurrences that fell while this run was going are skipped, not run late.
        base = max(base, finished)
    nxt = calendar.next_nominal(task, max(base, due))
    expires = task.get("expires")
    if expires is not None:
        try:
            if nxt >= parse_date(expires, field="expires"):
                return None
        except InvalidInput:
            pass
    return nxt
