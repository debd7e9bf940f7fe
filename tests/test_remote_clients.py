"""Remote workers end to end: ``python -m after.client`` and examples/node-worker.mjs as
real processes on the daemon's REST port, against a real daemon and store. Executions
are counted by the jobs themselves (tests/jobs/remotejobs.py; the Node example's jobs
append to a file too), never inferred from statuses."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TESTS, CuttableLink, Daemon, executions, http, iso_in, tid, wait_until
from test_tls import after_cli

from after import timing

NODE_EXAMPLE = ROOT / "examples" / "node-worker.mjs"
#: A short lease: a worker that vanished has its session ended in seconds.
LEASE = "3"


class Remote:
    """A remote worker process and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], logfile: Path) -> None:
        self.proc, self.logfile = proc, logfile

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_exit(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit within {timeout}s:\n{self.log()[-3000:]}") from None


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Callable[..., Remote]]:
    """Factory: start a remote worker process (``kind`` "python" or "node") for ``daemon``,
    at ``url`` (default: the daemon's own); killed after the test."""
    started: list[Remote] = []

    def start(
        daemon: Daemon,
        name: str,
        *,
        kind: str = "python",
        url: str | None = None,
        concurrency: int = 4,
        args: tuple[str, ...] = (),
        token_value: str | None = None,
    ) -> Remote:
        token = tmp_path / f"{name}-{len(started)}.token"
        token.write_text(token_value or daemon.token)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
        env["PYTHONPATH"] = str(TESTS / "jobs") + os.pathsep + str(ROOT)
        if kind == "python":
            cmd = [sys.executable, "-m", "after.client", "--url", url or daemon.base, "--name", name, "--token-file", str(token)]
            cmd += ["--jobs", "remotejobs", "--concurrency", str(concurrency), "--poll-wait", "5", "--shutdown-timeout", "20", *args]
        else:
            node = shutil.which("node") or pytest.skip("node is not installed")
            cmd = [node, str(NODE_EXAMPLE)]
            env.update({"AFTER_URL": url or daemon.base, "AFTER_WORKER": name, "AFTER_TOKEN": daemon.token, "AFTER_CONCURRENCY": str(concurrency)})
        logfile = tmp_path / f"{name}-{len(started)}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        r = Remote(proc, logfile)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def sessions(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    _, body = daemon.api("GET", "/workers?here=1")
    return [w for w in body["workers"] if w.get("name") == name and w.get("remote")]


def connected(daemon: Daemon, name: str, worker: Remote, count: int = 1) -> list[dict[str, Any]]:
    """Wait for ``count`` live sessions of ``name``."""

    def ok() -> bool:
        assert worker.proc.poll() is None, f"the worker exited ({worker.proc.returncode}):\n{worker.log()[-3000:]}"
        return len([s for s in sessions(daemon, name) if s["live"]]) >= count

    wait_until(ok, 20, f"{count} session(s) of {name}")
    return sessions(daemon, name)


def job(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "arguments": list(args), "kwargs": kwargs}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_python_client_runs_tasks_on_time_with_progress_and_log(daemon: Daemon, remote: Callable[..., Remote], tmp_path: Path) -> None:
    w = remote(daemon, "py")
    [session] = connected(daemon, "py", w)
    assert session["client"].startswith("after.client/") and session["concurrency"] == 4
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    due = time.time() + 2
    ontime = daemon.create({"worker": "py", "date": timing.fmt(timing.from_ts(due)), "job": job("record", str(runs))})
    gated = daemon.create({"worker": "py", "date": time.time(), "job": job("gated", str(runs), str(gate))})

    # Progress and log lines of a running remote job are the task's, visible through REST.
    def reported() -> bool:
        doc = daemon.task(gated["id"])
        return doc.get("progress", {}).get("done") == 1 and "waiting for the gate" in (doc.get("log") or [])

    wait_until(reported, 15, "the remote job's progress and log line")
    running = daemon.task(gated["id"])
    assert running["status"] == "scheduled" and running["lease"]["session"] == session["session"]
    assert running["history"][-1]["by"] == f"worker:py@{session['host']}"
    gate.touch()
    done = daemon.wait_status(gated["id"], "done", timeout=10)
    assert done["result"] == "through" and done["progress"]["done"] == 2

    doc = daemon.wait_status(ontime["id"], "done", timeout=10)
    assert doc["result"] == ontime["id"]
    started = float(next(ln for ln in lines(runs) if ln.startswith(ontime["id"])).split()[1])
    # On time: the job itself started at its date, neither before nor long after.
    assert due - 0.05 <= started <= due + 1.0, started - due
    assert timing.parse_date(doc["started"]) >= timing.parse_date(doc["date"])
    assert executions(runs) == {ontime["id"]: 1, gated["id"]: 1}


