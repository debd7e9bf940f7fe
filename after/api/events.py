"""``GET /events``: server-sent events of task changes, fed by the CouchDB ``_changes`` feed.

The scheduler already follows the feed; it hands each batch to :meth:`EventHub.publish`,
which fans it out to the connected clients (a bounded queue each: a client too slow to
keep up is disconnected and resumes with ``Last-Event-ID``, rather than making the
daemon buffer without limit). One event per change of a task document: a status change,
and also progress and log updates of a running task (the status then repeats).

Event ids are CouchDB sequences, so a client that reconnects with ``Last-Event-ID``
first gets what it missed, read from the feed with ``feed=normal`` (answers at once,
never waits), then the live events. A change can reach a client both ways (it happened
while the replay was read): it is sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from after import model
from after.errors import InvalidInput
from after.store import Store

log = logging.getLogger("after.api")

#: Events buffered per client before it is disconnected as too slow.
QUEUE = 1000
#: Changes read per request while replaying.
REPLAY_BATCH = 500
#: How many replayed changes are remembered to drop their live duplicates (more than QUEUE).
DEDUP = 5 * QUEUE
#: A comment line this often keeps proxies and browsers from closing an idle stream.
KEEPALIVE = 15.0
#: An integer (pouchdb-server) or CouchDB's opaque ``N-base64`` sequence.
SEQ = re.compile(r"^[0-9]{1,20}(-[A-Za-z0-9_-]{1,4000})?$")

Item = tuple[Any, dict[str, Any]] | None


def event_of(change: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event for one ``_changes`` row, or None when it is not about a task."""
    doc = change.get("doc") or {}
    if change.get("deleted"):
        task_id = change.get("id")
        if not isinstance(task_id, str) or task_id.startswith("_design/"):
            return None
        revs = change.get("changes") or [{}]
        event = {"id": task_id, "status": "deleted", "rev": (revs[0] or {}).get("rev") or doc.get("_rev")}
        if isinstance(doc.get("worker"), str):
            event["worker"] = doc["worker"]  # REST deletions keep it in the tombstone
        return event
    if not model.is_task(doc):
        return None
    job = doc.get("job")
    error = doc.get("error")
    return {
        "id": doc.get("_id"),
        "status": doc.get("status"),
        "worker": doc.get("worker"),
        "job": job.get("name") if isinstance(job, dict) else job,
        "date": doc.get("date"),
        "rev": doc.get("_rev"),
        "error": error.get("message") if isinstance(error, dict) else None,
    }


class EventHub:
    """Fans the scheduler's change batches out to the connected ``/events`` clients."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clients: set[asyncio.Queue[Item]] = set()

    def publish(self, batch: Iterable[Mapping[str, Any]], last_seq: Any) -> None:
        events = [(c.get("seq", last_seq), e) for c in batch if (e := event_of(c)) is not None]
        if not events:
            return
        for q in list(self.clients):
            for item in events:
                try:
                    q.put_nowait(item)
                except asyncio.QueueFull:
                    # Too slow: end its stream; the client resumes from its last id.
                    self._end(q)
                    break

    def _end(self, q: asyncio.Queue[Item]) -> None:
        self.clients.discard(q)
        with contextlib.suppress(asyncio.QueueFull, asyncio.QueueEmpty):
            if q.full():
                q.get_nowait()
            q.put_nowait(None)

    def close(self) -> None:
        """End every stream (daemon shutdown: clients reconnect to the next daemon)."""
        for q in list(self.clients):
            self._end(q)


def _matches(event: Mapping[str, Any], worker: str | None, task: str | None) -> bool:
    if worker and event.get("worker") != worker:
        return False
    return not (task and event.get("id") not in (task, f"task:{task}"))


def _frame(seq: Any, event: Mapping[str, Any]) -> bytes:
    seq_text = seq if isinstance(seq, str) else json.dumps(seq)
    return f"id: {seq_text}\nevent: task\ndata: {json.dumps(event)}\n\n".encode()


def parse_last_id(raw: str | None) -> Any:
    """``Last-Event-ID`` (or ``?since=``) as a feed position, or a 400 naming it."""
    if raw is None or raw == "":
        return None
    if not SEQ.match(raw):
        raise InvalidInput("Last-Event-ID: expected an event id this stream sent (a CouchDB sequence)", field="Last-Event-ID")
    return int(raw) if raw.isdigit() else raw


async def _replay_batch(hub: EventHub, since: Any) -> tuple[list[dict[str, Any]], Any]:
    try:
        return await hub.store.changes(since, feed="normal", limit=REPLAY_BATCH, timeout=10)
    except InvalidInput:
        # CouchDB refuses a sequence it never gave out (400); pouchdb-server ignores it.
        raise InvalidInput("Last-Event-ID: not a sequence of this database", field="Last-Event-ID") from None


async def stream(request: web.Request, hub: EventHub) -> web.StreamResponse:
    worker = request.query.get("worker") or None
    task = request.query.get("task") or None
    since = parse_last_id(request.headers.get("Last-Event-ID") or request.query.get("since"))
    q: asyncio.Queue[Item] = asyncio.Queue(QUEUE)
    hub.clients.add(q)  # before the replay is read: nothing falls between the two
    try:
        # Read the first replayed batch before answering, so a bad id or a store outage
        # is a plain JSON error (400, 503) rather than a broken stream.
        batch: list[dict[str, Any]] = []
        if since is not None:
            batch, since = await _replay_batch(hub, since)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
    except BaseException:
        hub.clients.discard(q)
        raise
    try:
        await resp.write(b"retry: 2000\n: connected\n\n")
        replayed: deque[tuple[Any, Any]] = deque(maxlen=DEDUP)
        seen: set[tuple[Any, Any]] = set()
        while batch:
            for change in batch:
                ev = event_of(change)
                if ev is None:
                    continue
                key = (ev.get("id"), ev.get("rev"))
                if len(replayed) == replayed.maxlen:
                    seen.discard(replayed[0])
                replayed.append(key)
                seen.add(key)
                if _matches(ev, worker, task):
                    await resp.write(_frame(change.get("seq"), ev))
            if len(batch) < REPLAY_BATCH:
                break
            batch, since = await _replay_batch(hub, since)
        while True:
            try:
                item = await asyncio.wait_for(q.get(), timeout=KEEPALIVE)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            seq, ev = item
            if seen and (ev.get("id"), ev.get("rev")) in seen:
                continue
            if _matches(ev, worker, task):
                await resp.write(_frame(seq, ev))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away
    except Exception as exc:
        # Headers are sent: no error body is possible any more; end the stream, the
        # client reconnects with its Last-Event-ID.
        log.warning("/events stream ended: %s", exc)
    finally:
        hub.clients.discard(q)
    return resp
