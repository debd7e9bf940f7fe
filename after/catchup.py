"""Catch-up without waiting for a view: a restarted daemon reads what changed while it was down
from the ``_changes`` feed, since a checkpoint of its own, instead of the ``agenda`` view.

Why: the view answers only once CouchDB has indexed every document written since it last
looked (through the external JavaScript engine on CouchDB, document by document): after
downtime the first catch-up waited seconds to minutes for that index. The feed and
``_all_docs`` are the database's own indexes, always current, so nothing waits.

What a checkpoint says (:class:`Checkpoint`), and why it is enough: *every task whose agenda
time was <= ``horizon`` in the database's state at feed position ``seq`` is one of ``ids``*.
It is a snapshot of the scheduler's in-memory agenda (which holds exactly those tasks: the
rolling window), taken in one step of the event loop, so it only ever covers changes that
were applied in memory. At the next start, the current state of ``ids`` (one ``_all_docs``
read) plus every change after ``seq`` (the feed) is every task with an agenda time up to
``horizon``: the overdue backlog, oldest due first (the in-memory agenda orders it). What
lies beyond ``horizon`` is not needed before ``horizon``; the window loop's first view query
brings it, in the background, before then (:func:`first_refresh_delay`). Far-future tasks in
the feed are dropped as the view path drops them (beyond the horizon), so memory stays the
window's.

Where it lives: a file in the daemon's state directory, not a ``_local/`` document. It
describes one daemon's memory (the state directory is one daemon's: its lock says so); it
holds the window's ids, which can be many, and it is rewritten every few seconds: a local
atomic file write costs CouchDB nothing, where a ``_local`` document of that size would be a
large write into the store the whole system waits on. The database it belongs to is named
by ``_local/after-database`` (:func:`database_instance`), a random id written once into the
database: a checkpoint of another database (or of this one deleted and created again, whose
feed positions start over) does not match and is ignored. Feed positions are opaque (an
integer on the embedded server, a string on CouchDB): stored and sent back, never parsed.

When the view is used instead (:func:`refusal`, :func:`too_long`): no checkpoint (first
start), one of another database or state directory, one whose horizon is already past
(down longer than about two thirds of a window: tasks unknown to the snapshot may be due),
or a feed longer than :data:`MAX_FEED` changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from after.errors import AfterError, Conflict, NotFound
from after.store import Store

log = logging.getLogger("after.catchup")

#: The checkpoint file in the state directory.
FILENAME = "catchup.json"
#: Its format; a file of another version is ignored (the view path runs once).
VERSION = 1
#: The ``_local`` document naming the database instance.
INSTANCE_DOC = "after-database"
#: How often the checkpoint is rewritten while the daemon runs (and once at a clean stop).
#: A crash re-reads at most this much more of the feed.
EVERY_SECONDS = 5.0
#: Changes read per feed request, and ids per ``_all_docs`` request. Measured for 10,000
#: changes on the embedded server: 5,000 a page with the next page read while this one is
#: taken in, 2.3 s; 2,000 a page so, 2.9-3.1 s; 5,000 a page one after the other, 2.9-3.6 s.
PAGE = 5000
#: Beyond this many changes since the checkpoint, the view is used. Measured on this 2-core
#: machine, the feed with documents reads about 4,000-10,000 changes/s, so 100,000 is 10-25 s
#: before the first task; a database written that fast while this daemon was down is one
#: that other daemons kept running on, so its view is indexed and answers sooner. Below it
#: the feed is always cheaper than the view: the view's indexer must read the same changes
#: and run JavaScript on each.
MAX_FEED = 100_000


@dataclass(frozen=True)
class Checkpoint:
    """Every task with agenda time <= ``horizon`` at feed position ``seq`` is in ``ids``."""

    instance: str  #: the database's ``_local/after-database`` id
    database: str  #: the database's name
    owner: str  #: the state directory that wrote it
    seq: Any  #: the feed position (opaque)
    horizon: float  #: epoch seconds
    ids: tuple[str, ...]
    written: float  #: epoch seconds


def encode(cp: Checkpoint) -> str:
    return json.dumps(
        {
            "version": VERSION,
            "instance": cp.instance,
            "database": cp.database,
            "owner": cp.owner,
            "seq": cp.seq,
            "horizon": cp.horizon,
            "written": cp.written,
            "ids": list(cp.ids),
        }
    )


def decode(text: str) -> Checkpoint | None:
    """The checkpoint in ``text``, or None for anything else (a torn, foreign or old file)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        return None
    ids, seq = raw.get("ids"), raw.get("seq")
    strings = ("instance", "database", "owner")
    numbers = ("horizon", "written")
    if not all(isinstance(raw.get(k), str) for k in strings) or not all(isinstance(raw.get(k), int | float) for k in numbers):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not isinstance(seq, str | int) or isinstance(seq, bool):
        return None
    return Checkpoint(raw["instance"], raw["database"], raw["owner"], seq, float(raw["horizon"]), tuple(ids), float(raw["written"]))


def refusal(cp: Checkpoint | None, *, instance: str, database: str, owner: str, now: float, ahead: float) -> str | None:
    """Why ``cp`` cannot be caught up from (the view is used), or None when it can.

    ``ahead`` is the scheduler's claim-ahead: a task is claimed that long before it is due,
    so the snapshot must know every task up to ``now + ahead``.
    """
    if cp is None:
        return "no checkpoint (first start, or it was unreadable)"
    if cp.instance != instance or cp.database != database:
        return f"the checkpoint is of another database ({cp.database}, instance {cp.instance})"
    if cp.owner != owner:
        return f"the checkpoint was written by another daemon (state directory {cp.owner})"
    if cp.horizon <= now + ahead:
        return f"the checkpoint is too old: its window ended {now + ahead - cp.horizon:.0f}s ago (tasks beyond it may be due)"
    return None