def test_python_client_failures_follow_the_retry_policy(daemon: Daemon, remote: Callable[..., Remote], tmp_path: Path) -> None:
    connected(daemon, "py", remote(daemon, "py"))
    runs = tmp_path / "runs"
    now = time.time()
    retried = daemon.create({"worker": "py", "date": now, "retry": {"max": 1, "delay": 0.1}, "job": job("fail", str(runs), "SMTP 451")})
    permanent = daemon.create({"worker": "py", "date": now, "retry": 3, "job": job("fail_for_good", str(runs))})
    unknown = daemon.create({"worker": "py", "date": now, "retry": 3, "job": job("no_such_job")})
    weird = daemon.create({"worker": "py", "date": now, "job": job("not_json")})

    doc = daemon.wait_status(retried["id"], "err", timeout=15)
    assert doc["attempts"] == 2 and doc["error"]["message"] == "SMTP 451" and doc["error"]["type"] == "RuntimeError"
    assert "Traceback" in doc["error"]["traceback"]
    doc = daemon.wait_status(permanent["id"], "err", timeout=10)
    assert doc["attempts"] == 1 and doc["error"]["type"] == "Permanent"
    doc = daemon.wait_status(unknown["id"], "err", timeout=10)
    assert doc["error"]["reason"] == "discarded" and "no_such_job" in doc["error"]["message"] and doc.get("attempts", 0) == 0
    doc = daemon.wait_status(weird["id"], "err", timeout=10)
    assert "not JSON" in doc["error"]["message"]
    assert executions(runs) == {retried["id"]: 2, permanent["id"]: 1}


def test_node_example_runs_fails_discards_and_cancels(start_daemon: Callable[..., Daemon], remote: Callable[..., Remote], tmp_path: Path) -> None:
    # A 6 s lease: heartbeats (with the log lines) every second.
    daemon = start_daemon(AFTER_SCHEDULER_LEASE_SECONDS="6")
    w = remote(daemon, "node", kind="node")
    [session] = connected(daemon, "node", w)
    assert session["client"] == "node-worker.mjs"
    out = tmp_path / "out"
    now = time.time()
    add = daemon.create({"worker": "node", "date": now, "job": job("add", 2, 3)})
    append = daemon.create({"worker": "node", "date": iso_in(1.5), "job": job("append", str(out), "hello")})
    failing = daemon.create({"worker": "node", "date": now, "retry": {"max": 1, "delay": 0.1}, "job": job("fail", str(out), "nope")})
    unknown = daemon.create({"worker": "node", "date": now, "job": job("no_such_job")})
    sleeper = daemon.create({"worker": "node", "date": now, "job": job("sleep", 3600)})

    assert daemon.wait_status(add["id"], "done", timeout=10)["result"] == 5
    doc = daemon.wait_status(append["id"], "done", timeout=10)
    assert doc["result"] == "hello" and timing.parse_date(doc["started"]) >= timing.parse_date(doc["date"])
    doc = daemon.wait_status(failing["id"], "err", timeout=15)
    assert doc["attempts"] == 2 and doc["error"]["message"] == "nope" and doc["error"]["reason"] == "failed"
    assert daemon.wait_status(unknown["id"], "err", timeout=10)["error"]["reason"] == "discarded"
    wait_until(lambda: "sleeping 3600s" in (daemon.task(sleeper["id"]).get("log") or []), 15, "the sleep job's log line")
    t0 = time.monotonic()
    daemon.api("POST", f"/tasks/{tid(sleeper['id'])}/cancel")
    daemon.wait_status(sleeper["id"], "canceled", timeout=10)
    assert time.monotonic() - t0 < 3, "canceled by the worker, not by the daemon's lease (6 s)"
    assert sorted(lines(out)) == ["failed", "failed", "hello"]

    # SIGTERM: the example disconnects.
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert sessions(daemon, "node") == []


