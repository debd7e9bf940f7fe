"""Cron expressions read and run the way Debian's cron reads and runs a crontab line.

Pure functions, no clock: :func:`parse` reads an expression by the grammar of Debian's
``entry.c`` (crontab(5)) and normalises it for croniter, which stays the evaluator of
which wall-clock times match; :mod:`after.cronclock` turns those matches into real
instants by the rules of Debian's ``cron.c``. Why each rule is what it is:

- **Day rule.** Day of month and day of week combine with OR only when *both* fields
  are restricted, and "restricted" is decided by the field's first character: a field
  that starts with ``*`` (``*``, ``*/2``, ``*,7``) makes it AND. croniter's default is
  OR whenever neither field is exactly ``*``, so ``day_or`` is chosen here.
- **Ranges.** croniter widens an equal-bound range (``5-5``, ``15-15/2``) to the whole
  field; such a range is rewritten to its single value before croniter sees it. Every
  field is handed over as the explicit list of values it stands for, so croniter's own
  reading of ranges, steps, names and ``7`` (Sunday) no longer matters.
- **Fixed-time or wildcard.** Debian calls a line *wildcard* when its minute or hour
  field starts with ``*``, else *fixed-time*. That class decides what a daylight-saving
  change does (see :mod:`after.cronclock`).
- **Refused** (:class:`CronError`, naming the field): what Debian's crontab refuses
  (a step without a range, ``5/10``; a value out of range; a zero step), a reversed range
  (``5-1``: Debian accepts it and never runs it), ``@reboot`` (no time), and extensions
  croniter evaluates differently from what they mean elsewhere.
- **Extensions** (beyond Debian's grammar, documented in the README): a leading seconds
  field (six fields), ``L`` (last day of the month) in day of month, ``n#k`` (the k-th
  weekday n of the month) in day of week when day of month is ``*``, and ``?`` (same as
  ``*``) in either day field.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from datetime import datetime

from croniter import CroniterError, croniter


class CronError(ValueError):
    """An expression After does not run; ``field`` names the part at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NeverFires(CronError):
    """An expression with no run at all, or none within the horizon of
    :func:`after.cronclock.next_run` after the given instant."""


#: Debian's shortcuts (``entry.c``). Their flags follow from the text they stand for:
#: ``@hourly`` is wildcard (its hour is ``*``), the others fixed-time.
SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {name: i + 1 for i, name in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day of month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day of week", 0, 7, _DAYS)

_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9a-z]*))?$", re.IGNORECASE)
_YEAR = re.compile(r"[0-9]{4}(-[0-9]{4})?")
_NTH = re.compile(r"^([0-9a-z]+)#([0-9]+)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed expression: what croniter evaluates, and the Debian flags that go with it."""

    text: str
    #: The normalised expression croniter evaluates (seconds first when ``seconds``).
    expr: str
    #: croniter's ``day_or``: True when both day fields are restricted (neither starts with ``*``).
    day_or: bool
    #: Debian's fixed-time class: neither the minute nor the hour field starts with ``*``.
    fixed: bool
    seconds: bool


def _number(text: str, field: _Field, *, what: str) -> int:
    if field.names is not None and text.lower() in field.names:
        return field.names[text.lower()]
    if not text.isdigit():
        raise CronError(f"{field.name}: {text!r} is not a number{' or a name' if field.names else ''}", field=field.name)
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name}: {what} {value} is out of range {field.low}-{field.high}", field=field.name)
    return value


def _values(text: str, field: _Field) -> set[int]:
    """The values a field of Debian's grammar stands for: ``list = range {"," range}``."""
    out: set[int] = set()
    for item in text.split(","):
        m = _ITEM.match(item)
        if not m:
            raise CronError(f"{field.name}: cannot read {item!r}", field=field.name)
        star, first, last, step = m.groups()
        if star:
            lo, hi = field.low, field.high
        else:
            lo = _number(first, field, what="value")
            if last is None and step is not None:
                raise CronError(f"{field.name}: a step needs a range ({item!r}: write {first}-{field.high}/{step} or */{step})", field=field.name)
            hi = lo if last is None else _number(last, field, what="value")
            if hi < lo:
                raise CronError(f"{field.name}: reversed range {item!r} (Debian's cron accepts it and never runs it)", field=field.name)
        by = 1
        if step is not None:
            if not step.isdigit() or int(step) == 0:
                raise CronError(f"{field.name}: step in {item!r} must be a number above 0", field=field.name)
            by = int(step)
        out.update(range(lo, hi + 1, by))
    if field is _DOW and 7 in out:
        out.discard(7)
        out.add(0)  # entry.c: "make sundays equivalent"
    return out


