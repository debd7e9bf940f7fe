"""The status protocol end to end: intents over REST and written straight into CouchDB,
cron, retries, timeouts, expiry, cancel. Executions are counted by the jobs themselves."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIENT_PASSWORD, CLIENT_USER, Couch, Daemon, iso_in, tid, wait_until

from after import model, timing
from after.errors import Forbidden


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def direct(couch: Couch, dbname: str, coro_fn: Any, *, user: str = CLIENT_USER, password: str = CLIENT_PASSWORD) -> Any:
    """Run ``coro_fn(store)`` against CouchDB directly, as another program would (a plain client user)."""

    async def go() -> Any:
        async with couch.store(dbname, user=user, password=password) as store:
            return await coro_fn(store)

    return asyncio.run(go())


def test_document_written_straight_into_couchdb_runs(daemon: Daemon, couch: Couch, dbname: str, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    doc = {
        "_id": "task:direct-1",
        "type": "task",
        "worker": "w",
        "status": "waiting",
        "date": time.time() + 1,
        "job": {"name": "count", "arguments": [str(out)]},
    }
    direct(couch, dbname, lambda s: s.put(doc))
    done = daemon.wait_status("task:direct-1", "done", timeout=10)
    assert lines(out)[0].startswith("task:direct-1 ")
    assert done["history"][-1]["status"] == "done"


def test_invalid_direct_document_ends_err_with_reason(daemon: Daemon, couch: Couch, dbname: str) -> None:
    daemon.start_worker("w")
    bad = {"_id": "task:bad", "type": "task", "worker": "w", "status": "waiting", "date": "next tuesday", "job": {"name": "noop"}}
    direct(couch, dbname, lambda s: s.put(bad))
    doc = daemon.wait_status("task:bad", "err", timeout=10)
    assert doc["error"]["reason"] == "invalid"
    assert "date" in doc["error"]["message"]
    # The daemon is fine and keeps scheduling.
    ok = daemon.create({"worker": "w", "date": time.time(), "job": "noop"})
    daemon.wait_status(ok["id"], "done")


def test_clients_cannot_write_worker_only_statuses_in_couchdb(daemon: Daemon, couch: Couch, dbname: str) -> None:
    reply = daemon.create({"worker": "nobody", "date": "2030-01-01", "job": "noop"})

    async def forge(store: Any) -> None:
        doc = await store.get(reply["id"])
        doc["status"] = "scheduled"
        await store.put(doc)

    with pytest.raises(Forbidden) as err:
        direct(couch, dbname, forge)
    assert "the task is waiting: a client may only" in err.value.message

    async def forge_canceled(store: Any) -> None:
        doc = await store.get(reply["id"])
        doc["status"] = "canceled"
        await store.put(doc)

    with pytest.raises(Forbidden):
        direct(couch, dbname, forge_canceled)


def test_cancel_and_reschedule_written_into_couchdb_are_acted_on(daemon: Daemon, couch: Couch, dbname: str, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    later = daemon.create({"worker": "w", "date": iso_in(3600), "job": {"name": "count", "arguments": [str(out)]}})
    gone = daemon.create({"worker": "w", "date": iso_in(3600), "job": {"name": "count", "arguments": [str(out)]}})

    async def intents(store: Any) -> None:
        doc = await store.get(later["id"])
        doc["status"] = "reschedule"
        doc["date"] = timing.fmt(timing.from_ts(time.time() + 1))
        await store.put(doc)
        doc = await store.get(gone["id"])
        doc["status"] = "cancel"
        await store.put(doc)

    direct(couch, dbname, intents)
    assert daemon.wait_status(gone["id"], "canceled", timeout=5)["history"][-1]["by"].startswith("daemon:")
    daemon.wait_status(later["id"], "done", timeout=10)
    assert [ln.split()[0] for ln in lines(out)] == [later["id"]]


def test_rest_cancel_of_a_waiting_task(daemon: Daemon) -> None:
    reply = daemon.create({"worker": "w", "date": iso_in(60), "job": "noop"})
    status, doc = daemon.api("POST", f"/tasks/{tid(reply['id'])}/cancel")
    assert status == 200 and doc["status"] in ("cancel", "canceled")
    doc = daemon.wait_status(reply["id"], "canceled", timeout=3)
    assert [h["status"] for h in doc["history"]][-2:] == ["cancel", "canceled"]
    status, body = daemon.api("POST", f"/tasks/{tid(reply['id'])}/cancel")
    assert status == 409 and "the task is canceled: a client may only reschedule it or delete it" in body["message"]


def test_cancel_stops_a_running_job(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create({"worker": "w", "date": time.time(), "job": {"name": "hang", "arguments": [str(out)]}})
    daemon.wait_status(reply["id"], "scheduled", timeout=10)
    wait_until(lambda: len(lines(out)) == 1, 10, "the job to be running")
    t0 = time.monotonic()
    daemon.api("POST", f"/tasks/{tid(reply['id'])}/cancel")
    doc = daemon.wait_status(reply["id"], "canceled", timeout=5)
    assert time.monotonic() - t0 < 3
    assert doc["history"][-1]["by"] == "worker:w"
    assert len(lines(out)) == 1


def test_cancel_kills_a_running_shell_command_and_its_children(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    marker = tmp_path / "child-still-alive"
    script = f"(sleep 2; touch {marker}) & sleep 30"
    reply = daemon.create({"worker": "w", "date": time.time(), "job": {"name": "shell", "arguments": [script]}})
    daemon.wait_status(reply["id"], "scheduled", timeout=10)
    time.sleep(0.3)
    daemon.api("POST", f"/tasks/{tid(reply['id'])}/cancel")
    daemon.wait_status(reply["id"], "canceled", timeout=5)
    time.sleep(2.5)
    assert not marker.exists(), "the shell job's child outlived the cancel"


def test_retries_then_err_with_attempts_counted(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create(
        {
            "worker": "w",
            "date": time.time(),
            "retry": {"max": 2, "backoff": "fixed", "delay": 0.5},
            "job": {"name": "fail", "arguments": [str(out)], "kwargs": {"message": "nope"}},
        }
    )
    doc = daemon.wait_status(reply["id"], "err", timeout=20)
    assert len(lines(out)) == 3
    assert doc["attempts"] == 3
    assert doc["error"]["type"] == "RuntimeError" and doc["error"]["message"] == "nope"
    assert "Traceback" in doc["error"]["traceback"]
    assert "testjobs.py" in doc["error"]["traceback"] and "jobproc.py" not in doc["error"]["traceback"]
    assert [h["status"] for h in doc["history"]].count("reschedule") == 2


def test_timeout_kills_the_job(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    reply = daemon.create({"worker": "w", "date": time.time(), "timeout": 1, "job": {"name": "hang"}})
    t0 = time.monotonic()
    doc = daemon.wait_status(reply["id"], "err", timeout=10)
    assert doc["error"]["reason"] == "timeout"
    assert time.monotonic() - t0 < 5


def test_expired_task_is_not_run(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create({"worker": "w", "date": "2020-01-01", "expires": "2020-01-02", "job": {"name": "count", "arguments": [str(out)]}})
    doc = daemon.wait_status(reply["id"], "err", timeout=5)
    assert doc["error"]["reason"] == "expired"
    assert not out.exists()


def test_misfire_skip_of_an_old_one_shot_task(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create({"worker": "w", "date": iso_in(-120), "misfire": {"policy": "skip", "grace": 60}, "job": {"name": "count", "arguments": [str(out)]}})
    doc = daemon.wait_status(reply["id"], "err", timeout=5)
    assert doc["error"]["reason"] == "missed"
    assert not out.exists()


def test_cron_task_runs_and_schedules_its_next_occurrence(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create({"worker": "w", "cron": "*/2 * * * * *", "timezone": "Europe/Lisbon", "job": {"name": "count", "arguments": [str(out)]}})
    deadline = time.monotonic() + 15
    while len(lines(out)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(lines(out)) >= 2
    doc = daemon.task(reply["id"])
    assert doc["status"] in ("reschedule", "schedule", "scheduled")
    assert len(doc["next_runs"]) == 5
    assert doc["runs"] and doc["runs"][0]["status"] == "done"
    # One run per occurrence, each 2 s after the last, none started before its time (a busy
    # machine may start one late: lateness is the benchmarks' business, not this test's).
    runs = [r for r in doc["runs"] if r.get("started")]
    dates = [timing.parse_date(r["date"]).timestamp() for r in runs]
    assert all(round(b - a, 3) % 2 == 0 and b > a for a, b in itertools.pairwise(dates)), dates
    assert all(timing.parse_date(r["started"]).timestamp() >= d - 0.001 for r, d in zip(runs, dates, strict=True)), runs
    assert len(lines(out)) <= len(doc["runs"]) + 1  # no occurrence ran twice (one may be running)


def test_reschedule_reruns_a_finished_task(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create({"worker": "w", "date": time.time(), "job": {"name": "count", "arguments": [str(out)]}})
    daemon.wait_status(reply["id"], "done")
    status, doc = daemon.api("POST", f"/tasks/{tid(reply['id'])}/reschedule", {"date": time.time()})
    assert status == 200 and doc["status"] == "reschedule"
    deadline = time.monotonic() + 10
    while len(lines(out)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lines(out)) == 2
    daemon.wait_status(reply["id"], "done")


def test_progress_and_log_lines_are_visible(daemon: Daemon) -> None:
    daemon.start_worker("w")
    reply = daemon.create({"worker": "w", "date": time.time(), "job": {"name": "report", "kwargs": {"steps": 3}}})
    doc = daemon.wait_status(reply["id"], "done", timeout=15)
    assert doc["progress"] == {"done": 3, "total": 3}
    assert doc["log"] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert doc["result"] == {"steps": 3}


def test_history_route(daemon: Daemon) -> None:
    reply = daemon.create({"worker": "w", "date": "2030-01-01", "job": "noop"})
    status, body = daemon.api("GET", f"/tasks/{tid(reply['id'])}/history")
    assert status == 200 and body["history"][0]["status"] == model.WAITING


def test_history_keeps_every_transition_of_a_canceled_running_task(daemon: Daemon) -> None:
    """The client's cancel and the worker's scheduled/canceled all stay, whoever wrote last."""
    daemon.start_worker("w")
    for _ in range(3):
        task_id = daemon.create({"worker": "w", "date": time.time(), "job": {"name": "hang"}})["id"]
        daemon.wait_status(task_id, "scheduled", timeout=10)
        daemon.api("POST", f"/tasks/{tid(task_id)}/cancel")
        doc = daemon.wait_status(task_id, "canceled", timeout=10)
        assert [h["status"] for h in doc["history"]] == ["waiting", "schedule", "scheduled", "cancel", "canceled"], doc["history"]
