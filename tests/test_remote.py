"""The remote worker protocol over a real daemon's REST port (docs/worker-protocol.md),
spoken call by call as any program would: leases, stale calls, the session's end,
cancel through heartbeats, discard, failure policies, timeouts."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Couch, Daemon, http, iso_in, tid, wait_until

from after.api import workerapi
from after.api.routes import ROUTES

#: A short lease: a vanished worker's session ends within seconds.
FAST = {"AFTER_SCHEDULER_LEASE_SECONDS": "3", "AFTER_SCHEDULER_CLAIM_AHEAD": "1"}


class Remote:
    """One remote worker, as a test drives it call by call."""

    def __init__(self, d: Daemon, name: str, *, concurrency: int = 4, host: str = "web-3") -> None:
        self.d, self.name = d, name
        status, body = d.api("POST", f"/workers/{name}/connect", {"concurrency": concurrency, "host": host, "client": "test"})
        assert status == 201, body
        self.session: str = body["session"]
        self.hello = body

    def call(self, verb: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.d.api("POST", f"/workers/{self.name}/{verb}", body)

    def task_call(self, task_id: str, verb: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.d.api("POST", f"/workers/{self.name}/tasks/{tid(task_id)}/{verb}", body)

    def poll(self, *, wait: float = 10, want: int = 1) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(got) < want and time.monotonic() < deadline:
            status, body = self.call("poll", {"session": self.session, "wait": wait})
            assert status == 200, body
            got += body["tasks"]
        assert len(got) >= want, f"{len(got)} task(s) delivered, wanted {want}"
        return got

    def accept(self, offer: dict[str, Any]) -> dict[str, Any]:
        status, body = self.task_call(offer["id"], "accept", {"lease": offer["lease"]})
        assert status == 200, body
        return body

    def finish(self, offer: dict[str, Any], **body: Any) -> tuple[int, Any]:
        return self.task_call(offer["id"], "finish", {"lease": offer["lease"], **body})


def task(d: Daemon, worker: str, *, seconds: float = 0.0, **extra: Any) -> str:
    return str(d.create({"worker": worker, "date": iso_in(seconds), "job": {"name": "send", "arguments": [1]}, **extra})["id"])


def test_a_task_round_trip_through_the_protocol(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    assert remote.hello["heartbeat"] > 0 and remote.hello["timeout"] >= remote.hello["heartbeat"]
    task_id = task(daemon, "mailer", seconds=1.5)
    (offer,) = remote.poll()
    # Delivered ahead of its due time, with the time to start it.
    assert offer["id"] == task_id and offer["job"] == {"name": "send", "arguments": [1], "kwargs": {}}
    assert offer["start_in"] > 0 and offer["attempt"] == 1
    accepted = remote.accept(offer)
    assert accepted["status"] == "scheduled"
    doc = daemon.task(task_id)
    assert doc["status"] == "scheduled"
    assert doc["history"][-1]["by"] == "worker:mailer@web-3"
    assert doc["lease"]["host"] == "web-3" and doc["lease"]["session"] == remote.session and doc["lease"]["id"] == offer["lease"]
    # Accepting again (its answer was lost) answers the same.
    assert remote.task_call(task_id, "accept", {"lease": offer["lease"]})[0] == 200

    status, beat = remote.task_call(task_id, "heartbeat", {"lease": offer["lease"], "progress": {"done": 1, "total": 2}, "log": ["sent 1"]})
    assert status == 200 and beat == {"cancel": False}
    wait_until(lambda: daemon.task(task_id).get("progress") == {"done": 1, "total": 2}, 20, "progress written")

    status, answer = remote.finish(offer, status="done", result={"sent": 2})
    assert status == 200 and answer == {"id": task_id, "status": "done"}
    doc = daemon.task(task_id)
    assert doc["status"] == "done" and doc["result"] == {"sent": 2} and doc["log"] == ["sent 1"] and "lease" not in doc
    assert doc["started"] >= doc["date"]
    # A finish repeated because its answer was lost answers the same; other calls are stale.
    assert remote.finish(offer, status="done", result={"sent": 2}) == (200, answer)
    assert remote.task_call(task_id, "heartbeat", {"lease": offer["lease"]})[0] == 409


def test_a_stale_lease_gets_409_and_changes_nothing(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    task_id = task(daemon, "mailer")
    (offer,) = remote.poll()
    before = daemon.task(task_id)
    for verb, body in (
        ("accept", {"lease": "0" * 32}),
        ("heartbeat", {"lease": "0" * 32}),
        ("finish", {"lease": "0" * 32, "status": "done"}),
    ):
        status, err = remote.task_call(task_id, verb, body)
        assert status == 409 and err["error"] == "conflict" and "not current" in err["message"], (verb, err)
    # Another worker's name with the right lease is stale too.
    other = Remote(daemon, "other")
    assert other.task_call(task_id, "accept", {"lease": offer["lease"]})[0] == 409
    assert daemon.task(task_id)["_rev"] == before["_rev"]
    # Not accepted: reporting or finishing it is refused; discarding it is allowed.
    assert remote.task_call(task_id, "heartbeat", {"lease": offer["lease"]})[0] == 409
    assert remote.finish(offer, status="done")[0] == 409
    assert daemon.task(task_id)["_rev"] == before["_rev"]


def test_failures_follow_the_retry_policy_unless_not_retryable(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    task_id = task(daemon, "mailer", retry={"max": 3, "delay": 0})
    (first,) = remote.poll()
    remote.accept(first)
    status, answer = remote.finish(first, status="failed", error={"message": "SMTP 451", "retryable": True})
    assert status == 200 and answer["status"] == "reschedule"
    (second,) = remote.poll()
    assert second["id"] == task_id and second["lease"] != first["lease"] and second["attempt"] == 2
    # The first claim's lease is void now.
    assert remote.task_call(task_id, "heartbeat", {"lease": first["lease"]})[0] == 409
    remote.accept(second)
    status, answer = remote.finish(second, status="failed", error={"message": "no such mailbox", "retryable": False})
    assert status == 200 and answer["status"] == "err"
    doc = daemon.task(task_id)
    assert doc["error"]["reason"] == "failed" and doc["error"]["message"] == "no such mailbox" and doc["attempts"] == 2


def test_discarded_ends_err_discarded_and_is_never_retried(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    before = task(daemon, "mailer", retry={"max": 3, "delay": 0})
    (offer,) = remote.poll()
    status, answer = remote.finish(offer, status="discarded", error={"message": "no job send here"})
    assert status == 200 and answer["status"] == "err"
    doc = daemon.task(before)
    assert doc["error"]["reason"] == "discarded" and doc["error"]["message"] == "no job send here" and doc["attempts"] == 0
    # After accepting, discarding is the same end.
    after = task(daemon, "mailer", retry={"max": 3, "delay": 0})
    (offer,) = remote.poll()
    remote.accept(offer)
    assert remote.finish(offer, status="discarded")[1]["status"] == "err"
    assert daemon.task(after)["error"]["reason"] == "discarded"


def test_cancel_reaches_a_running_remote_job_through_the_heartbeat(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    task_id = task(daemon, "mailer")
    (offer,) = remote.poll()
    remote.accept(offer)
    assert daemon.api("POST", f"/tasks/{tid(task_id)}/cancel")[0] == 200

    def told() -> bool:
        status, beat = remote.task_call(task_id, "heartbeat", {"lease": offer["lease"]})
        assert status == 200, beat
        return bool(beat["cancel"])

    wait_until(told, 20, "the heartbeat answer says cancel")
    status, body = remote.call("poll", {"session": remote.session, "wait": 0})
    assert status == 200 and body["cancel"] == [task_id]
    status, answer = remote.finish(offer, status="canceled")
    assert status == 200 and answer["status"] == "canceled"
    assert daemon.task(task_id)["status"] == "canceled"


def test_a_cancel_before_acceptance_withdraws_the_offer(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    task_id = task(daemon, "mailer")
    (offer,) = remote.poll()
    assert daemon.api("POST", f"/tasks/{tid(task_id)}/cancel")[0] == 200
    daemon.wait_status(task_id, "canceled")
    assert remote.task_call(task_id, "accept", {"lease": offer["lease"]})[0] == 409


def test_a_vanished_worker_has_its_tasks_taken_back(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(**FAST)
    remote = Remote(d, "mailer", concurrency=1)
    running = task(d, "mailer")
    (offer,) = remote.poll()
    remote.accept(offer)
    offered = task(d, "mailer")
    (late,) = remote.poll()
    assert late["id"] == offered
    # No call from it for a session timeout: running -> err lost (no retry policy),
    # delivered but never accepted -> waiting again, no attempt spent.
    doc = d.wait_status(running, "err", timeout=30)
    assert doc["error"]["reason"] == "lost" and doc["attempts"] == 1
    back = d.wait_status(offered, "waiting", timeout=30)
    assert back["attempts"] == 0 and "lease" not in back
    status, err = remote.call("poll", {"session": remote.session, "wait": 0})
    assert status == 404 and err["error"] == "session_gone"
    assert remote.finish(offer, status="done")[0] == 409
    assert d.task(running)["status"] == "err"
    # Connecting again, it gets the released task anew, under a new lease.
    again = Remote(d, "mailer")
    (anew,) = again.poll()
    assert anew["id"] == offered and anew["lease"] != late["lease"]


def test_a_vanished_worker_s_running_task_is_retried_by_its_policy(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(**FAST)
    remote = Remote(d, "mailer")
    task_id = task(d, "mailer", retry={"max": 2, "delay": 0})
    (offer,) = remote.poll()
    remote.accept(offer)
    doc = d.wait_status(task_id, {"reschedule", "waiting"}, timeout=30)
    assert doc["error"]["reason"] == "lost"


def test_disconnect_gives_back_what_was_not_accepted(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    task_id = task(daemon, "mailer")
    remote.poll()
    status, body = remote.call("disconnect", {"session": remote.session})
    assert status == 200 and body == {"released": 1, "running": 0}
    assert daemon.wait_status(task_id, "waiting")["attempts"] == 0
    assert not [w for w in daemon.api("GET", "/workers")[1]["workers"] if w["name"] == "mailer"]


def test_the_daemon_enforces_a_remote_task_s_timeout(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    task_id = task(daemon, "mailer", timeout=1)
    (offer,) = remote.poll()
    remote.accept(offer)
    doc = daemon.wait_status(task_id, "err", timeout=30)
    assert doc["error"]["reason"] == "timeout"
    assert remote.finish(offer, status="done")[0] == 409


def test_batch_accept_and_finish(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer", concurrency=10)
    ids = {task(daemon, "mailer") for _ in range(5)}
    offers = remote.poll(want=5)
    status, body = remote.call("accept", {"tasks": [{"id": o["id"], "lease": o["lease"]} for o in offers] + [{"id": "task:nope", "lease": "x"}]})
    assert status == 200 and [r["ok"] for r in body["results"]] == [True] * 5 + [False]
    assert body["results"][-1]["error"] == "conflict"
    status, body = remote.call("finish", {"tasks": [{"id": o["id"], "lease": o["lease"], "status": "done", "result": o["id"]} for o in offers]})
    assert status == 200 and all(r["ok"] and r["status"] == "done" for r in body["results"])
    for task_id in ids:
        assert daemon.task(task_id)["result"] == task_id


def test_a_poll_waits_for_a_task_and_redelivers_what_was_not_accepted(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    started = time.monotonic()
    status, body = remote.call("poll", {"session": remote.session, "wait": 0.5})
    assert status == 200 and body["tasks"] == [] and time.monotonic() - started >= 0.4
    task(daemon, "mailer")
    (offer,) = remote.poll()
    # Its answer "lost": a later poll brings the same task under the same lease.
    (again,) = remote.poll(wait=15)
    assert (again["id"], again["lease"]) == (offer["id"], offer["lease"])


def test_bad_calls_name_the_problem(daemon: Daemon) -> None:
    remote = Remote(daemon, "mailer")
    cases = [
        ("poll", {}, "session"),
        ("poll", {"session": remote.session, "wait": 600}, "wait"),
        ("connect", {"concurrency": 0}, "concurrency"),
        ("connect", {"bogus": 1}, "bogus"),
    ]
    for verb, body, field in cases:
        status, err = remote.call(verb, body)
        assert status == 400 and field in (err.get("field") or ""), (verb, body, err)
    status, err = remote.task_call("task:x", "finish", {"lease": "l", "status": "finished"})
    assert status == 400 and err["field"] == "status"
    status, err = remote.task_call("task:x", "heartbeat", {"lease": "l", "progress": {"done": "a lot"}})
    assert status == 400 and err["field"].startswith("progress")
    status, err = remote.call("poll", {"session": "s-nope"})
    assert status == 404 and err["error"] == "session_gone"
    status, err = http(daemon.base, "POST", "/workers/bad%20name!/connect", {}, token=daemon.token)
    assert status in (400, 404)


@pytest.mark.parametrize("r", [r for r in ROUTES if r.worker and r.handler.__module__ == workerapi.__name__], ids=lambda r: f"{r.method} {r.path}")
def test_every_worker_call_needs_a_token(daemon: Daemon, r: Any) -> None:
    path = r.path.replace("{name}", "mailer").replace("{id}", "task:x")
    for token in (None, "wrong"):
        status, err = http(daemon.base, r.method, path, {}, token=token)
        assert status == 401 and err["error"] == "unauthorized"


def test_a_name_run_locally_here_cannot_connect_remotely(daemon: Daemon) -> None:
    daemon.start_worker("loc", concurrency=1)
    status, err = daemon.api("POST", "/workers/loc/connect", {})
    assert status == 409 and "local worker" in err["message"]


def test_remote_workers_are_listed_with_host_and_heartbeat(start_daemon: Callable[..., Daemon]) -> None:
    first = start_daemon("d1")
    second = start_daemon("d2")
    remote = Remote(first, "mailer", host="web-9")
    task_id = task(first, "mailer")
    (offer,) = remote.poll()
    remote.accept(offer)
    (mine,) = [w for w in first.api("GET", "/workers")[1]["workers"] if w["name"] == "mailer"]
    assert mine["remote"] and mine["host"] == "web-9" and mine["address"] == "127.0.0.1" and mine["live"]
    assert mine["running_tasks"] == 1 and mine["here"] and mine["session"] == remote.session and mine["last_heartbeat"]
    assert first.api("GET", "/workers/mailer")[1]["sessions"][0]["session"] == remote.session
    assert 'after_remote_worker_sessions{worker="mailer"} 1.0' in first.api("GET", "/metrics")[1]

    # Seen from the other daemon (through the heartbeat documents) with its own host.
    def elsewhere() -> list[dict[str, Any]]:
        return [w for w in second.api("GET", "/workers")[1]["workers"] if w["name"] == "mailer"]

    wait_until(lambda: bool(elsewhere()), 30, "the other daemon lists the remote worker")
    (seen,) = elsewhere()
    assert seen["host"] == "web-9" and seen["remote"] and not seen["here"]
    remote.finish(offer, status="done")
    assert first.task(task_id)["status"] == "done"


def test_a_daemon_stopping_lets_remote_jobs_finish(daemon: Daemon, couch: Couch, dbname: str) -> None:
    remote = Remote(daemon, "mailer")
    running = task(daemon, "mailer")
    (offer,) = remote.poll()
    remote.accept(offer)
    waiting = task(daemon, "mailer", seconds=1)
    (undecided,) = remote.poll()
    assert undecided["id"] == waiting
    daemon.proc.send_signal(signal.SIGTERM)

    def told() -> bool:
        status, body = remote.call("poll", {"session": remote.session, "wait": 1})
        return status == 200 and body["stopping"] and body["tasks"] == []

    wait_until(told, 30, "polls answer stopping")
    # The running one may still finish; the one never accepted went back to waiting.
    status, answer = remote.finish(offer, status="done", result=1)
    assert status == 200 and answer["status"] == "done"
    assert daemon.proc.wait(timeout=60) == 0

    async def read() -> dict[str, dict[str, Any]]:
        async with couch.store(dbname) as store:
            return await store.get_many([running, waiting])

    docs = asyncio.run(read())
    assert docs[running]["status"] == "done"
    assert docs[waiting]["status"] == "waiting" and docs[waiting]["attempts"] == 0
