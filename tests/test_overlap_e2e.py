"""Overlap policies and backfill end to end: a real daemon, real worker and job processes,
the embedded CouchDB. Waits are on conditions with generous deadlines (a loaded machine)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Couch, Daemon, iso_in, tid, wait_until
from test_poison import put_direct

from after import timing
from after.jobs import TaskContext
from after.scheduler import connect

JOBS = ["overlapjobs", "pooljobs"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def runs(d: Daemon, task_id: str) -> list[dict[str, Any]]:
    return list(d.task(task_id).get("runs") or [])


def test_replace_kills_the_running_occurrence_and_starts_the_next(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("rep", concurrency=2, jobs=JOBS)
    pidfile = tmp_path / "pid"
    task = daemon.create(
        {"id": "rep", "worker": "rep", "cron": "*/20 * * * * *", "overlap": "replace", "job": {"name": "nap", "arguments": [3600, str(pidfile)]}}
    )
    task_id = task["id"]
    wait_until(pidfile.exists, 90, "the first occurrence to start")
    first = int(pidfile.read_text())
    assert alive(first)
    wait_until(lambda: any(r.get("status") == "replaced" for r in runs(daemon, task_id)), 90, "a run recorded replaced")
    wait_until(lambda: not alive(first), 60, f"the replaced job process {first} to be gone")
    wait_until(lambda: pidfile.read_text().strip() not in ("", str(first)), 60, "the next occurrence to start in a new process")
    replaced = [r for r in runs(daemon, task_id) if r.get("status") == "replaced"]
    assert replaced[0]["date"] < daemon.task(task_id)["date"]
    history = [h.get("reason") or "" for h in daemon.task(task_id)["history"]]
    assert any(reason.startswith("replaced by the occurrence") for reason in history)
    assert daemon.api("POST", f"/tasks/{tid(task_id)}/cancel")[0] == 200
    daemon.wait_status(task_id, "canceled", timeout=60)  # a client's cancel is still a cancel


def test_allow_runs_occurrences_concurrently_as_children(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("par", concurrency=4, jobs=JOBS)
    notes = tmp_path / "notes"
    task = daemon.create({"id": "par", "worker": "par", "cron": "*/5 * * * * *", "overlap": "allow", "job": {"name": "note", "arguments": [str(notes), 12]}})
    task_id = task["id"]
    wait_until(lambda: len([r for r in runs(daemon, task_id) if r.get("status") == "done"]) >= 2, 150, "two occurrences done")
    assert daemon.api("POST", f"/tasks/{tid(task_id)}/cancel")[0] == 200
    done = sorted((r for r in runs(daemon, task_id) if r.get("status") == "done"), key=lambda r: r["started"])
    a, b = done[0], done[1]
    assert a["id"] == f"{task_id}@{a['id'].rsplit('@', 1)[1]}" and a["id"] != b["id"]
    assert b["started"] < a["finished"], f"the two occurrences did not overlap: {a} {b}"
    lines = notes.read_text().splitlines()
    # each child ran its own occurrence (ctx.occurrence), and two started before either ended
    assert lines[0].endswith("start") and lines[1].endswith("start"), lines
    assert lines[0].split()[0] != lines[1].split()[0]
    # finished children are removed once their parent holds their runs
    wait_until(lambda: daemon.api("GET", f"/tasks/{tid(a['id'])}")[0] == 404, 60, "the recorded child removed")

    # The cancel of the task canceled its occurrences still running: each recorded, then removed.
    def listed() -> list[str]:
        return [t["_id"] for t in daemon.api("GET", "/tasks?worker=par&limit=100")[1]["tasks"]]

    wait_until(lambda: listed() == [task_id], 90, "no child left")
    assert "canceled" in {r["status"] for r in runs(daemon, task_id)}


def test_backfill_of_ten_occurrences_runs_each_oldest_first(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("bf", concurrency=4, jobs=JOBS)
    notes = tmp_path / "notes"
    task = daemon.create({"id": "bf", "worker": "bf", "cron": "0 0 * * *", "job": {"name": "note", "arguments": [str(notes)]}})
    task_id = task["id"]
    status, body = daemon.api("POST", f"/tasks/{tid(task_id)}/backfill", {"from": "2026-01-01", "to": "2026-01-10T00:00:00Z"})
    assert status == 200, body
    assert body["count"] == 10 and body["occurrences"][0] == "2026-01-01T00:00:00.000Z" and body["occurrences"][-1] == "2026-01-10T00:00:00.000Z"
    wait_until(lambda: len([r for r in runs(daemon, task_id) if r.get("backfill")]) >= 10, 180, "ten backfilled runs")
    done = [r for r in runs(daemon, task_id) if r.get("backfill")]
    assert [r["status"] for r in done] == ["done"] * 10
    assert [r["occurrence"] for r in done] == body["occurrences"]
    starts = [line.split()[0] for line in notes.read_text().splitlines() if line.endswith("start")]
    assert starts == [f"2026-01-{d:02d}T00:00:00+00:00" for d in range(1, 11)]  # oldest first, ctx.occurrence
    lines = notes.read_text().splitlines()
    assert all(lines[i].endswith("start") and lines[i + 1].endswith("end") for i in range(0, 20, 2)), "one at a time (overlap wait)"
    doc = daemon.task(task_id)
    assert doc["status"] == "waiting" and doc["date"] > "2026-12-01" and doc.get("backfill") == []  # its own schedule goes on


@pytest.mark.parametrize(
    ("task_body", "backfill_body", "status", "field"),
    [
        ({"date": "2030-01-01"}, {"from": "2026-01-01", "to": "2026-01-02"}, 409, None),
        ({"cron": "0 0 * * *"}, {"from": "2026-01-10", "to": "2026-01-01"}, 422, "to"),
        ({"cron": "* * * * *"}, {"from": "2026-01-01", "to": "2026-01-02"}, 422, "to"),
        ({"cron": "0 0 * * *"}, {"from": "2026-01-01", "to": "nope"}, 400, "to"),
        ({"cron": "0 0 * * *"}, {"from": "2026-01-01"}, 400, "to"),
        ({"cron": "0 0 * * *"}, {"from": "2026-01-01", "to": "2026-01-02", "extra": 1}, 400, "extra"),
        ({"cron": "0 0 * * *"}, [], 400, "body"),
    ],
)
def test_backfill_refusals(daemon: Daemon, task_body: dict[str, Any], backfill_body: Any, status: int, field: str | None) -> None:
    task = daemon.create({"worker": "nobody", "job": "noop", **task_body})
    got, body = daemon.api("POST", f"/tasks/{tid(task['id'])}/backfill", backfill_body)
    assert got == status, body
    assert body.get("field") == field, body


def test_backfill_of_an_empty_range_and_of_an_unknown_task(daemon: Daemon) -> None:
    task = daemon.create({"worker": "nobody", "job": "noop", "cron": "0 0 * * *"})
    status, body = daemon.api("POST", f"/tasks/{tid(task['id'])}/backfill", {"from": "2026-01-01T01:00:00Z", "to": "2026-01-01T23:00:00Z"})
    assert (status, body["count"], body["occurrences"]) == (200, 0, [])
    assert daemon.api("POST", "/tasks/task:none/backfill", {"from": "2026-01-01", "to": "2026-01-02"})[0] == 404
    assert daemon.api("POST", f"/tasks/{tid(task['id'])}/backfill", {"from": "2026-01-01", "to": "2026-01-02"}, token="wrong")[0] == 401


def test_cli_backfill(daemon: Daemon) -> None:
    task = daemon.create({"worker": "nobody", "job": "noop", "cron": "0 12 * * *", "timezone": "Europe/Lisbon"})
    out = daemon.cli("task", "backfill", task["id"], "--from", "2026-07-01", "--to", "2026-07-03").stdout
    assert "2 occurrence(s)" in out and "2026-07-01T11:00:00.000Z" in out and "2026-07-02T11:00:00.000Z" in out
    added = daemon.cli("task", "add", "nobody", "noop", "--cron", "0 * * * *", "--overlap", "allow").stdout.strip()
    assert daemon.task(added)["overlap"] == "allow"
    res = daemon.cli("task", "backfill", task["id"], "--from", "2026-07-03", "--to", "2026-07-01", check=False)
    assert res.returncode == 1 and "to:" in res.stderr and "422" in res.stderr
    # the first occurrence waits as a child (its worker does not run here), the other is pending
    first = daemon.wait_status(f"{task['id']}@1782903600", "waiting", timeout=60)
    assert first["occurrence"] == "2026-07-01T11:00:00.000Z" and first["parent"] == task["id"] and first["backfilled"] is True
    wait_until(lambda: daemon.task(task["id"]).get("backfill") == ["2026-07-02T11:00:00.000Z"], 60, "one occurrence left pending")


def test_replace_reaches_a_remote_worker_as_a_cancel(daemon: Daemon) -> None:
    from test_remote import Remote

    remote = Remote(daemon, "far")
    task_id = daemon.create({"id": "far-rep", "worker": "far", "cron": "*/15 * * * * *", "overlap": "replace", "job": "send"})["id"]
    (offer,) = remote.poll(wait=20)
    remote.accept(offer)

    def told() -> bool:
        status, beat = remote.task_call(task_id, "heartbeat", {"lease": offer["lease"]})
        assert status == 200, beat
        return bool(beat["cancel"])

    wait_until(told, 60, "the heartbeat answer says cancel (the next occurrence replaces this run)")
    status, answer = remote.finish(offer, status="canceled")
    assert status == 200, answer
    doc = daemon.task(task_id)
    assert doc["runs"][-1]["status"] == "replaced" and doc["runs"][-1]["date"] < doc["date"]
    assert doc["status"] in ("reschedule", "schedule", "scheduled") and "replacing" not in doc
    (again,) = remote.poll(wait=20)  # the new occurrence, at once
    assert again["id"] == task_id and again["lease"] != offer["lease"]


def started(notes: Path) -> collections.Counter[str]:
    """How many times each occurrence started, by the job's own notes."""
    if not notes.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in notes.read_text().splitlines() if line.endswith("start"))


