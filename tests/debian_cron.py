"""A model of Debian's cron (3.0pl1), the reference of the differential test.

Written from Debian's ``entry.c`` (``load_entry``, ``get_list``, ``get_range``,
``get_number``) and ``cron.c`` (``main``'s loop, ``find_jobs``, ``set_time``), and
independent of After's code and of croniter: its own parser into bit sets and its own
minute clock. Only the parts that decide *when* a line runs are modelled:

- ``clockTime = (time + GMToff) / 60``: the daemon's clock counts wall-clock minutes,
  so an offset change is the clock jumping;
- each wake-up compares the clock with ``virtualTime`` and classifies the difference
  (1: normal; 2-5: woke late, run every missed minute; 6-180: "DST begins", wildcard
  jobs for now, fixed-time jobs for every missed minute; -179-0: "DST ends", wildcard
  jobs only, virtual time waits; else a jump);
- ``find_jobs`` matches the wall-clock fields, with the day rule on ``DOM_STAR`` /
  ``DOW_STAR`` and the class on ``MIN_STAR`` / ``HR_STAR``, each flag set when the
  field's first character is ``*``.

Debian's ``set_time`` recomputes ``GMToff`` only when ``tm_isdst`` flips; the model takes
the zone's offset at every minute, which is the same thing for a change between standard
and daylight time (every change of the zones tested in 2026-2027).

``runs`` returns the real minutes at which the daemon starts the job (a job added twice
in one minute starts twice in Debian, 10 s apart; the model lists it once per minute).
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]  # entry.c's DowNames: 7 is Sunday too


class Refused(ValueError):
    """Debian's crontab refuses the line."""


@dataclasses.dataclass(frozen=True)
class Entry:
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    min_star: bool = False
    hr_star: bool = False
    dom_star: bool = False
    dow_star: bool = False

    @property
    def wild(self) -> bool:
        return self.min_star or self.hr_star

    def day(self, d: datetime) -> bool:
        dow = (d.weekday() + 1) % 7
        if d.month not in self.month:
            return False
        if self.dom_star or self.dow_star:
            return d.day in self.dom and dow in self.dow
        return d.day in self.dom or dow in self.dow

    def matches(self, d: datetime) -> bool:
        return d.minute in self.minute and d.hour in self.hour and self.day(d)


def _number(text: str, low: int, names: list[str] | None) -> int:
    if names:
        for i, name in enumerate(names):
            if name == text.lower():
                return i + low
    if text.isdigit():
        return int(text)
    raise Refused(text)


def _list(text: str, low: int, high: int, names: list[str] | None = None) -> frozenset[int]:
    bits: set[int] = set()
    for item in text.split(","):
        rng, _, step = item.partition("/")
        if rng == "*":
            n1, n2 = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            n1, n2 = _number(a, low, names), _number(b, low, names)
        else:
            if "/" in item:
                raise Refused("step specified without range")
            n = _number(rng, low, names)
            if not low <= n <= high:
                raise Refused(item)
            bits.add(n)
            continue
        n3 = 1
        if "/" in item:
            if not step.isdigit() or int(step) <= 0:
                raise Refused(item)
            n3 = int(step)
        if not (low <= n1 <= high and low <= n2 <= high):
            raise Refused(item)
        bits.update(range(n1, n2 + 1, n3))  # a reversed range sets nothing
    return frozenset(bits)


SPECIALS = {
    "@yearly": ("0", "0", "1", "1", "*", False, False, False, True),
    "@annually": ("0", "0", "1", "1", "*", False, False, False, True),
    "@monthly": ("0", "0", "1", "*", "*", False, False, False, True),
    "@weekly": ("0", "0", "*", "*", "0", False, False, False, True),
    "@daily": ("0", "0", "*", "*", "*", False, False, False, False),
    "@midnight": ("0", "0", "*", "*", "*", False, False, False, False),
    "@hourly": ("0", "*", "*", "*", "*", False, True, False, False),
}


@functools.cache
def parse(text: str) -> Entry:
    if text.startswith("@"):
        if text not in SPECIALS:
            raise Refused(text)
        mi, hr, dom, mon, dow, *flags = SPECIALS[text]
        stars = tuple(bool(f) for f in flags)
    else:
        fields = text.split()
        if len(fields) != 5:
            raise Refused(text)
        mi, hr, dom, mon, dow = fields
        stars = (mi[0] == "*", hr[0] == "*", dom[0] == "*", dow[0] == "*")
    dows = set(_list(dow, 0, 7, DAYS))
    if 0 in dows or 7 in dows:
        dows |= {0, 7}
    return Entry(
        minute=_list(mi, 0, 59),
        hour=_list(hr, 0, 23),
        dom=_list(dom, 1, 31),
        month=_list(mon, 1, 12, MONTHS),
        dow=frozenset(d % 7 for d in dows),
        min_star=stars[0],
        hr_star=stars[1],
        dom_star=stars[2],
        dow_star=stars[3],
    )


