"""Finish reports, coalesced: the reports of jobs that end within a few milliseconds of
each other go in one batch call (``POST /workers/{name}/finish``), so a worker running
a hundred short jobs at once costs the daemon a call per batch, not per task.

A report that JSON cannot carry (a result with NaN, a set, an object) is replaced by a
failure saying so, so one job's result never spoils the batch; a batch the daemon
refuses whole (too large) is sent again one task at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

from after.client.wire import CallError, Refused, Wire, encode

log = logging.getLogger("after.client")

#: A batch is sent when it holds this many reports or bytes (under the daemon's 1 MiB
#: default body limit), or ``window`` seconds after its first report.
MAX_BATCH = 500
MAX_BYTES = 256 * 1024


def not_json(item: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """The report of a job whose result JSON cannot carry: failed for good."""
    message = f"the job's result is not JSON: {type(exc).__name__}: {exc}"
    return {"id": item["id"], "lease": item["lease"], "status": "failed", "error": {"reason": "result", "message": message, "retryable": False}}


class Finisher:
    """Sends finish reports in batches; :meth:`finish` returns once its report is answered."""

    def __init__(self, wire: Wire, *, window: float = 0.005) -> None:
        self.wire = wire
        self.window = window
        self._pending: list[tuple[bytes, asyncio.Future[dict[str, Any]]]] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def finish(self, item: dict[str, Any]) -> dict[str, Any]:
        """Report one task's end (``id``, ``lease``, ``status`` and the rest of a finish
        body); the daemon's answer for it (``ok`` false: it was not this worker's any more)."""
        try:
            data = encode(item)
        except (TypeError, ValueError) as exc:
            data = encode(not_json(item, exc))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((data, fut))
        self._bytes += len(data)
        if len(self._pending) >= MAX_BATCH or self._bytes >= MAX_BYTES:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._bytes = self._pending, [], 0
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[dict[str, Any]]]]) -> None:
        body = b'{"tasks":[' + b",".join(data for data, _ in batch) + b"]}"
        try:
            answer = await self.wire.call("/finish", body, timeout=90)
            results = list(answer.get("results") or [])
        except Refused as exc:
            if len(batch) > 1:
                await asyncio.gather(*(self._send([one]) for one in batch))
                return
            results = [await self._refused(batch[0][0], exc)]
        except Exception as exc:  # never leave a job waiting on its report
            log.exception("finish: %s", exc)
            results = [{"ok": False, "error": "client", "message": str(exc)}] * len(batch)
        for (_, fut), result in zip(batch, results + [{"ok": False, "error": "missing"}] * (len(batch) - len(results)), strict=True):
            if not result.get("ok"):
                log.info("task %s: its finish was not taken (%s: %s): dropped", result.get("id"), result.get("error"), result.get("message"))
            if not fut.done():
                fut.set_result(result)

    async def _refused(self, data: bytes, exc: Refused) -> dict[str, Any]:
        """One report the daemon will not take (too large, invalid): end the task failed,
        saying why, rather than leave it to time out."""
        item = json.loads(data)
        log.error("task %s: finish refused (%s); reporting it failed", item.get("id"), exc)
        error = {"reason": "report", "message": f"the worker's finish report was refused: {exc.message}"[:10_000], "retryable": False}
        try:
            answer = await self.wire.call(f"/tasks/{quote(str(item['id']), safe='')}/finish", {"lease": item["lease"], "status": "failed", "error": error})
        except CallError as again:
            return {"id": item.get("id"), "ok": False, "error": again.error, "message": again.message}
        return {"ok": True, **answer}
