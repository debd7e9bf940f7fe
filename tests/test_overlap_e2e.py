"""Overlap policies and backfill end to end: a real daemon, real worker and job processes,
the embedded CouchDB. Waits are on conditions with generous deadlines (a loaded machine)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, tid, wait_until

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
    res = daemon.cli("task", "backfill", task["id"], "--from", "2026-07-03", "--to", "2026-07-01", check=False)
    assert res.returncode == 1 and "to:" in res.stderr and "422" in res.stderr
    # the first occurrence waits as a child (its worker does not run here), the other is pending
    first = daemon.wait_status(f"{task['id']}@1782903600", "waiting", timeout=60)
    assert first["occurrence"] == "2026-07-01T11:00:00.000Z" and first["parent"] == task["id"] and first["backfilled"] is True
    wait_until(lambda: daemon.task(task["id"]).get("backfill") == ["2026-07-02T11:00:00.000Z"], 60, "one occurrence left pending")