@functools.cache
def _changes(zone: str, year_from: int, year_to: int) -> tuple[tuple[int, int], ...]:
    """(first epoch minute of a new offset, the new offset in seconds), by a scan of every
    six hours (the zones tested change at most twice a year) and a bisection to the second."""
    zi = ZoneInfo(zone)
    out: list[tuple[int, int]] = []
    t = int(datetime(year_from, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year_to + 1, 1, 1, tzinfo=UTC).timestamp())

    def off(s: int) -> int:
        o = datetime.fromtimestamp(s, zi).utcoffset()
        assert o is not None
        return int(o.total_seconds())

    out.append((t // 60, off(t)))
    while t < end:
        u = t + 6 * 3600
        if off(u) != off(t):
            lo, hi = t, u
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if off(mid) == off(u):
                    hi = mid
                else:
                    lo = mid
            out.append((-(-hi // 60), off(u)))
        t = u
    return tuple(out)


def runs(text: str, zone: str, after: datetime, count: int, *, years: int = 12) -> list[datetime]:
    """The first ``count`` instants after ``after`` at which Debian's cron, started a day
    earlier with ``TZ=zone`` and running on, starts the job ``text`` (alone in its crontab).

    The daemon's own clock is simulated to the second: it wakes 1 s into each minute
    (``cron_sleep``), each run of the queue is followed by ``sleep(10)`` in a catch-up, and
    a catch-up that runs into a later minute goes on at the next wake-up. An instant is
    given as After gives it: 1 s earlier (After starts runs on the minute), and a start in
    the same second as the one before (the main loop's run and the next round's first)
    one second after it.
    """
    e = parse(text)
    changes = _changes(zone, min(2020, after.year - 1), max(2050, after.year + years))
    starts = [c[0] for c in changes]
    out: list[datetime] = []
    last: list[int] = []
    limit_s = after.timestamp()

    def offset_at(second: int) -> int:
        return changes[max(0, _bisect(starts, second // 60))][1]

    def clock_of(second: int) -> int:  # set_time(): clockTime = (time + GMToff) / 60
        return (second + offset_at(second)) // 60

    def wall(clock: int) -> datetime:
        return datetime(1970, 1, 1) + timedelta(minutes=clock)

    def matches(clock: int, *, wild: bool, fixed: bool) -> bool:  # find_jobs()
        return ((e.wild and wild) or (not e.wild and fixed)) and e.matches(wall(clock))

    def run(second: int) -> None:
        at = second - 1
        if last and at <= last[-1]:
            at = last[-1] + 1
        last[:] = [at]
        if at > limit_s:
            out.append(datetime.fromtimestamp(at, UTC))

    t = (int(after.timestamp()) // 60 - 24 * 60) * 60 + 1
    end = int(after.timestamp()) + years * 366 * 86400
    running = clock_of(t)
    virtual = running
    while t < end and len(out) < count:
        while True:  # cron_sleep(timeRunning + 1); set_time() until the minute changes
            wait = (running + 1) * 60 - (t + offset_at(t)) + 1
            if 0 < wait < 65:
                t += wait
            elif clock_of(t) == running:
                t += 1
            if clock_of(t) != running:
                break
        running = clock_of(t)
        diff = running - virtual
        queued = False
        if diff == 1:
            virtual = running
            if matches(running, wild=True, fixed=True):
                run(t)
            # Nothing can match before the next wall-clock day (or hour) that matches,
            # unless the offset changes first: skip ahead, as the daemon would sleep.
            nxt = _bisect(starts, t // 60) + 1
            stop = starts[nxt] - 3 if nxt < len(starts) else end // 60
            w = wall(running)
            if not e.day(w):
                skip = (24 * 60 - w.hour * 60 - w.minute) - 1
            elif w.hour not in e.hour:
                skip = 60 - w.minute - 1
            else:
                skip = 0
            skip = max(0, min(skip, stop - t // 60))
            if t % 60 == 1:
                t += skip * 60
                running += skip
                virtual += skip
        elif diff > 180 or diff <= -180:  # the clock jumped: run everything, once
            virtual = running
            queued = matches(running, wild=True, fixed=True)
        elif diff > 5:  # DST begins: wildcard now, fixed-time for each minute missed
            queued = matches(running, wild=True, fixed=False)
            while True:
                if queued:
                    run(t)
                    t, queued = t + 10, False
                virtual += 1
                queued = matches(virtual, wild=False, fixed=True)
                if not (virtual < running and clock_of(t) == running):
                    break
        elif diff > 0:  # woke late: every job for each minute missed
            while virtual < running:
                if queued:
                    run(t)
                    t, queued = t + 10, False
                virtual += 1
                queued = matches(virtual, wild=True, fixed=True)
        else:  # DST ends: wildcard only, virtual time waits
            queued = matches(running, wild=True, fixed=False)
        if queued:  # job_runqueue() after the switch
            run(t)
    return out[:count]


def _bisect(starts: list[int], minute: int) -> int:
    """Index of the last change at or before ``minute``."""
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if starts[mid] <= minute:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1
