"""The walking skeleton, end to end: a real daemon, real worker processes, real CouchDB."""

from __future__ import annotations

import time

from conftest import Daemon, http, iso_in, tid


def test_quick_start_flow(daemon: Daemon) -> None:
    """The README's quick start: start a worker, post a shell task due in 2 s, it ends done."""
    out = daemon.cli("start", "mailer")
    assert "worker mailer started" in out.stdout
    reply = daemon.create({"worker": "mailer", "date": iso_in(2), "job": {"name": "shell", "arguments": ["echo hi"]}})
    task_id = reply["id"]
    assert reply["task"]["status"] == "waiting"
    doc = daemon.wait_status(task_id, {"done", "err"}, timeout=15)
    assert doc["status"] == "done", doc
    assert doc["result"]["stdout"] == "hi"
    assert doc["result"]["exit_code"] == 0
    assert [h["status"] for h in doc["history"]] == ["waiting", "schedule", "scheduled", "done"]
    # It started at its due time, not before (it may be claimed and accepted a little ahead).
    assert doc["started"] >= doc["date"]


def test_cli_list_log_clean_stop(daemon: Daemon) -> None:
    daemon.cli("start", "mailer", "--concurrency", "2")
    listed = daemon.cli("list").stdout
    assert "mailer" in listed and "running" in listed
    reply = daemon.create({"worker": "mailer", "date": time.time(), "job": {"name": "noop"}})
    daemon.wait_status(reply["id"], "done")
    log = daemon.cli("log", "mailer").stdout
    assert "worker mailer started" in log
    daemon.cli("clean", "mailer")
    assert daemon.cli("log", "mailer").stdout.strip() == ""
    daemon.cli("stop", "mailer")
    _, workers = daemon.api("GET", "/workers")
    assert workers["workers"][0]["state"] == "stopped"
    res = daemon.cli("stop", "nosuch", check=False)
    assert res.returncode == 1 and "nosuch" in res.stderr


def test_task_due_in_the_past_fires_at_next_tick(daemon: Daemon) -> None:
    daemon.start_worker("w")
    t0 = time.time()
    reply = daemon.create({"worker": "w", "date": "2020-01-01", "job": "noop"})
    doc = daemon.wait_status(reply["id"], "done", timeout=10)
    assert time.time() - t0 < 3
    assert doc["attempts"] == 1


def test_unknown_job_ends_err_with_message(daemon: Daemon) -> None:
    # Created before the worker runs (with it running, the create itself gets 422).
    reply = daemon.create({"worker": "mailer", "date": time.time(), "job": {"name": "x"}})
    daemon.start_worker("mailer")
    doc = daemon.wait_status(reply["id"], {"err", "done"})
    assert doc["status"] == "err"
    assert doc["error"]["message"] == "unknown job 'x' for worker 'mailer'"
    assert doc["error"]["reason"] == "unknown_job"


def test_task_for_absent_worker_waits_and_says_so(daemon: Daemon) -> None:
    reply = daemon.create({"worker": "ghost", "date": time.time(), "job": "noop"})
    time.sleep(1.5)
    doc = daemon.task(reply["id"])
    assert doc["status"] == "waiting"
    assert "no worker named 'ghost'" in doc["notice"]
    # When the worker starts, the parked task runs.
    daemon.start_worker("ghost")
    daemon.wait_status(reply["id"], "done")


def test_bad_input_gets_400_naming_the_field_and_daemon_survives(daemon: Daemon) -> None:
    cases = [
        (b"{not json", "body"),
        (b'{"date": "2030-01-01", "job": "noop"}', "worker"),
        (b'{"worker": "w", "date": "2030-01-01"}', "job"),
        (b'{"worker": "w", "date": "someday", "job": "noop"}', "date"),
        (b'{"worker": "w", "date": "2030-01-01", "job": {"arguments": []}}', "job.name"),
        (b'{"worker": "w", "date": "2030-01-01", "job": "noop", "colour": 1}', "colour"),
        (b'{"worker": "w", "job": "noop", "date": "2030-01-01", "priority": "high"}', "priority"),
    ]
    for raw, field in cases:
        status, body = http(daemon.base, "POST", "/tasks", raw=raw, token=daemon.token, headers={"Content-Type": "application/json"})
        assert status == 400, (raw, body)
        assert body["error"] == "invalid"
        assert body["field"] == field, (raw, body)
        assert field.split(".")[0] in body["message"]
    status, body = daemon.api("GET", "/")
    assert status == 200 and body["couchdb"]["reachable"] is True


def test_array_creates_many_and_one_invalid_creates_none(daemon: Daemon) -> None:
    status, body = daemon.api("POST", "/tasks", [{"worker": "w", "date": "2030-01-01", "job": "noop"}, {"worker": "w", "job": "noop"}])
    assert status == 400 and body["field"] == "[1].date"
    status, listing = daemon.api("GET", "/tasks")
    assert listing["tasks"] == []
    reply = daemon.create([{"worker": "w", "date": "2030-01-01", "job": "noop"} for _ in range(3)])
    assert len(reply["ids"]) == 3
    status, doc = daemon.api("GET", f"/tasks/{tid(reply['ids'][0])}")
    assert status == 200 and doc["status"] == "waiting"


def test_writes_need_the_token(daemon: Daemon) -> None:
    body = {"worker": "w", "date": "2030-01-01", "job": "noop"}
    assert daemon.api("POST", "/tasks", body, token="")[0] == 401
    assert daemon.api("POST", "/tasks", body, token="wrong")[0] == 401
    assert daemon.api("POST", "/tasks", body)[0] == 201
    assert daemon.api("GET", "/tasks", token="")[0] == 200  # reads are open by default
    assert daemon.api("GET", "/tasks", token="wrong")[0] == 401  # ...but a wrong token is refused