def test_two_daemons_spawn_each_allowed_occurrence_once(start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    a, b = start_daemon("a"), start_daemon("b")
    for d in (a, b):
        d.start_worker("dup", concurrency=4, jobs=JOBS)
    notes = tmp_path / "notes"
    task_id = a.create({"id": "dup", "worker": "dup", "cron": "*/2 * * * * *", "overlap": "allow", "job": {"name": "note", "arguments": [str(notes), 1]}})["id"]
    wait_until(lambda: len(runs(a, task_id)) >= 8, 150, "eight occurrences recorded")
    assert a.api("POST", f"/tasks/{tid(task_id)}/cancel")[0] == 200
    recorded = [r["id"] for r in runs(a, task_id)]
    assert len(recorded) == len(set(recorded)), recorded
    time.sleep(3)  # children spawned before the cancel end meanwhile
    counts = started(notes)
    assert counts and max(counts.values()) == 1, counts  # no occurrence ran twice


def test_a_backfill_goes_on_after_a_restart(start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    d = start_daemon("r")
    d.start_worker("slow", concurrency=2, jobs=JOBS)
    notes = tmp_path / "notes"
    task_id = d.create({"id": "slow", "worker": "slow", "cron": "0 3 * * *", "job": {"name": "note", "arguments": [str(notes), 1.5]}})["id"]
    assert d.api("POST", f"/tasks/{tid(task_id)}/backfill", {"from": "2026-03-01", "to": "2026-03-06"})[1]["count"] == 5
    wait_until(lambda: len(runs(d, task_id)) >= 1, 90, "a first backfilled run")
    assert d.stop(signal.SIGTERM, timeout=60) == 0
    again = start_daemon("r", state=d.state)  # the same state: its workers start again
    wait_until(lambda: len(runs(again, task_id)) >= 5, 150, "the five backfilled runs, across the restart")
    occurrences = [r["occurrence"] for r in runs(again, task_id)]
    assert occurrences == [f"2026-03-0{i}T03:00:00.000Z" for i in range(1, 6)]
    assert max(started(notes).values()) == 1 and again.task(task_id)["backfill"] == []


def test_direct_documents_with_overlap_and_backfill(daemon: Daemon, couch: Couch, dbname: str, tmp_path: Path) -> None:
    daemon.start_worker("direct", concurrency=4, jobs=JOBS)
    notes = tmp_path / "notes"
    base = {"type": "task", "worker": "direct", "status": "waiting", "job": {"name": "note", "arguments": [str(notes)]}}
    # A pending backfill written by another program: run like one asked through REST.
    pending = ["2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z"]
    status, _ = put_direct(couch, dbname, {**base, "_id": "task:direct-bf", "cron": "0 0 * * *", "date": "2031-01-01T00:00:00Z", "backfill": pending})
    assert status == 201
    # An allow task written straight into CouchDB.
    status, _ = put_direct(couch, dbname, {**base, "_id": "task:direct-allow", "cron": "*/3 * * * * *", "overlap": "allow", "date": iso_in(0)})
    assert status == 201
    # Bad shapes end err naming the field; nothing else stops.
    for doc_id, change, field in [("task:direct-bad-1", {"overlap": "sometimes"}, "overlap"), ("task:direct-bad-2", {"backfill": "yesterday"}, "backfill")]:
        assert put_direct(couch, dbname, {**base, "_id": doc_id, "cron": "0 0 * * *", "date": iso_in(0), **change})[0] == 201
        ended = daemon.wait_status(doc_id, "err", timeout=60)
        assert ended["error"]["reason"] == "invalid" and ended["error"]["field"] == field, ended["error"]
    wait_until(lambda: len(runs(daemon, "task:direct-bf")) >= 2, 90, "the direct backfill run")
    assert [r["occurrence"] for r in runs(daemon, "task:direct-bf")] == [timing.fmt(timing.parse_date(p)) for p in pending]
    wait_until(lambda: len(runs(daemon, "task:direct-allow")) >= 1, 90, "an allowed occurrence of the direct task")
    assert runs(daemon, "task:direct-allow")[0]["id"].startswith("task:direct-allow@")


async def test_python_module_backfill(couch: Couch, dbname: str) -> None:
    seen: list[str] = []

    async def note(ctx: TaskContext) -> None:
        assert ctx.occurrence is not None
        seen.append(timing.fmt(ctx.occurrence))

    async with connect(couch.url_for(), database=dbname, run={"py": {"note": note}}) as after:
        task = await after.schedule("py", "note", cron="0 6 * * *", timezone="Europe/Lisbon")
        res = await after.backfill(task["_id"], "2026-08-01", "2026-08-03T23:59:59Z")
        assert res["count"] == 3 and res["pending"] == 3
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert seen == ["2026-08-01T05:00:00.000Z", "2026-08-02T05:00:00.000Z", "2026-08-03T05:00:00.000Z"]
