"""The cluster's rules against a real server: real conflicting revisions (``new_edits: false``,
as replication makes them) and real 202 ``accepted`` answers (an HTTP link that rewrites
what CouchDB answered, as a cluster does to the loser of a race or to a node cut off)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import AcceptedLink, Couch, conflicting_leaves, recording_job, write_leaves

from after import model, timing
from after.config import Settings
from after.runner import Runner
from after.scheduler import LocalDispatcher, NoDispatcher, Scheduler
from after.store import Store


def task(now: datetime, **extra: Any) -> dict[str, Any]:
    return model.new_task({"worker": "w", "date": timing.fmt(now), "job": {"name": "hit"}, **extra}, now=now)


def state(doc: dict[str, Any], status: str, at: datetime, *, by: str, starts: int = 0, lease_until: datetime | None = None, **extra: Any) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    out.update(extra)
    out["starts"] = starts
    if lease_until is not None:
        out["lease"] = {"id": by, "daemon": by, "until": timing.fmt(lease_until)}
    else:
        out.pop("lease", None)
    return model.set_status(out, status, by, at, limit=50)


async def settle(store: Store, doc_id: str, now: datetime) -> dict[str, Any]:
    current = (await store.get_many([doc_id]))[doc_id]
    assert current.get("_conflicts"), current
    settled = await store.resolve([current], now=now, by="daemon:test", history_limit=50)
    return settled.get(doc_id, {})


async def test_conflicts_are_resolved_on_the_server_and_leave_no_leaf(couch: Couch, dbname: str) -> None:
    now = datetime.now(UTC)
    async with couch.store(dbname) as store:
        base = await store.put(task(now))
        # A claim of a daemon cut off from the cluster, beside the branch where the
        # majority's worker accepted the task, ran it and finished (three more revisions).
        stale_claim = state(base, "schedule", now, by="daemon:cut", lease_until=now + timedelta(seconds=30))
        ran = [
            state(base, "schedule", now, by="daemon:main", lease_until=now + timedelta(seconds=30)),
            state(base, "scheduled", now, by="worker:w", starts=1, lease_until=now + timedelta(seconds=60)),
            state(base, "done", now + timedelta(seconds=1), by="worker:w", starts=1, result=42),
        ]
        await write_leaves(store, conflicting_leaves(base, [stale_claim], ran))
        settled = await settle(store, base["_id"], now)
        assert settled["status"] == "done" and settled["result"] == 42
        final = (await store.get_many([base["_id"]]))[base["_id"]]
        assert "_conflicts" not in final and final["status"] == "done"
        assert len([leaf for leaf in await store.leaves(base["_id"]) if not leaf.get("_deleted")]) == 1


async def test_a_lost_cancel_is_reapplied_on_the_running_leaf(couch: Couch, dbname: str) -> None:
    now = datetime.now(UTC)
    async with couch.store(dbname) as store:
        base = await store.put(task(now))
        claim = state(base, "schedule", now, by="daemon:a", lease_until=now + timedelta(seconds=30))
        claimed = await store.put({**claim, "_id": base["_id"], "_rev": base["_rev"]})
        running = state(claimed, "scheduled", now, by="worker:w", starts=1, lease_until=now + timedelta(seconds=60))
        running["lease"] = claimed["lease"]
        cancel = model.set_status({k: v for k, v in claimed.items() if not k.startswith("_")}, "cancel", "api", now, limit=50)
        await write_leaves(store, conflicting_leaves(claimed, [running], [cancel]))
        settled = await settle(store, base["_id"], now)
        assert settled["status"] == "cancel"
        assert settled["lease"] == claimed["lease"]  # so the worker running it is asked to stop
        assert [h["status"] for h in settled["history"]][-3:] == ["scheduled", "cancel", "cancel"]
        assert "_conflicts" not in (await store.get_many([base["_id"]]))[base["_id"]]


async def test_two_live_claims_wait_until_one_is_accepted(couch: Couch, dbname: str) -> None:
    now = datetime.now(UTC)
    async with couch.store(dbname) as store:
        base = await store.put(task(now))
        a = state(base, "schedule", now, by="daemon:a", lease_until=now + timedelta(seconds=30))
        b = state(base, "schedule", now, by="daemon:b", lease_until=now + timedelta(seconds=30))
        await write_leaves(store, conflicting_leaves(base, [a], [b]))
        assert await settle(store, base["_id"], now) == {}  # undecided: either may be the majority claim
        # ...until their leases end (or one of them is accepted by its worker).
        later = await settle(store, base["_id"], now + timedelta(seconds=31))
        assert later["status"] == "schedule"
        assert "_conflicts" not in (await store.get_many([base["_id"]]))[base["_id"]]


def local_scheduler(store: Store, settings: Settings, hit: Any, *, daemon: str = "daemon:test") -> tuple[Scheduler, LocalDispatcher]:
    local = LocalDispatcher(store, settings, {"w": {"hit": hit}})
    sched = Scheduler(store, settings, local, daemon_id=daemon)
    local.scheduler = sched
    return sched, local


async def wait_idle(local: LocalDispatcher, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while local.runners["w"].running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("finished", [True, False])
async def test_the_scheduler_settles_a_conflict_before_it_acts(couch: Couch, dbname: str, settings: Settings, finished: bool) -> None:
    """A task whose leaves are a claim of a daemon that is gone (lease still live) and the
    majority's branch. Finished there: nothing runs again. Rescheduled there for now (a
    retry): it runs now, once, without waiting for the stale claim's lease."""
    ran, hit = recording_job()
    now = datetime.now(UTC)
    async with couch.store(dbname) as store:
        base = await store.put(task(now - timedelta(seconds=5)))
        stale = state(base, "schedule", now, by="daemon:gone", lease_until=now + timedelta(seconds=300))
        if finished:
            branch = [
                state(base, "scheduled", now, by="worker:w", starts=1, lease_until=now + timedelta(seconds=60)),
                state(base, "done", now, by="worker:w", starts=1),
            ]
        else:
            branch = [
                state(base, "scheduled", now, by="worker:w", starts=1, lease_until=now + timedelta(seconds=60)),
                state(base, "reschedule", now, by="worker:w", starts=1),
            ]
        await write_leaves(store, conflicting_leaves(base, [stale], branch))
        sched, local = local_scheduler(store, settings, hit)
        await sched._load()
        assert base["_id"] in sched._conflicted
        for i in range(3):
            await sched.tick(now + timedelta(seconds=i))
        await wait_idle(local)
        await local.drain(5)
        final = (await store.get_many([base["_id"]]))[base["_id"]]
    assert "_conflicts" not in final
    assert sched.counters["conflicts_resolved"] == 1
    if finished:
        assert ran == [] and final["status"] == "done"
    else:
        assert ran == [base["_id"]] and final["status"] == "done" and final["starts"] == 2


