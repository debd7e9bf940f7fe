"""``GET /events``: server-sent events of task status changes, fed by the ``_changes`` feed.

The scheduler already follows the feed; it hands each batch to :meth:`EventHub.publish`,
which fans it out to the connected clients (a bounded queue each: a client too slow to
keep up is disconnected and resumes with ``Last-Event-ID``, rather than making the
daemon buffer without limit). Event ids are CouchDB sequences, so a client that
reconnects with ``Last-Event-ID`` first gets what it missed, read from the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from after import model
from after.store import Store

QUEUE = 1000


def event_of(change: Mapping[str, Any]) -> dict[str, Any] | None:
    doc = change.get("doc") or {}
    if change.get("deleted"):
        return {"id": change.get("id"), "status": "deleted"}
    if not model.is_task(doc):
        return None
    return {
        "id": doc.get("_id"),
        "status": doc.get("status"),
        "worker": doc.get("worker"),
        "job": (doc.get("job") or {}).get("name"),
        "date": doc.get("date"),
        "rev": doc.get("_rev"),
        "error": (doc.get("error") or {}).get("message") if isinstance(doc.get("error"), dict) else None,
    }


class EventHub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.clients: set[asyncio.Queue[tuple[Any, dict[str, Any]] | None]] = set()

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
                    self.clients.discard(q)
                    with contextlib.suppress(asyncio.QueueFull):
                        q.get_nowait()
                        q.put_nowait(None)
                    break


def _matches(event: Mapping[str, Any], worker: str | None, task: str | None) -> bool:
    if worker and event.get("worker") != worker:
        return False
    return not (task and event.get("id") not in (task, f"task:{task}"))


def _frame(seq: Any, event: Mapping[str, Any]) -> bytes:
    seq_text = seq if isinstance(seq, str) else json.dumps(seq)
    return f"id: {seq_text}\nevent: task\ndata: {json.dumps(event)}\n\n".encode()


async def stream(request: web.Request, hub: EventHub) -> web.StreamResponse:
    worker = request.query.get("worker")
    task = request.query.get("task")
    last_id = request.headers.get("Last-Event-ID") or request.query.get("since")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    q: asyncio.Queue[tuple[Any, dict[str, Any]] | None] = asyncio.Queue(QUEUE)
    hub.clients.add(q)
    try:
        await resp.write(b": connected\n\n")
        if last_id:
            since: Any = int(last_id) if last_id.isdigit() else last_id
            missed, _ = await hub.store.changes(since, timeout=0.1)
            for change in missed:
                ev = event_of(change)
                if ev is not None and _matches(ev, worker, task):
                    await resp.write(_frame(change.get("seq"), ev))
        while True:
            try:
                item = await asyncio.wait_for(q.get(), timeout=15)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            seq, ev = item
            if _matches(ev, worker, task):
                await resp.write(_frame(seq, ev))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.clients.discard(q)
    return resp
