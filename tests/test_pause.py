"""Pause and resume end to end: real daemons, real worker processes, the real database.

A paused cron task does not fire, and on resume its misfire policy decides what the
missed occurrences become; a running task paused finishes its run; a worker name paused
holds on two daemons sharing one database (neither starts its tasks; resume: both go);
documents written straight into CouchDB (a paused task, a malformed ``paused``, a
``pause:<name>`` document); the REST errors; the CLI; the Python module.

"Nothing happens while paused" is checked by waiting a few seconds and seeing nothing:
a negative can only be checked that way. Everything positive waits on a condition with a
generous deadline.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from conftest import CLIENT_PASSWORD, CLIENT_USER, Couch, Daemon, executions, iso_in, tid, wait_until

from after import timing
from after.jobs import TaskContext
from after.scheduler import connect

LONG = 90.0
#: How long "nothing starts while paused" is watched.
QUIET = 5.0


def count_job(path: Path, sleep: float = 0.0) -> dict[str, Any]:
    return {"name": "count", "arguments": [str(path)], "kwargs": {"sleep": sleep} if sleep else {}}


def runs_of(d: Daemon, task_id: str) -> list[dict[str, Any]]:
    return list(d.task(task_id).get("runs") or [])


def test_rest_pause_and_resume_of_a_task_and_its_errors(daemon: Daemon) -> None:
    created = daemon.create({"worker": "w", "date": iso_in(3600), "job": "noop"})
    path = f"/tasks/{tid(created['id'])}"
    status, doc = daemon.api("POST", path + "/pause", {"note": "db migration"})
    assert status == 200, doc
    assert doc["paused"]["by"] == "api" and doc["paused"]["note"] == "db migration"
    assert doc["status"] == "waiting" and doc["history"][-1]["reason"] == "paused: db migration"
    # Again: unchanged (the first pause's who, when and why stay).
    status, again = daemon.api("POST", path + "/pause", {"note": "other"})
    assert status == 200 and again["paused"] == doc["paused"] and again["_rev"] == doc["_rev"]
    assert daemon.task(created["id"])["paused"] == doc["paused"]
    # No body at all is a pause without a note.
    status, doc = daemon.api("POST", path + "/resume")
    assert status == 200 and doc["paused"] is None and doc["history"][-1]["reason"] == "resumed"
    status, doc = daemon.api("POST", path + "/pause")
    assert status == 200 and doc["paused"]["note"] is None
    # Errors: unknown task, bad bodies, a stale revision, a finished task.
    assert daemon.api("POST", "/tasks/task:nope/pause")[0] == 404
    assert daemon.api("POST", "/tasks/task:nope/resume")[0] == 404
    status, err = daemon.api("POST", path + "/pause", {"note": 5})
    assert status == 400 and err["field"] == "note", err
    status, err = daemon.api("POST", path + "/pause", {"why": "x"})
    assert status == 400 and err["field"] == "why", err
    status, err = daemon.api("POST", path + "/pause", raw=b"[1]", headers={"Content-Type": "application/json"})
    assert status == 400 and err["field"] == "body", err
    status, err = daemon.api("POST", path + "/resume", headers={"If-Match": '"1-stale"'})
    assert status == 409 and err["field"] == "rev", err
    assert daemon.api("POST", path + "/pause", token="wrong")[0] == 401
    daemon.api("POST", path + "/cancel")
    daemon.wait_status(created["id"], "canceled", timeout=LONG)
    status, err = daemon.api("POST", path + "/pause")
    assert status == 409 and err["field"] == "status" and "canceled" in err["message"], err
    # A malformed paused in a POST /tasks body: 400 naming the field.
    status, err = daemon.api("POST", "/tasks", {"worker": "w", "date": iso_in(60), "job": "noop", "paused": {"by": "me"}})
    assert status == 400 and err["field"] == "paused.at", err
    # Worker names: an invalid one, and the spec lists every pause route.
    status, err = daemon.api("POST", "/workers/a%20b/pause")
    assert status == 400 and err["field"] == "name", err
    paths = daemon.api("GET", "/openapi.json")[1]["paths"]
    for p in ("/tasks/{id}/pause", "/tasks/{id}/resume", "/workers/{name}/pause", "/workers/{name}/resume"):
        assert "post" in paths[p], p


def test_a_paused_cron_task_does_not_fire_and_resume_applies_its_misfire_policy(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    runs = tmp_path / "runs"
    # coalesce: paused while it runs every second; on resume one run stands for all missed.
    coalesce = daemon.create({"worker": "w", "cron": "* * * * * *", "job": count_job(runs), "misfire": "coalesce"})["id"]
    # skip (grace 3 s): created paused; on resume its occurrence is recorded missed, not run.
    skip = daemon.create(
        {
            "worker": "w",
            "cron": "* * * * * *",
            "job": count_job(runs),
            "misfire": {"policy": "skip", "grace": 3},
            "paused": {"by": "test", "at": timing.fmt(timing.from_ts(time.time())), "note": "created paused"},
        }
    )
    skip_id, skip_due = skip["id"], skip["task"]["date"]
    wait_until(lambda: executions(runs)[coalesce] >= 1, LONG, "the coalesce task's first run")
    status, doc = daemon.api("POST", f"/tasks/{tid(coalesce)}/pause", {"note": "hold"})
    assert status == 200 and doc["paused"]["note"] == "hold", doc
    # A run under way when it was paused finishes; none starts after it.
    daemon.wait_status(coalesce, {"reschedule", "waiting"}, timeout=LONG)
    paused_at, before = time.time(), executions(runs)[coalesce]
    pending_date = daemon.task(coalesce)["date"]
    time.sleep(QUIET)
    assert executions(runs)[coalesce] == before and executions(runs)[skip_id] == 0
    assert daemon.task(coalesce)["date"] == pending_date
    assert daemon.task(skip_id)["status"] == "waiting"
    resumed = time.time()
    assert resumed - paused_at >= QUIET
    for task_id in (coalesce, skip_id):
        status, doc = daemon.api("POST", f"/tasks/{tid(task_id)}/resume")
        assert status == 200 and doc["paused"] is None, doc
    wait_until(lambda: executions(runs)[coalesce] >= before + 2, LONG, "two runs of the coalesce task after resume")
    after = [r for r in runs_of(daemon, coalesce) if r["date"] >= pending_date]
    # The overdue occurrence runs once, late; the next is one after that run's start: the
    # occurrences of the pause are folded into it, not run one by one.
    assert after[0]["date"] == pending_date and timing.parse_date(after[0]["started"]).timestamp() >= resumed - 1
    assert timing.parse_date(after[1]["date"]).timestamp() >= resumed - 1, after[:2]
    wait_until(lambda: executions(runs)[skip_id] >= 1, LONG, "the skip task's first run after resume")
    skip_runs = runs_of(daemon, skip_id)
    assert skip_runs[0] == {"date": skip_due, "status": "missed"}, skip_runs[:2]
    assert all(timing.parse_date(r["date"]).timestamp() >= resumed - 1 for r in skip_runs[1:]), skip_runs


def test_pausing_a_running_task_lets_the_run_finish(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    runs = tmp_path / "runs"
    task_id = daemon.create({"worker": "w", "date": iso_in(0), "job": count_job(runs, sleep=3)})["id"]
    wait_until(lambda: executions(runs)[task_id] == 1, LONG, "the run to start")
    status, doc = daemon.api("POST", f"/tasks/{tid(task_id)}/pause", {"note": "while it runs"})
    assert status == 200 and doc["status"] in ("schedule", "scheduled") and doc["paused"]["note"] == "while it runs", doc
    done = daemon.wait_status(task_id, {"done", "err"}, timeout=LONG)
    assert done["status"] == "done" and done["result"] == task_id and done["paused"]["note"] == "while it runs"
    assert executions(runs)[task_id] == 1
    # Finished: a pause is refused (409); a resume clears what is left.
    assert daemon.api("POST", f"/tasks/{tid(task_id)}/pause")[0] == 409
    status, doc = daemon.api("POST", f"/tasks/{tid(task_id)}/resume")
    assert status == 200 and doc["paused"] is None and doc["status"] == "done"


def test_a_paused_worker_name_holds_on_two_daemons_sharing_a_database(start_daemon: Any, tmp_path: Path) -> None:
    one, two = start_daemon("d1"), start_daemon("d2")
    for d in (one, two):
        d.start_worker("w", concurrency=2)
    runs = tmp_path / "runs"
    res = one.cli("pause", "w", "--note", "smtp relay down")
    assert "worker w paused by cli" in res.stdout and "smtp relay down" in res.stdout, res.stdout

    def paused_on(d: Daemon) -> bool:
        return all(w.get("paused") for w in d.api("GET", "/workers")[1]["workers"] if w["name"] == "w")

    wait_until(lambda: paused_on(two), LONG, "the second daemon to see the pause (changes feed)")
    status, shown = two.api("GET", "/workers/w")
    assert status == 200 and shown["paused"]["by"] == "cli" and shown["paused"]["note"] == "smtp relay down", shown
    assert two.api("GET", "/workers/w/pause")[1]["paused"]["by"] == "cli"
    assert "(worker w paused by cli" in two.cli("list").stdout
    ids = [d.create({"worker": "w", "date": iso_in(-30 + i), "job": count_job(runs)})["id"] for i, d in enumerate([one, two] * 3)]
    time.sleep(QUIET)
    assert executions(runs) == {}, executions(runs)
    assert {one.task(i)["status"] for i in ids} == {"waiting"}
    status, body = two.api("POST", "/workers/w/resume")
    assert status == 200 and body == {"name": "w", "paused": None}
    wait_until(lambda: len(executions(runs)) == len(ids), LONG, "every task to run after resume")
    for task_id in ids:
        assert one.wait_status(task_id, "done", timeout=LONG)["status"] == "done"
    assert set(executions(runs).values()) == {1}, executions(runs)
    wait_until(lambda: not any(w.get("paused") for w in one.api("GET", "/workers")[1]["workers"]), LONG, "the first daemon to see the resume")
    # Resume again: nothing to resume, the same answer.
    assert one.cli("resume", "w").stdout.strip() == "worker w resumed"


def test_documents_written_straight_into_couchdb(daemon: Daemon, couch: Couch, dbname: str, tmp_path: Path) -> None:
    """A client program's writes: a paused task is honoured, a malformed ``paused`` ends the
    task ``err`` naming the field, and a ``pause:<name>`` document pauses the name."""
    daemon.start_worker("w")
    runs = tmp_path / "runs"
    base = {"type": "task", "worker": "w", "status": "waiting", "date": timing.fmt(timing.from_ts(time.time())), "job": count_job(runs)}
    docs = {
        "paused": {**base, "_id": "task:direct-paused", "paused": {"by": "ops-script", "at": base["date"], "note": "direct"}},
        "bad": {**base, "_id": "task:direct-bad", "paused": "yes"},
    }

    async def write(store: Any) -> None:
        for doc in docs.values():
            await store.put(dict(doc))
        await store.put({"_id": "pause:w", "type": "pause", "worker": "w", "by": "ops-script", "at": base["date"], "note": "maintenance"})

    async def unpause(store: Any) -> None:
        await store.delete("pause:w")
        doc = await store.get("task:direct-paused")
        await store.put({**doc, "paused": None})

    async def direct(fn: Any) -> None:
        async with couch.store(dbname, user=CLIENT_USER, password=CLIENT_PASSWORD) as store:
            await fn(store)

    asyncio.run(direct(write))
    bad = daemon.wait_status("task:direct-bad", "err", timeout=LONG)
    assert bad["error"]["reason"] == "invalid" and bad["error"]["field"] == "paused", bad["error"]
    wait_until(lambda: (daemon.api("GET", "/workers/w")[1].get("paused") or {}).get("note") == "maintenance", LONG, "the direct pause document")
    other = daemon.create({"worker": "w", "date": iso_in(0), "job": count_job(runs)})["id"]
    time.sleep(QUIET)
    assert executions(runs) == {}
    assert daemon.task("task:direct-paused")["status"] == "waiting"
    asyncio.run(direct(unpause))
    daemon.wait_status(other, "done", timeout=LONG)
    daemon.wait_status("task:direct-paused", "done", timeout=LONG)
    assert executions(runs) == {other: 1, "task:direct-paused": 1}


def test_cli_pauses_and_resumes_a_task(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    runs = tmp_path / "runs"
    # Due in 20 s: paused before it is claimed (scheduler.claim_ahead, 2 s, before its date).
    due = time.time() + 20
    task_id = daemon.create({"worker": "w", "date": due, "job": count_job(runs)})["id"]
    out = daemon.cli("task", "pause", task_id, "--note", "not yet").stdout
    assert out.startswith(f"{task_id} waiting paused by cli at ") and out.strip().endswith(": not yet"), out
    assert daemon.task(task_id)["paused"]["by"] == "cli"
    time.sleep(max(0.0, due + 2 - time.time()))  # past its date: still not run
    assert executions(runs) == {}
    assert daemon.cli("task", "resume", task_id).stdout.strip().endswith("resumed")
    # Its date passed while paused: it runs now (misfire policy run, the default).
    assert daemon.wait_status(task_id, "done", timeout=LONG)["status"] == "done"
    bad = daemon.cli("task", "pause", task_id, check=False)
    assert bad.returncode == 1 and "(HTTP 409)" in bad.stderr, bad.stderr


async def test_python_module_pauses_tasks_and_worker_names(couch: Couch, dbname: str) -> None:
    ran: list[str] = []

    async def note(ctx: TaskContext) -> None:
        ran.append(ctx.id)

    async with connect(couch.url_for(), database=dbname, run={"calc": {"note": note}}) as after:
        # Due in 15 s: paused well before it is claimed (scheduler.claim_ahead, 2 s, before
        # its date), however busy the machine.
        due = time.time() + 15
        first = await after.schedule("calc", "note", date=due)
        paused = await after.pause(first["_id"], note="later")
        assert paused["paused"]["by"] == "python" and paused["paused"]["note"] == "later"
        await asyncio.sleep(due + 2 - time.time())  # past its date
        assert ran == []
        await after.resume(first["_id"])
        assert (await after.wait(first["_id"], timeout=LONG))["status"] == "done"
        pause = await after.pause_worker("calc", note="quiet hours")
        assert pause["_id"] == "pause:calc" and pause["by"] == "python"
        assert (await after.worker_pause("calc") or {}).get("note") == "quiet hours"
        second = await after.schedule("calc", "note")
        await asyncio.sleep(QUIET)
        assert ran == [first["_id"]]
        lifted = await after.resume_worker("calc")
        assert lifted is not None and lifted["note"] == "quiet hours"
        assert await after.resume_worker("calc") is None
        assert (await after.wait(second["_id"], timeout=LONG))["status"] == "done"
        assert ran == [first["_id"], second["_id"]]


def test_a_paused_worker_name_delivers_nothing_to_a_remote_worker(daemon: Daemon) -> None:
    status, hello = daemon.api("POST", "/workers/sender/connect", {"concurrency": 2, "host": "web-3", "client": "test"})
    assert status == 201, hello
    session = hello["session"]
    status, body = daemon.api("POST", "/workers/sender/pause", {"note": "deploy"})
    assert status == 200 and body["paused"]["note"] == "deploy", body
    task_id = daemon.create({"worker": "sender", "date": iso_in(-5), "job": "send_report"})["id"]
    status, polled = daemon.api("POST", "/workers/sender/poll", {"session": session, "wait": QUIET})
    assert status == 200 and polled["tasks"] == [], polled
    assert daemon.task(task_id)["status"] == "waiting"
    shown = [w for w in daemon.api("GET", "/workers")[1]["workers"] if w["name"] == "sender"]
    assert shown and all(w["paused"]["note"] == "deploy" for w in shown), shown
    assert daemon.api("POST", "/workers/sender/resume")[0] == 200
    deadline = time.monotonic() + LONG
    got: list[dict[str, Any]] = []
    while not got and time.monotonic() < deadline:
        status, polled = daemon.api("POST", "/workers/sender/poll", {"session": session, "wait": 10})
        assert status == 200, polled
        got = polled["tasks"]
    assert [t["id"] for t in got] == [task_id], got


def test_a_resumed_worker_name_starts_its_waiting_tasks_oldest_due_first(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w", concurrency=1)
    runs = tmp_path / "runs"
    assert daemon.api("POST", "/workers/w/pause")[0] == 200
    ids = {ago: daemon.create({"worker": "w", "date": iso_in(-ago), "job": count_job(runs)})["id"] for ago in (20, 40, 10, 30)}
    time.sleep(2)
    assert executions(runs) == {}
    assert daemon.api("POST", "/workers/w/resume")[0] == 200
    wait_until(lambda: len(executions(runs)) == 4, LONG, "the four tasks to run")
    order = [line.split()[0] for line in runs.read_text().splitlines()]
    assert order == [ids[40], ids[30], ids[20], ids[10]], order