async def test_a_conflict_whose_winning_leaf_is_finished_is_found_by_the_view(couch: Couch, dbname: str) -> None:
    now = datetime.now(UTC)
    async with couch.store(dbname) as store:
        base = await store.put(task(now))
        done = state(base, "done", now, by="worker:w", starts=1)
        pending = state(base, "waiting", now, by="daemon:cut")
        await write_leaves(store, conflicting_leaves(base, [done, done], [pending]))
        found = await store.conflicted()
    assert [d["_id"] for d in found] == [base["_id"]]


async def test_a_claim_answered_202_is_not_dispatched_and_runs_once_after_its_lease(
    couch: Couch, dbname: str, settings: Settings, accepted_link: AcceptedLink
) -> None:
    ran, hit = recording_job()
    short = dataclasses.replace(settings, scheduler_lease_seconds=2.0, scheduler_claim_ahead=0.0)
    now = datetime.now(UTC)
    async with Store(accepted_link.via(couch.url_for()), dbname) as store:
        doc = await store.put(task(now))
        sched, local = local_scheduler(store, short, hit)
        await sched._load()
        accepted_link.accept_next(1, when=lambda docs: any(d.get("status") == "schedule" for d in docs))
        stats = await sched.tick(now)
        assert stats.get("claims_uncertain") == 1 and not stats.get("fired"), stats
        assert accepted_link.rewritten == 1
        assert sched.quorum_lost_since is not None
        # Cut off from the majority: no claim, no recovery, even once the lease has ended.
        stats = await sched.tick(now + timedelta(seconds=3))
        assert not stats.get("fired") and not stats.get("recovered"), stats
        assert ran == []
        # A certain write (the heartbeat's probe in a daemon) ends the degraded state.
        sched.note_quorum(True)
        await sched.refresh_window(now + timedelta(seconds=3))
        for i in range(4, 8):
            await sched.tick(now + timedelta(seconds=i))
            await asyncio.sleep(0.1)
        await wait_idle(local)
        await local.drain(5)
    async with couch.store(dbname) as direct:
        final = await direct.get(doc["_id"])
    assert ran == [doc["_id"]], ran
    assert final["status"] == "done" and final["starts"] == 1
    assert [h["status"] for h in final["history"]] == ["waiting", "schedule", "waiting", "schedule", "scheduled", "done"]


