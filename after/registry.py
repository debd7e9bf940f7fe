"""Every daemon's heartbeat document: who runs, where, with which workers. One view of all.

Each daemon writes ``daemon:<host>:<pid>`` (``"type": "daemon"``) every
``scheduler.heartbeat_seconds``: host, pid, version, the URL of its REST port, its
workers and their states, and ``until``, the time after which it counts as gone. The
documents of all daemons reach every daemon through the changes feed (and one read at
start), so ``GET /daemons`` and ``GET /workers`` on any daemon show the whole deployment.

The scheduler uses the live daemons that run a worker name to split that worker's tasks
(:func:`after.quorum.rendezvous`), and the heartbeat write doubles as a probe of the
write quorum: it is written with ``w`` = majority like every decisive write, so a daemon
whose heartbeat comes back 202 knows it is cut off from most of the cluster.

A daemon that stops heartbeating is shown ``gone`` once its ``until`` passes; documents
of daemons gone for longer than ``GONE_KEPT`` are deleted by the next daemon that beats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from after import __version__, timing
from after.errors import AfterError, Conflict, Uncertain
from after.loops import Loops
from after.store import Store

log = logging.getLogger("after.registry")

TYPE = "daemon"
#: Heartbeat periods without a beat after which a daemon counts as gone (generous: a daemon
#: busy with a burst of work beats late, and a daemon wrongly taken for gone has its share
#: claimed by the others, racing it).
GONE_AFTER = 10
#: How long the document of a daemon that is gone stays listed.
GONE_KEPT = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def daemon_id() -> str:
    return f"daemon:{socket.gethostname()}:{os.getpid()}"


def is_daemon(doc: Mapping[str, Any]) -> bool:
    return doc.get("type") == TYPE and isinstance(doc.get("_id"), str)


def state_of(doc: Mapping[str, Any], now: datetime) -> str:
    """``live`` while its heartbeat holds, ``stopped`` after a clean shutdown, else ``gone``."""
    if doc.get("state") == "stopped":
        return "stopped"
    try:
        until = timing.parse_date(doc.get("until"), field="until")
    except AfterError:
        return "gone"
    return "live" if until > now else "gone"


def runs_worker(doc: Mapping[str, Any], worker: str) -> bool:
    return any(isinstance(w, Mapping) and w.get("name") == worker and w.get("running") for w in doc.get("workers") or [])


class Registry:
    """This daemon's heartbeat, and what it knows of the others'."""

    def __init__(
        self,
        store: Store,
        me: str,
        *,
        describe: Callable[[], dict[str, Any]],
        interval: float = 5.0,
        on_quorum: Callable[[bool], None] | None = None,
        loops: Loops | None = None,
    ) -> None:
        self.store = store
        #: Where the heartbeat loop's health is kept (the scheduler's, in a daemon).
        self.loops = loops or Loops(store)
        self.me = me
        self.describe = describe
        self.interval = interval
        self.on_quorum = on_quorum or (lambda ok: None)
        self.docs: dict[str, dict[str, Any]] = {}
        self.started = utcnow()
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()
        self._clock = ""
        #: The candidates last computed per worker name (to log when they change).
        self._seen: dict[str, list[str]] = {}
        self._candidates: dict[str, list[str]] = {}

    # -- what is known -------------------------------------------------------------------------

    def observe(self, doc: Mapping[str, Any]) -> None:
        """A daemon document read from the database (the changes feed, or :meth:`load`)."""
        if not is_daemon(doc):
            return
        self._candidates.clear()
        if doc["_id"] == self.me:
            # Our own heartbeat came back through the feed: the feed has caught up to it.
            self._clock = max(self._clock, str(doc.get("beat", "")))
        old = self.docs.get(doc["_id"])
        if old is not None and str(old.get("beat", "")) > str(doc.get("beat", "")):
            return
        self.docs[doc["_id"]] = dict(doc)

    def clock(self) -> datetime:
        """The time the others' heartbeats are judged against: our own last beat seen in the feed.

        Not the wall clock: when this daemon's changes feed lags (a burst of work, a slow
        store), the others' heartbeats arrive late too, and judged by the wall clock they
        would look gone, and this daemon would claim their share (racing them). Judged by
        how far the feed has come, a daemon is gone only when the feed has passed its
        ``until`` without a newer beat of it. Clock skew between hosts matters less too.
        """
        try:
            return timing.parse_date(self._clock, field="beat") if self._clock else utcnow()
        except AfterError:
            return utcnow()

    def forget(self, doc_id: str) -> None:
        if self.docs.pop(doc_id, None) is not None:
            self._candidates.clear()

    def live(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or self.clock()
        return [d for d in self.docs.values() if state_of(d, now) == "live"]

    def candidates(self, worker: str, now: datetime | None = None) -> list[str]:
        """The live daemons that run ``worker`` (always including this one).

        Asked for every due task of a tick: kept per worker until a daemon document arrives
        (the only thing that changes the answer, our own beat moving :meth:`clock` included).
        """
        if now is None and worker in self._candidates:
            return self._candidates[worker]
        out = {d["_id"] for d in self.live(now) if runs_worker(d, worker)}
        out.add(self.me)
        found = sorted(out)
        if self._seen.get(worker) != found:
            log.info("worker %s runs on %d daemon(s): %s (as of %s)", worker, len(found), ", ".join(found), timing.fmt(self.clock()))
            self._seen[worker] = found
        if now is None:
            self._candidates[worker] = found
        return found

    def ticking(self, daemon: str) -> bool:
        """Whether a daemon's last heartbeat says its scheduler ticked lately (as of :meth:`clock`)."""
        doc = self.docs.get(daemon) or {}
        try:
            tick = timing.parse_date(doc.get("tick"), field="tick")
        except AfterError:
            return False
        return (self.clock() - tick).total_seconds() < 3 * self.interval + 10

    def listing(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every known daemon, live or not, newest heartbeat first (``GET /daemons``)."""
        now = now or self.clock()
        out = []
        for doc in self.docs.values():
            item = {k: v for k, v in doc.items() if not k.startswith("_") and k != "type"}
            item["id"] = doc["_id"]
            item["state"] = state_of(doc, now)
            item["here"] = doc["_id"] == self.me
            out.append(item)
        out.sort(key=lambda d: str(d.get("beat", "")), reverse=True)
        return out

    def workers_elsewhere(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """The workers of the other live daemons, each with its daemon's id and host."""
        out = []
        for doc in self.live(now):
            if doc["_id"] == self.me:
                continue
            for w in doc.get("workers") or []:
                if isinstance(w, Mapping):
                    # A remote worker's own host is kept; a local one's is its daemon's.
                    out.append({"host": doc.get("host"), **w, "daemon": doc["_id"], "here": False})
        return out

    # -- the heartbeat --------------------------------------------------------------------------

    def body(self, now: datetime, *, state: str = "running") -> dict[str, Any]:
        info = self.describe()
        return {
            "_id": self.me,
            "type": TYPE,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "started": timing.fmt(self.started),
            "beat": timing.fmt(now),
            "until": timing.fmt(now + timedelta(seconds=self.interval * GONE_AFTER)),
            "state": state,
            **info,
        }

    async def beat(self, now: datetime | None = None, *, state: str = "running") -> None:
        """Write this daemon's document once (revision-checked against what we hold)."""
        now = now or utcnow()
        doc = self.body(now, state=state)
        held = self.docs.get(self.me)
        if held and held.get("_rev"):
            doc["_rev"] = held["_rev"]
        res = (await self.store.write_many([doc]))[self.me]
        if isinstance(res, Conflict):
            # Our revision is stale (a conflict's resolution, a restore): take the current one.
            current = (await self.store.get_many([self.me])).get(self.me)
            if current is not None:
                doc["_rev"] = current["_rev"]
            else:
                doc.pop("_rev", None)
            res = (await self.store.write_many([doc]))[self.me]
        if isinstance(res, dict):
            self.docs[self.me] = res
            self.on_quorum(True)
        elif isinstance(res, Uncertain):
            self.docs[self.me] = res.doc
            self.on_quorum(False)
        else:
            raise res

    async def load(self) -> None:
        """Read every daemon document once (later ones arrive through the changes feed)."""
        for doc in await self.store.by_prefix(f"{TYPE}:"):
            self.observe(doc)

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete the documents of daemons gone for longer than :data:`GONE_KEPT`."""
        now = now or self.clock()
        old = []
        for doc in self.docs.values():
            if doc["_id"] == self.me or state_of(doc, now) == "live":
                continue
            try:
                until = timing.parse_date(doc.get("until"), field="until")
            except AfterError:
                until = timing.EPOCH
            if now - until > GONE_KEPT and doc.get("_rev"):
                old.append({"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True, "type": TYPE})
        if not old:
            return 0
        results = await self.store.write_many(old)
        done = [i for i, r in results.items() if isinstance(r, dict)]
        for doc_id in done:
            self.forget(doc_id)
        return len(done)

    def soon(self) -> None:
        """Beat now rather than at the next period (a worker started or stopped)."""
        self._soon.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="heartbeat")

    async def stop(self) -> None:
        """Stop beating and say so (``state: stopped``), so the others stop waiting for us."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await asyncio.wait_for(self.beat(state="stopped"), timeout=5)
        except (AfterError, TimeoutError) as exc:
            log.info("could not record this daemon as stopped: %s", exc)

    async def _loop(self) -> None:
        # Retried at most a heartbeat interval apart, as before the loops wrapper: a longer
        # backoff would let the other daemons take this one for gone.
        await self.loops.run("heartbeat", self._beat_and_sweep, pace=self._pace, cap=self.interval)

    async def _beat_and_sweep(self) -> None:
        await self.beat()
        await self.sweep()

    async def _pace(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                await self._soon.wait()
        self._soon.clear()


def merge_workers(here: Iterable[dict[str, Any]], elsewhere: Iterable[dict[str, Any]], *, me: str, host: str) -> list[dict[str, Any]]:
    """This daemon's workers (marked ``here``) followed by the others', sorted by name then host."""
    out = [{"host": host, **w, "daemon": me, "here": True} for w in here]
    out += list(elsewhere)
    out.sort(key=lambda w: (not w.get("here"), str(w.get("name")), str(w.get("host"))))
    return out
