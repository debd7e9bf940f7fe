"""Remote workers as `after list` shows them (issue 15, point 5): a program connected with
the worker protocol over HTTP (here: the test, with the admin token) is listed apart from
the local worker processes, with its host, address, last call, running tasks and whether
it is live; other daemons on the database list it too, marked ``*``. Real daemons, real
HTTP, the embedded CouchDB."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from conftest import Daemon, tid, wait_until

from after.cli_workers import ago, worker_lines

#: A short session timeout: a worker silent for 2 heartbeats + 1 s (here 2 * 3.33 + 1 = 7.7 s)
#: is no longer live; it is dropped only after 20 s.
QUICK = {"AFTER_SCHEDULER_LEASE_SECONDS": "20"}
REMOTE_HEADER = "REMOTE WORKERS"


def tables(stdout: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The rows of `after list`, split into (local, remote), each by worker name, as fields."""
    local: dict[str, list[str]] = {}
    remote: dict[str, list[str]] = {}
    into = local
    for line in stdout.splitlines():
        if line.startswith(REMOTE_HEADER):
            into = remote
            continue
        fields = line.split()
        if fields and fields[0] != "NAME" and not line.startswith("("):
            into[fields[0]] = fields
    return local, remote


def connect(d: Daemon, name: str, **body: Any) -> dict[str, Any]:
    status, reply = d.api("POST", f"/workers/{name}/connect", body)
    assert status == 201, reply
    return reply


def test_after_list_shows_a_remote_worker_apart_live_then_silent(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(**QUICK)
    d.start_worker("mailer", concurrency=2)
    session = connect(d, "sender", host="web-3", concurrency=3, pid=4242)["session"]

    local, remote = tables(d.cli("list").stdout)
    # The local worker keeps its columns: NAME HOST STATE PID UPTIME TASKS.
    assert local["mailer"][2] == "running" and local["mailer"][3].isdigit(), local
    assert "sender" not in local
    # NAME HOST STATE PID LIVE RUNNING TASKS LAST-BEAT("3s ago") ADDRESS
    name, host, state, pid, live, running, tasks, beat, ago_word, address = remote["sender"][:10]
    assert (name, host, state, pid, live, running, tasks) == ("sender", "web-3", "running", "4242", "yes", "0/3", "0"), remote
    assert beat.endswith("s") and ago_word == "ago" and address == "127.0.0.1", remote

    # It takes a task: running 1/3 while it runs.
    task = d.create({"worker": "sender", "date": time.time(), "job": {"name": "send_report", "arguments": [2]}})["id"]
    status, polled = d.api("POST", "/workers/sender/poll", {"session": session, "wait": 15})
    assert status == 200 and [t["id"] for t in polled["tasks"]] == [task], polled
    lease = polled["tasks"][0]["lease"]
    status, accepted = d.api("POST", f"/workers/sender/tasks/{tid(task)}/accept", {"lease": lease})
    assert status == 200 and accepted["status"] == "scheduled", accepted
    assert tables(d.cli("list", "--here").stdout)[1]["sender"][5] == "1/3"

    # Silent for more than two heartbeats: still listed (its session lasts 20 s) but not live.
    wait_until(lambda: tables(d.cli("list").stdout)[1]["sender"][4] == "no", 25, "sender listed as not live")
    # Its next call makes it live again; finished, it counts one task run.
    status, done = d.api("POST", f"/workers/sender/tasks/{tid(task)}/finish", {"lease": lease, "status": "done", "result": 1})
    assert status == 200 and done["status"] == "done", done
    row = tables(d.cli("list").stdout)[1]["sender"]
    assert row[4:7] == ["yes", "0/3", "1"], row

    # Disconnected, it is gone from the list; the local table is as it was.
    assert d.api("POST", "/workers/sender/disconnect", {"session": session})[0] == 200
    out = d.cli("list").stdout
    assert REMOTE_HEADER not in out and tables(out)[0]["mailer"][2] == "running", out


def test_another_daemon_lists_the_remote_worker_it_does_not_hold(start_daemon: Callable[..., Daemon]) -> None:
    holder = start_daemon("d0")
    other = start_daemon("d1")
    session = connect(holder, "sender", host="web-3", concurrency=2)["session"]

    def listed_elsewhere() -> list[str] | None:
        return tables(other.cli("list").stdout)[1].get("sender")

    wait_until(lambda: listed_elsewhere() is not None, 15, "the remote worker in the other daemon's list")
    row = listed_elsewhere()
    assert row is not None and row[1] == "web-3*" and row[4] == "yes" and row[5] == "0/2", row
    assert "(* held by another daemon" in other.cli("list").stdout
    # --here: that daemon holds no worker at all.
    assert tables(other.cli("list", "--here").stdout) == ({}, {})
    assert holder.api("POST", "/workers/sender/disconnect", {"session": session})[0] == 200
    wait_until(lambda: listed_elsewhere() is None, 15, "the disconnected worker gone from the other daemon's list")


def test_list_text_without_remote_workers_is_the_local_table_alone() -> None:
    """Scripts that read `after list` see no change until a remote worker connects."""
    lines = worker_lines([{"name": "mailer", "host": "box", "state": "running", "pid": 7, "uptime": 3.2, "tasks_run": 1, "here": True}], now=0)
    assert [line.rstrip() for line in lines] == [
        "NAME             HOST             STATE          PID    UPTIME  TASKS  LAST ERROR",
        "mailer           box              running          7        3s      1",
    ]


def test_ago_reads_the_last_call_as_a_user_would() -> None:
    iso = "2027-01-15T08:00:00.000Z"
    at = datetime.fromisoformat(iso).timestamp()
    assert ago(iso, at + 3.4) == "3s ago"
    assert ago(iso, at + 600) == "10m ago"
    assert ago(iso, at + 3 * 3600) == "3h ago"
    assert ago(iso, at - 2) == "0s ago"  # another daemon's clock a little ahead
    assert ago(None, at) == "-" and ago("yesterday", at) == "-"