async def test_an_acceptance_answered_202_does_not_start_the_job(couch: Couch, dbname: str, settings: Settings, accepted_link: AcceptedLink) -> None:
    ran, hit = recording_job()
    now = datetime.now(UTC)
    async with Store(accepted_link.via(couch.url_for()), dbname) as store:
        doc = await store.put(task(now))
        (claimed,), _, _ = await store.claim([doc], daemon="daemon:t", now=now, lease_seconds=30, history_limit=50)
        runner = Runner(store, name="w", registry={"hit": hit}, settings=settings, isolate=False)
        accepted_link.accept_next(1, when=lambda docs: any(d.get("status") == "scheduled" for d in docs))
        runner.submit(claimed)
        deadline = time.monotonic() + 20
        while runner.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await runner.drain(5)
    async with couch.store(dbname) as direct:
        final = await direct.get(doc["_id"])
    assert ran == []
    assert final["status"] == "schedule" and final.get("starts", 0) == 0  # taken back: ranks below any branch that ran
    assert final["lease"] == claimed["lease"]
    assert "acceptance uncertain" in final["history"][-1]["reason"]


async def test_a_stale_revision_is_ignored_but_a_settled_shorter_branch_is_taken(couch: Couch, dbname: str, settings: Settings) -> None:
    """A lagging replica answers with an old revision of a task that ran: ignored. A conflict
    settled in favour of a shorter branch than a deleted one: taken (its rewrite is newer)."""
    now = datetime.now(UTC)
    async with couch.store(dbname) as store:
        sched = Scheduler(store, settings, NoDispatcher(), daemon_id="daemon:test")
        await sched.refresh_window(now)  # holds what is due within the window
        created = {**task(now), "_rev": "1-a", "updated": timing.fmt(now)}
        done = {**created, "_rev": "4-d", "status": "done", "updated": timing.fmt(now + timedelta(seconds=3))}
        sched.observe(created)
        sched.observe(done)  # finished: let go
        assert created["_id"] not in sched.tasks
        sched.observe(created)  # the creation again, from a late view answer
        assert created["_id"] not in sched.tasks
        settled = {**created, "_rev": "3-s", "status": "reschedule", "updated": timing.fmt(now + timedelta(seconds=9))}
        sched.observe(settled)  # generation 3 < 4, written after: the settled state
        assert sched.tasks[created["_id"]]["_rev"] == "3-s"
