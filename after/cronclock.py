"""When Debian's cron runs a crontab line: its clock rules, as pure functions.

``cron.c``'s clock counts wall-clock minutes (``clockTime = (time + GMToff) / 60``), so
an offset change shows as the clock jumping, and its main loop classifies each jump.
:func:`next_run` turns croniter's wall-clock matches of a :class:`after.crontab.Cron`
into the real instants Debian's cron, running continuously, would run the line at;
:func:`_catch_up` replays the loop's catch-up after the clocks go forward.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from after.crontab import Cron, NeverFires

#: How far :func:`next_run` looks for a run. Debian's grammar has runs at most 40 years
#: apart (29 February on one weekday, across 2100, which is not a leap year).
HORIZON_YEARS = 101

_MINUTE_STEP = timedelta(minutes=1)
_WIDE = timedelta(hours=26)
#: Debian's ``cron.c``: a clock change of more than this many minutes is a "jump" (no catch-up).
_JUMP_MINUTES = 180
#: Below this (minutes), a forward change is a late wake-up: every job of the missed minutes runs.
_LATE_MINUTES = 5


def _offset(zi: ZoneInfo, at: datetime) -> timedelta:
    off = at.astimezone(zi).utcoffset()
    assert off is not None
    return off


def _transition(zi: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second in (``before``, ``after``] with ``after``'s offset."""
    target = _offset(zi, after)
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zi, datetime.fromtimestamp(mid, UTC)) == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _ceil_minute(at: datetime) -> datetime:
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + _MINUTE_STEP


def _wall(at: datetime, zi: ZoneInfo) -> datetime:
    return (at + _offset(zi, at)).replace(tzinfo=None)