@pytest.mark.parametrize("name", ["hang", "hang_sync"])
def test_cancel_reaches_a_running_python_job(daemon: Daemon, remote: Callable[..., Remote], tmp_path: Path, name: str) -> None:
    connected(daemon, "py", remote(daemon, "py"))
    runs = tmp_path / "runs"
    reply = daemon.create({"worker": "py", "date": time.time(), "job": job(name, str(runs))})
    wait_until(lambda: executions(runs)[reply["id"]] == 1, 10, "the job to run")
    t0 = time.monotonic()
    status, _ = daemon.api("POST", f"/tasks/{tid(reply['id'])}/cancel")
    assert status == 200
    doc = daemon.wait_status(reply["id"], "canceled", timeout=10)
    # Acknowledged by the worker (the daemon's own enforcement waits for a 30 s lease).
    assert time.monotonic() - t0 < 10
    assert doc["history"][-1]["by"].startswith("worker:py@")
    # The job saw it: an async job was cancelled, a plain one saw ctx.cancelled.
    wait_until(lambda: lines(Path(f"{runs}.cancel")) == [f"{reply['id']} True"], 5, "the job to see its cancel")


def test_kill_9_of_the_python_worker_mid_job(start_daemon: Callable[..., Daemon], remote: Callable[..., Remote], tmp_path: Path) -> None:
    daemon = start_daemon(AFTER_SCHEDULER_LEASE_SECONDS=LEASE, AFTER_SCHEDULER_CLAIM_AHEAD="1")
    w = remote(daemon, "py")
    connected(daemon, "py", w)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    once = daemon.create({"worker": "py", "date": time.time(), "job": job("hang", str(runs))})
    again = daemon.create({"worker": "py", "date": time.time(), "retry": {"max": 1, "delay": 0.1}, "job": job("gated", str(runs), str(gate))})
    wait_until(lambda: len(executions(runs)) == 2, 10, "both jobs to run")
    w.proc.kill()
    w.proc.wait()

    # The session ends after a lease without calls: the running tasks are taken back.
    doc = daemon.wait_status(once["id"], "err", timeout=15)
    assert doc["error"]["reason"] == "lost" and doc["attempts"] == 1
    doc = daemon.wait_status(again["id"], "reschedule", timeout=15)
    assert doc["error"]["reason"] == "lost" and doc["attempts"] == 1 and doc["history"][-1]["reason"].startswith("retry")
    assert sessions(daemon, "py") == []

    # Another worker process runs the retry; the task without one never ran again.
    gate.touch()
    connected(daemon, "py", remote(daemon, "py"))
    assert daemon.wait_status(again["id"], "done", timeout=15)["attempts"] == 2
    counts = executions(runs)
    assert counts == {once["id"]: 1, again["id"]: 2}
    assert len({ln.split()[2] for ln in lines(runs)}) == 2, "the retry ran in the new worker process"


def _link_to(daemon: Daemon) -> CuttableLink:
    return CuttableLink("127.0.0.1", urllib.parse.urlsplit(daemon.base).port or 0)


def test_network_cut_shorter_than_the_session_timeout(start_daemon: Callable[..., Daemon], remote: Callable[..., Remote], tmp_path: Path) -> None:
    daemon = start_daemon(AFTER_SCHEDULER_LEASE_SECONDS="10")
    link = _link_to(daemon)
    try:
        w = remote(daemon, "py", url=link.via(daemon.base))
        [before] = connected(daemon, "py", w)
        runs, gate = tmp_path / "runs", tmp_path / "gate"
        reply = daemon.create({"worker": "py", "date": time.time(), "job": job("gated", str(runs), str(gate))})
        wait_until(lambda: executions(runs)[reply["id"]] == 1, 10, "the job to run")
        link.cut()
        gate.touch()  # the job ends while the daemon cannot be reached
        wait_until(lambda: "/finish" in w.log() and "retrying" in w.log(), 10, "the finish to fail")
        assert daemon.task(reply["id"])["status"] == "scheduled"
        link.restore()
        doc = daemon.wait_status(reply["id"], "done", timeout=15)
        assert doc["result"] == "through" and doc["attempts"] == 1
        [after] = sessions(daemon, "py")
        assert after["session"] == before["session"], "the same session went on"
        assert executions(runs) == {reply["id"]: 1}
    finally:
        link.close()


