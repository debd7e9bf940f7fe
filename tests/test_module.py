"""``import after.scheduler``: the in-process API against the real server; and retention."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import Couch, Daemon

from after import model, timing
from after.config import Settings
from after.jobs import TaskContext
from after.scheduler import NoDispatcher, Scheduler, connect
from after.store import Store


async def add(ctx: TaskContext, a: int, b: int) -> int:
    ctx.log(f"adding {a} and {b}")
    return a + b


def boom(ctx: TaskContext) -> None:
    raise ValueError("no good")


async def test_run_jobs_in_process_without_a_daemon(couch: Couch, dbname: str) -> None:
    async with connect(couch.url_for(), database=dbname, run={"calc": {"add": add, "boom": boom}}) as after:
        task = await after.schedule("calc", "add", args=[2, 3])
        failed = await after.schedule("calc", "boom", retry={"max": 1, "delay": 0})
        done = await after.wait(task["_id"], timeout=15)
        assert done["status"] == "done" and done["result"] == 5
        assert done["log"] == ["adding 2 and 3"]
        assert done["history"][0]["by"] == "python"
        err = await after.wait(failed["_id"], timeout=15)
        assert err["status"] == "err" and err["attempts"] == 2
        assert err["error"]["type"] == "ValueError"


async def test_in_process_cancel_reschedule_and_cron(couch: Couch, dbname: str) -> None:
    ran: list[float] = []

    async def tick(ctx: TaskContext) -> None:
        ran.append(time.time())

    async with connect(couch.url_for(), database=dbname, run={"cron": {"tick": tick}}) as after:
        later = await after.schedule("cron", "tick", date=time.time() + 3600)
        canceled = await after.cancel(later["_id"])
        assert canceled["status"] == "cancel"
        assert (await after.wait(later["_id"], timeout=5))["status"] == "canceled"
        again = await after.reschedule(later["_id"], time.time())
        assert again["status"] == "reschedule"
        assert (await after.wait(later["_id"], timeout=10))["status"] == "done"
        repeating = await after.schedule("cron", "tick", cron="* * * * * *")
        deadline = time.monotonic() + 10
        while len(ran) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(ran) >= 4
        doc = await after.get(repeating["_id"])
        assert doc["runs"] and doc["status"] in ("reschedule", "schedule", "scheduled")
        await after.cancel(repeating["_id"])
        # Whatever the moment (between runs, or a run ending just then), a cancel is never
        # lost to the next occurrence: it ends canceled.
        assert (await after.wait(repeating["_id"], timeout=30))["status"] == "canceled"


async def test_client_only_schedules_for_a_daemons_worker(daemon: Daemon, couch: Couch, dbname: str) -> None:
    daemon.start_worker("mailer")
    async with connect(couch.url_for(), database=dbname) as after:
        task = await after.schedule("mailer", "shell", args=["echo from python"], date=time.time() + 1)
        done = await after.wait(task["_id"], timeout=15)
    assert done["status"] == "done" and done["result"]["stdout"] == "from python"


async def test_purge_removes_finished_tasks_past_their_retention(settings: Settings) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=8)
    async with Store(settings.couchdb_url, settings.couchdb_database, user=settings.couchdb_user, password=settings.couchdb_password) as store:

        def finished(status: str, updated: datetime, **extra: Any) -> dict[str, Any]:
            doc = model.new_task({"worker": "w", "date": timing.fmt(updated), "job": "noop", **extra}, now=updated)
            model.set_status(doc, status, "worker:w", updated, limit=50)
            return doc

        keep_recent = finished("done", now - timedelta(days=1))
        purge_old = finished("err", old)
        keep_waiting = model.new_task({"worker": "w", "date": timing.fmt(old), "job": "noop"}, now=old)
        purge_short = finished("done", now - timedelta(minutes=10), retention=60)
        keep_long = finished("canceled", old, retention=30 * 86400)
        docs = [keep_recent, purge_old, keep_waiting, purge_short, keep_long]
        results = await store.write_many(docs)
        assert all(isinstance(r, dict) for r in results.values())
        sched = Scheduler(store, settings, NoDispatcher())
        assert await sched.purge(now) == 2
        remaining = await store.get_many(d["_id"] for d in docs)
        assert set(remaining) == {keep_recent["_id"], keep_waiting["_id"], keep_long["_id"]}