def _listed(values: set[int], field: _Field) -> str:
    full = set(range(field.low, field.high + 1)) - ({7} if field is _DOW else set())
    return "*" if values == full else ",".join(str(v) for v in sorted(values))


def _dom_field(text: str) -> tuple[str, frozenset[int] | None]:
    if text == "?":
        return "*", frozenset(range(1, 32))
    items = text.split(",")
    if "L" in (i.upper() for i in items):
        rest = [i for i in items if i.upper() != "L"]
        values = _values(",".join(rest), _DOM) if rest else set()
        return ",".join(["L", *(str(v) for v in sorted(values))]), None
    if any(c in i.upper() for i in items for c in "LW"):
        raise CronError(f"day of month: {text!r}: only L (the last day) is supported of L and W", field=_DOM.name)
    values = _values(text, _DOM)
    return _listed(values, _DOM), frozenset(values)


def _dow_field(text: str, *, dom_star: bool) -> str:
    if text == "?":
        return "*"
    m = _NTH.match(text)
    if m:
        day = _number(m.group(1), _DOW, what="weekday") % 7
        nth = int(m.group(2))
        if not 1 <= nth <= 5:
            raise CronError(f"day of week: {text!r}: the week must be 1-5", field=_DOW.name)
        if not dom_star:
            raise CronError(f"day of week: {text!r} needs a day of month of * (croniter cannot combine # with one)", field=_DOW.name)
        return f"{day}#{nth}"
    if "#" in text or "L" in text.upper():
        raise CronError(f"day of week: {text!r}: only one n#k (k-th weekday n) is supported, alone; L is not", field=_DOW.name)
    return _listed(_values(text, _DOW), _DOW)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Cron:
    """``text`` read as Debian's crontab reads a schedule, or CronError naming the field."""
    if not isinstance(text, str):
        raise CronError(f"not a cron expression: {text!r}")
    source = text.strip()
    if source.startswith("@"):
        if source.lower() == "@reboot":
            raise CronError("@reboot has no time: After runs tasks at times, not at boot")
        if source.lower() not in SHORTCUTS:
            raise CronError(f"unknown shortcut {source!r} (known: {', '.join(SHORTCUTS)})")
        source = SHORTCUTS[source.lower()]
    fields = source.split()
    if len(fields) in (6, 7) and _YEAR.fullmatch(fields[-1]):
        raise CronError(f"a year field is not supported (six fields are seconds first): {text!r}", field=_DOW.name if len(fields) == 6 else None)
    if len(fields) not in (5, 6):
        raise CronError(f"expected 5 fields (or 6 with seconds first), got {len(fields)}: {text!r}")
    seconds = len(fields) == 6
    sec = ""
    if seconds:
        sec_text, *fields = fields
        sec = _listed(_values(sec_text, _SECOND), _SECOND)
    minute_t, hour_t, dom_t, month_t, dow_t = fields
    minute = _listed(_values(minute_t, _MINUTE), _MINUTE)
    hour = _listed(_values(hour_t, _HOUR), _HOUR)
    months = frozenset(_values(month_t, _MONTH))
    dom_star = dom_t.startswith(("*", "?"))
    dow_star = dow_t.startswith(("*", "?"))
    dom, doms = _dom_field(dom_t)
    dow = _dow_field(dow_t, dom_star=dom_star)
    day_or = not (dom_star or dow_star)
    if day_or and (dom == "*" or dow == "*"):
        # Both restricted, one to every day (``1-31``): OR of it is every day. croniter
        # would read a lone ``*`` as "the other field decides".
        dom, dow, doms, day_or = "*", "*", frozenset(range(1, 32)), False
    parts = [minute, hour, dom, _listed(set(months), _MONTH), dow]
    expr = " ".join([sec, *parts] if seconds else parts)
    cron = Cron(text=text, expr=expr, day_or=day_or, fixed=not (minute_t.startswith("*") or hour_t.startswith("*")), seconds=seconds)
    if not day_or and doms is not None and not any(d <= _MONTH_DAYS[m] for m in months for d in doms):
        raise NeverFires(f"{text!r} never fires: no month among its months has such a day")
    try:
        croniter(expr, datetime(2000, 1, 1), day_or=day_or, second_at_beginning=seconds)
    except (CroniterError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CronError(f"{text!r} is not supported: {exc}") from None
    return cron


#: The most days each month has (February: 29, in leap years).
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