def test_network_cut_longer_than_the_session_timeout(start_daemon: Callable[..., Daemon], remote: Callable[..., Remote], tmp_path: Path) -> None:
    daemon = start_daemon(AFTER_SCHEDULER_LEASE_SECONDS=LEASE, AFTER_SCHEDULER_CLAIM_AHEAD="1")
    link = _link_to(daemon)
    try:
        w = remote(daemon, "py", url=link.via(daemon.base))
        [before] = connected(daemon, "py", w)
        runs = tmp_path / "runs"
        lost = daemon.create({"worker": "py", "date": time.time(), "job": job("hang", str(runs))})
        wait_until(lambda: executions(runs)[lost["id"]] == 1, 10, "the job to run")
        link.cut()
        doc = daemon.wait_status(lost["id"], "err", timeout=15)
        assert doc["error"]["reason"] == "lost"
        assert sessions(daemon, "py") == []
        link.restore()
        # The worker learns its session is gone, drops the old task's job and connects again.
        [after] = connected(daemon, "py", w)
        assert after["session"] != before["session"]
        wait_until(lambda: lines(Path(f"{runs}.cancel")) == [f"{lost['id']} True"], 10, "the old job to be stopped")
        fresh = daemon.create({"worker": "py", "date": time.time(), "job": job("record", str(runs))})
        assert daemon.wait_status(fresh["id"], "done", timeout=10)["result"] == fresh["id"]
        assert daemon.task(lost["id"])["status"] == "err"
        assert executions(runs) == {lost["id"]: 1, fresh["id"]: 1}
    finally:
        link.close()


def test_sigterm_lets_the_running_job_finish_then_disconnects(daemon: Daemon, remote: Callable[..., Remote], tmp_path: Path) -> None:
    w = remote(daemon, "py")
    connected(daemon, "py", w)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    running = daemon.create({"worker": "py", "date": time.time(), "job": job("gated", str(runs), str(gate))})
    wait_until(lambda: executions(runs)[running["id"]] == 1, 10, "the job to run")
    w.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping: waiting for 1 running task" in w.log(), 10, "the worker to stop polling")
    later = daemon.create({"worker": "py", "date": time.time(), "job": job("record", str(runs))})
    gate.touch()
    assert w.wait_exit() == 0
    assert daemon.wait_status(running["id"], "done", timeout=5)["result"] == "through"
    assert sessions(daemon, "py") == []
    assert "disconnected" in w.log()
    # A task due after the stop was not taken: it waits for another worker.
    assert daemon.task(later["id"])["status"] == "waiting"
    assert executions(runs) == {running["id"]: 1}


def test_a_job_past_its_timeout_is_stopped_on_the_worker(daemon: Daemon, remote: Callable[..., Remote], tmp_path: Path) -> None:
    connected(daemon, "py", remote(daemon, "py"))
    runs = tmp_path / "runs"
    reply = daemon.create({"worker": "py", "date": time.time(), "timeout": 1, "job": job("hang_sync", str(runs))})
    doc = daemon.wait_status(reply["id"], "err", timeout=15)
    assert doc["error"]["reason"] == "timeout"
    # The plain function saw ctx.cancelled and returned: its thread is not left running.
    wait_until(lambda: lines(Path(f"{runs}.cancel")) == [f"{reply['id']} True"], 10, "the job to see its timeout")
    assert executions(runs) == {reply["id"]: 1}


def test_a_wrong_token_stops_the_worker_saying_so(daemon: Daemon, remote: Callable[..., Remote], tmp_path: Path) -> None:
    w = remote(daemon, "bad", token_value="not-the-token")
    assert w.wait_exit() == 1
    assert "401 unauthorized" in w.log()
    assert sessions(daemon, "bad") == []