def too_long(read: int, pending: int | None, bound: int = MAX_FEED) -> bool:
    """Whether the feed since the checkpoint is too long to catch up from (see :data:`MAX_FEED`).

    ``pending`` is what CouchDB says is left after the changes ``read`` so far (the embedded
    server does not say: then only what was read counts).
    """
    return read + (pending or 0) > bound


def first_refresh_delay(horizon: float, now: float, window: float) -> float:
    """When the window loop's first view query runs after a catch-up: late enough for the
    backlog to be claimed first (the query makes CouchDB index that backlog, which competes
    with the claims for the store: on the embedded server, in its one process), early
    enough to end a third of a window before ``horizon`` (tasks beyond it are unknown until
    it answers). A third of a window at most, like the loop's own pace."""
    return max(0.0, min(window / 3, horizon - now - window / 3))


# -- I/O at the edges -----------------------------------------------------------------------------


class Agenda(Protocol):
    """What catching up needs of the scheduler."""

    seq: Any
    horizon: float

    def observe(self, doc: Mapping[str, Any]) -> None: ...
    def apply_changes(self, batch: Iterable[Mapping[str, Any]]) -> None: ...
    def held_ids(self) -> list[str]: ...


async def database_instance(store: Store) -> str:
    """The id of this database (``_local/after-database``), written by the first daemon
    that finds none. ``_local`` documents are never replicated and vanish with the database:
    a database created again, or replicated elsewhere, gets a new id."""
    for _ in range(3):
        with contextlib.suppress(NotFound):
            doc = await store.get_local(INSTANCE_DOC)
            if isinstance(doc.get("instance"), str):
                return str(doc["instance"])
        with contextlib.suppress(Conflict):  # another daemon wrote it first: read theirs
            instance = uuid.uuid4().hex
            await store.put_local(INSTANCE_DOC, {"instance": instance})
            return instance
    raise AfterError(f"{store.name}: cannot read or write _local/{INSTANCE_DOC}")


class Catchup:
    """One daemon's checkpoint file, and the catch-up from it."""

    def __init__(self, store: Store, state: Path, *, ahead: float, window: float) -> None:
        self.store = store
        self.path = state / FILENAME
        self.owner = str(state.resolve())
        self.ahead = ahead
        self.window = window
        self._instance: str | None = None
        #: How the last start caught up: "feed" or "view" (the log says why).
        self.how: str = ""

    def load(self) -> Checkpoint | None:
        try:
            return decode(self.path.read_text())
        except OSError:
            return None

    async def resume(self, agenda: Agenda) -> float | None:
        """Catch up from the checkpoint: the snapshot's tasks and the feed since, into ``agenda``.

        Returns the delay before the window loop's first view query, or None when the view
        must be used (the reason is logged); ``agenda.seq`` is then left as it was.
        """
        started = time.monotonic()
        try:
            self._instance = await database_instance(self.store)
        except AfterError as exc:
            return self._view(f"the database's id cannot be read ({exc.message})")
        cp = self.load()
        now = time.time()
        why = refusal(cp, instance=self._instance, database=self.store.name, owner=self.owner, now=now, ahead=self.ahead)
        if why is not None or cp is None:
            return self._view(why or "")
        agenda.horizon = max(agenda.horizon, cp.horizon)
        # The server reads the next page while this process takes in the current one (each
        # document is checked: about as costly as reading it), so the two cores overlap.
        # Any order is right: the scheduler keeps the newest revision of each task it sees.
        page = asyncio.create_task(self.store.changes_page(cp.seq, limit=PAGE))
        try:
            for i in range(0, len(cp.ids), PAGE):
                for doc in (await self.store.get_many(cp.ids[i : i + PAGE])).values():
                    agenda.observe(doc)
            read = 0
            while True:
                rows, since, pending = await page
                read += len(rows)
                if too_long(read, pending, MAX_FEED):
                    return self._view(f"more than {MAX_FEED} changes since the checkpoint")
                more = len(rows) >= PAGE
                if more:
                    page = asyncio.create_task(self.store.changes_page(since, limit=PAGE))
                agenda.apply_changes(rows)
                if not more:
                    break
        finally:
            page.cancel()
            if page.done() and not page.cancelled():
                page.exception()  # retrieved: a failure after the one raised here is not news
        agenda.seq = since
        self.how = "feed"
        log.info(
            "caught up from the changes feed: %d task(s) of the checkpoint and %d change(s) since, in %.2fs",
            len(cp.ids),
            read,
            time.monotonic() - started,
        )
        return first_refresh_delay(cp.horizon, now, self.window)

    def _view(self, why: str) -> float | None:
        self.how = "view"
        log.info("catching up from the agenda view: %s", why)
        return None

    def snapshot(self, agenda: Agenda) -> Checkpoint | None:
        """The checkpoint of ``agenda`` now (one synchronous step: consistent with its ``seq``)."""
        if self._instance is None:
            return None
        return Checkpoint(self._instance, self.store.name, self.owner, agenda.seq, agenda.horizon, tuple(agenda.held_ids()), time.time())

    async def save(self, agenda: Agenda) -> None:
        """Write the checkpoint of ``agenda`` (atomically: a crash leaves the old one or the new)."""
        cp = self.snapshot(agenda)
        if cp is not None:
            await asyncio.to_thread(self._write, cp)

    def _write(self, cp: Checkpoint) -> None:
        tmp = self.path.with_name(f"{FILENAME}.tmp")
        tmp.write_text(encode(cp))
        os.replace(tmp, self.path)