@functools.lru_cache(maxsize=1024)
def _catch_up(cron: Cron, zi: ZoneInfo, change: datetime) -> tuple[tuple[datetime, ...], datetime]:
    """Debian's catch-up after the clocks go forward at ``change``, for this one line:
    its runs, and the wall-clock minute from which it runs by the plain rule again.

    ``cron.c`` wakes at the first minute of the new time and finds its clock ahead of its
    virtual time by the gap. It runs wildcard lines for that minute, then steps virtual
    time through every skipped minute, running fixed-time lines that match and sleeping
    10 s after each run (``if (job_runqueue()) sleep(10)``), until virtual time catches up
    or the minute ends; a round that ends early goes on at the next wake-up. A gap of 2-5
    minutes is a late wake-up (every line, every minute, no minute check); 3 hours or
    more is a jump (nothing skipped runs). Six-field lines (an extension) run each skipped
    minute once at the change, at its seconds.
    """
    start = _ceil_minute(change)
    last = (_wall(change - timedelta(seconds=1), zi)).replace(second=0, microsecond=0)
    first_new = _wall(start, zi)
    gap = round((first_new - last) / _MINUTE_STEP)  # cron.c's timeDiff at the wake-up
    matching: set[datetime] = set()
    it = croniter(cron.expr, last, day_or=cron.day_or, second_at_beginning=cron.seconds)
    horizon = first_new + timedelta(hours=6)
    while (m := it.get_next(datetime)) < horizon:
        matching.add(m)
    minutes = {m.replace(second=0) for m in matching}
    if gap > _JUMP_MINUTES or gap <= 1:
        return tuple(start + timedelta(seconds=m.second) for m in sorted(matching) if m.replace(second=0) == first_new), first_new + _MINUTE_STEP
    if cron.seconds:

        def runs_now(m: datetime) -> bool:
            minute = m.replace(second=0)
            return last < minute <= first_new and (cron.fixed or gap < _LATE_MINUTES or minute == first_new)

        return tuple(sorted({start + timedelta(seconds=m.second) for m in matching if runs_now(m)})), first_new + _MINUTE_STEP
    out: list[datetime] = []
    s = 0  # seconds since ``start``
    virtual, running = last, first_new
    while True:
        diff = round((running - virtual) / _MINUTE_STEP)
        if diff == 1:
            # Caught up: this minute is plain, but it is run when the daemon wakes (at once
            # when the sleeps ran into it); the minutes after it are plain. Two runs Debian
            # starts in the same second are one second apart here.
            if running in minutes:
                out.append(max(start + timedelta(seconds=s), start + (running - first_new)))
            for i in range(1, len(out)):
                out[i] = max(out[i], out[i - 1] + timedelta(seconds=1))
            return tuple(out), running + _MINUTE_STEP
        queued = False
        if diff < _LATE_MINUTES + 1:  # case 1: woke late, every line for every minute
            while virtual < running:
                if queued:
                    out.append(start + timedelta(seconds=s))
                    s, queued = s + 10, False
                virtual += _MINUTE_STEP
                queued = virtual in minutes
        else:  # case 2: "DST begins"
            queued = not cron.fixed and running in minutes
            while True:
                if queued:
                    out.append(start + timedelta(seconds=s))
                    s, queued = s + 10, False
                virtual += _MINUTE_STEP
                queued = cron.fixed and virtual in minutes
                if not (virtual < running and first_new + timedelta(minutes=s // 60) == running):
                    break
        if queued:  # the main loop's job_runqueue() after the switch (no sleep)
            out.append(start + timedelta(seconds=s))
        # The next wake-up: at once if the sleeps ran into a later minute, else the next one.
        running = max(running + _MINUTE_STEP, first_new + timedelta(minutes=s // 60))


def _runs_at(cron: Cron, wall: datetime, zi: ZoneInfo) -> tuple[list[datetime], datetime | None]:
    """When Debian's cron runs a line that matches the wall-clock time ``wall`` (naive).

    Returns the real instants (UTC), and a wall-clock time to resume the search from when
    the rest of a catch-up is accounted for. The rules are ``cron.c``'s, whose clock counts
    wall-clock minutes, so an offset change shows as the clock jumping:

    - a time that exists once runs then;
    - a repeated time (fall back, up to 3 hours): fixed-time runs at the first pass only,
      wildcard at both (real time passed twice); beyond 3 hours, everything runs twice;
    - a time that does not exist (spring forward): :func:`_catch_up`.
    """
    first = wall.replace(tzinfo=zi, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zi, fold=1).astimezone(UTC)
    if first.astimezone(zi).replace(tzinfo=None) == wall:
        if first == second:
            return [first], None
        if cron.fixed and second - first <= timedelta(minutes=_JUMP_MINUTES):
            return [first], None
        return [first, second], None
    # In a gap: fold=1 (the offset after) is before the change in real time, fold=0 after.
    runs, resume = _catch_up(cron, zi, _transition(zi, second, first))
    return list(runs), resume - timedelta(microseconds=1)


def _recent_change(zi: ZoneInfo, after: datetime) -> datetime | None:
    """A forward change within the 4 hours before ``after`` (its catch-up may not be over)."""
    earlier = after - timedelta(hours=4)
    if _offset(zi, earlier) >= _offset(zi, after):
        return None
    return _transition(zi, earlier, after)


def next_run(cron: Cron, after: datetime, zi: ZoneInfo) -> datetime:
    """The first instant strictly after ``after`` at which Debian's cron, running
    continuously with ``TZ`` set to ``zi``, would run ``cron`` (alone in its crontab).

    Candidates are croniter's wall-clock matches, turned into instants by
    :func:`_runs_at`. Near a fall back, an earlier wall-clock time can come later in real
    time (the second pass), so the search starts early by the size of a coming fall back
    and goes on until no later wall-clock time can map before the best instant found.
    Raises NeverFires when nothing runs within :data:`HORIZON_YEARS`.
    """
    after = after.astimezone(UTC)
    local = _wall(after, zi)
    back = max(timedelta(0), _offset(zi, after) - _offset(zi, after + _WIDE))
    start = local - back
    horizon = local + timedelta(days=366 * HORIZON_YEARS)
    best: datetime | None = None
    stop: datetime | None = None

    def consider(at: datetime) -> None:
        nonlocal best, stop
        if at > after and (best is None or at < best):
            best = at
            most = max(_offset(zi, at - _WIDE), _offset(zi, at), _offset(zi, at + _WIDE))
            stop = (at + most).replace(tzinfo=None)

    if (change := _recent_change(zi, after)) is not None:
        # ``after`` may fall inside a catch-up (between two of its runs): the rest of it.
        runs, normal = _catch_up(cron, zi, change)
        if local < normal:
            for at in runs:
                consider(at)
            start = max(start, normal - timedelta(microseconds=1))

    def matches(since: datetime) -> croniter:
        return croniter(cron.expr, since, day_or=cron.day_or, second_at_beginning=cron.seconds, max_years_between_matches=HORIZON_YEARS)

    it = matches(start)
    while True:
        try:
            wall: datetime = it.get_next(datetime)
        except CroniterError:
            wall = horizon
        if stop is not None and wall >= stop:
            return best  # type: ignore[return-value]
        if wall >= horizon:
            if best is not None:
                return best
            raise NeverFires(f"{cron.text!r} never fires (no run in the {HORIZON_YEARS} years after {after:%Y-%m-%dT%H:%M:%SZ})")
        found, resume = _runs_at(cron, wall, zi)
        for at in found:
            consider(at)
        if resume is not None and resume > wall:
            it = matches(resume)