def test_the_client_needs_none_of_the_daemon() -> None:
    """A worker host runs after.client with the standard library and aiohttp only."""
    code = (
        "import sys, after.client, after.client.__main__; "
        "print(sorted(m for m in sys.modules if (m.startswith('after.') and not m.startswith('after.client'))"
        " or m.split('.')[0] in ('aiocouch', 'pydantic', 'click', 'croniter', 'prometheus_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_jobs_module_without_a_table_offers_its_public_functions() -> None:
    from after.client import load

    sys.path.insert(0, str(TESTS / "jobs"))
    try:
        assert set(load(["runfile"])) == {"append"}  # its own public function; `os` is not one
        assert set(load(["remotejobs"])) == {"record", "add", "gated", "hang", "hang_sync", "fail", "fail_for_good", "not_json"}
    finally:
        sys.path.remove(str(TESTS / "jobs"))


def test_a_pending_cancel_does_not_make_the_long_poll_spin(daemon: Daemon) -> None:
    """A poll answers a cancel at once, once: while the job takes its time to stop, the
    next poll waits as usual (a worker polling in a loop must not spin)."""
    _, conn = daemon.api("POST", "/workers/raw/connect", {"concurrency": 2})
    session = conn["session"]
    reply = daemon.create({"worker": "raw", "date": time.time(), "job": "noop"})
    _, answer = daemon.api("POST", "/workers/raw/poll", {"session": session, "wait": 10})
    [task] = answer["tasks"]
    assert daemon.api("POST", f"/workers/raw/tasks/{tid(task['id'])}/accept", {"lease": task["lease"]})[0] == 200
    daemon.api("POST", f"/tasks/{tid(reply['id'])}/cancel")
    _, answer = daemon.api("POST", "/workers/raw/poll", {"session": session, "wait": 10})
    assert answer["cancel"] == [reply["id"]]
    t0 = time.monotonic()
    _, answer = daemon.api("POST", "/workers/raw/poll", {"session": session, "wait": 1})
    assert time.monotonic() - t0 >= 0.9, "the poll answered at once again, for a cancel it had answered already"
    assert answer["cancel"] == [reply["id"]]  # still listed: the cancel is still pending
    # The heartbeat says so too; the acknowledgement ends it.
    assert daemon.api("POST", f"/workers/raw/tasks/{tid(task['id'])}/heartbeat", {"lease": task["lease"]})[1] == {"cancel": True}
    assert daemon.api("POST", f"/workers/raw/tasks/{tid(task['id'])}/finish", {"lease": task["lease"], "status": "canceled"})[1]["status"] == "canceled"
    daemon.api("POST", "/workers/raw/disconnect", {"session": session})


def test_python_client_over_https_with_a_worker_token(https_daemon: Daemon, pki: dict[str, Path], remote: Callable[..., Remote], tmp_path: Path) -> None:
    d, ca = https_daemon, str(pki["ca"])
    made = after_cli(d, "token", "--worker", "tlsw", AFTER_CA_FILE=ca)
    assert made.returncode == 0, made.stderr
    worker_token = made.stdout.split()[0]
    w = remote(d, "tlsw", token_value=worker_token, args=("--ca-file", ca))
    context = ssl.create_default_context(cafile=ca)

    def connected_over_tls() -> bool:
        assert w.proc.poll() is None, w.log()
        _, body = http(d.base, "GET", "/workers?here=1", token=d.token, context=context)
        return any(s.get("name") == "tlsw" and s.get("live") for s in body["workers"])

    wait_until(connected_over_tls, 20, "the worker to connect over https")
    runs = tmp_path / "runs"
    status, reply = http(d.base, "POST", "/tasks", {"worker": "tlsw", "date": time.time(), "job": job("record", str(runs))}, token=d.token, context=context)
    assert status == 201, reply
    wait_until(lambda: http(d.base, "GET", f"/tasks/{tid(reply['id'])}", token=d.token, context=context)[1]["status"] == "done", 15, "the task done")
    assert executions(runs) == {reply["id"]: 1}

    # The worker token is for worker tlsw only; a daemon whose certificate does not verify is refused.
    other = remote(d, "someone-else", token_value=worker_token, args=("--ca-file", ca))
    assert other.wait_exit() == 1 and "403" in other.log(), other.log()
    untrusted = remote(d, "tlsw", token_value=worker_token)
    assert untrusted.wait_exit() == 1 and "does not verify against the system's CAs" in untrusted.log(), untrusted.log()
