"""A failure is contained to the task that caused it (issue 11): planning, acting on a
task, a job's failing call. Driven through the in-process API and a real daemon, on the
real server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Couch, Daemon

from after import model, timing, triage
from after.embedded import free_port
from after.errors import Unprocessable
from after.jobs import TaskContext
from after.scheduler import Scheduler, connect

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_task_planning_fails_on_is_set_apart_and_the_others_are_planned() -> None:
    good = model.new_task({"worker": "w", "date": timing.fmt(NOW), "job": "noop"}, now=NOW)
    # Passed its checks once, but cannot be planned now (a skip policy needs the next run).
    bad = {**good, "_id": "task:bad", "cron": "0 0 30 2 *", "misfire": {"policy": "skip", "grace": 0}, "date": timing.fmt(NOW - timedelta(hours=1))}
    actions, failed = triage.plan_contained(NOW, [bad, good], ahead=0)
    assert [a.task["_id"] for a in actions] == [good["_id"]]
    assert [t["_id"] for t, _ in failed] == ["task:bad"]
    ended = triage.ended_internal(bad, failed[0][1], where="plan", by="d", now=NOW, limit=50)
    assert ended["status"] == "err" and ended["error"]["reason"] == "internal" and "plan" in ended["error"]["message"]


async def test_an_exception_acting_on_one_task_ends_only_that_task(couch: Couch, dbname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledging one cancel raises (a bug, injected): that task ends err (internal),
    counted; the tick goes on and the other tasks run."""
    ran: list[str] = []

    async def hit(ctx: TaskContext) -> None:
        ran.append(ctx.task["_id"])

    real = Scheduler._acknowledge_cancel

    def failing(self: Scheduler, doc: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        if doc["_id"] == "task:cursed":
            raise RuntimeError("injected")
        return real(self, doc, now)

    monkeypatch.setattr(Scheduler, "_acknowledge_cancel", failing)
    async with connect(couch.url_for(), database=dbname, run={"w": {"hit": hit}}) as after:
        cursed = await after.schedule("w", "hit", date=time.time() + 3600, id="cursed")
        await after.cancel(cursed["_id"])
        ended = await after.wait(cursed["_id"], timeout=30)
        assert ended["status"] == "err" and ended["error"]["reason"] == "internal", ended
        assert "RuntimeError: injected" in ended["error"]["message"]
        fine = await after.schedule("w", "hit", date=time.time())
        assert (await after.wait(fine["_id"], timeout=30))["status"] == "done"
        assert ran == [fine["_id"]]
        assert after.scheduler is not None and after.scheduler.contained["cancel"] == 1


def test_an_http_job_whose_call_is_refused_fails_with_reason_failed(daemon: Daemon) -> None:
    """Finding 9: connection refused is the call failing (``failed``), not the job crashing."""
    daemon.start_worker("web")
    closed = free_port()
    reply = daemon.create({"worker": "web", "date": timing.fmt(datetime.now(UTC)), "job": {"name": "http", "arguments": [f"http://127.0.0.1:{closed}/"]}})
    doc = daemon.wait_status(reply["id"], "err", timeout=60)
    assert doc["error"]["reason"] == "failed", doc["error"]
    assert f"127.0.0.1:{closed}" in doc["error"]["message"]


async def test_a_cron_task_with_no_run_left_ends_err_invalid_after_its_run(couch: Couch, dbname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: a cron that passed its checks but has no next run (its zone's rules
    changed so that every match is a skipped time) ends err, reason invalid, naming
    ``cron``; the run it just made is kept in ``runs``, and the worker runs on."""
    ran: list[str] = []

    async def hit(ctx: TaskContext) -> None:
        ran.append(ctx.task["_id"])

    real = timing.next_after_run

    def no_run_left(task: Any, **kw: Any) -> datetime | None:
        if task.get("_id") == "task:doomed":
            raise Unprocessable("cron: '* * * * *' never fires (no run in the 101 years after now)", field="cron")
        return real(task, **kw)

    monkeypatch.setattr(timing, "next_after_run", no_run_left)
    async with connect(couch.url_for(), database=dbname, run={"w": {"hit": hit}}) as after:
        doomed = await after.schedule("w", "hit", cron="* * * * * *", id="doomed")
        ended = await after.wait(doomed["_id"], timeout=120)
        assert ended["status"] == "err", ended
        assert ended["error"]["reason"] == "invalid" and ended["error"]["field"] == "cron", ended["error"]
        assert [r["status"] for r in ended["runs"]] == ["done"]
        fine = await after.schedule("w", "hit", date=time.time())
        assert (await after.wait(fine["_id"], timeout=30))["status"] == "done"
        assert ran == [doomed["_id"], fine["_id"]]
