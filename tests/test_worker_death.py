"""A worker that dies or loses its channel is seen at once, restarted, stoppable and
startable; its jobs die with it; a shutdown never crashes and says how it went.

Real daemons, real worker processes, the real server. Restarted workers are held down
by ``tests/jobs/gatedjobs.py`` (its import waits, or exits, while a file exists), so a
test sees the "down" state for as long as it needs instead of racing a 0.5 s backoff.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TESTS, Couch, Daemon, iso_in, spawn_daemon, wait_until
from test_embedded import embedded_env

from after.config import Settings
from after.embedded import free_port

JOBS = ["testjobs", "gatedjobs"]


def worker_info(d: Daemon, name: str) -> dict[str, Any]:
    status, body = d.api("GET", f"/workers/{name}")
    assert status == 200, body
    return body


def health(d: Daemon) -> tuple[int, list[str]]:
    status, body = d.api("GET", "/health")
    return status, body["reasons"]


def listed_state(d: Daemon, name: str) -> str:
    """The STATE column of `after list --here` for worker ``name``."""
    for line in d.cli("list", "--here").stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == name:
            return fields[2]
    raise AssertionError(f"{name} not in `after list`")


def gone(pid: int) -> bool:
    """Whether process ``pid`` no longer runs (a zombie nobody reaps counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] == "Z"


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """The file that holds restarted workers in their import (``.crash`` next to it: they exit)."""
    return tmp_path / "gate"


@pytest.fixture
def gated(start_daemon: Callable[..., Daemon], gate: Path) -> Daemon:
    return start_daemon("d1", AFTER_TEST_GATE=str(gate))


# -- seen at once, restarted -------------------------------------------------------------------------


def test_a_worker_whose_channel_closes_is_seen_down_at_once_and_restarted(gated: Daemon, gate: Path) -> None:
    d = gated
    first = d.start_worker("w", jobs=JOBS)
    wait_until(lambda: health(d)[0] == 200, 30, "/health 200 with w running")
    gate.touch()  # its next process waits in its import: "down" until the gate opens
    task_id = d.create({"worker": "w", "date": time.time(), "job": "close_channel"})["id"]
    wait_until(lambda: not worker_info(d, "w")["running"], 10, "w listed as not running")
    assert worker_info(d, "w")["state"] in ("backoff", "starting")
    assert listed_state(d, "w") in ("backoff", "starting")
    status, reasons = health(d)
    assert status == 503 and any(r.startswith("worker w is down") for r in reasons), reasons
    # The job that closed the channel finished; its worker wrote the outcome itself.
    assert d.wait_status(task_id, {"done", "err"}, timeout=20)["status"] == "done"
    # Its new process, held in its import: spawned, not running yet.
    wait_until(lambda: worker_info(d, "w")["restarts"] == 1 and worker_info(d, "w")["state"] == "starting", 20, "a new process of w")
    info = worker_info(d, "w")
    assert not info["running"] and info["pid"] not in (None, first["pid"])
    assert health(d)[0] == 503
    gate.unlink()
    wait_until(lambda: worker_info(d, "w")["running"], 30, "w running again")
    wait_until(lambda: health(d)[0] == 200, 30, "/health 200 once w is back")
    assert listed_state(d, "w") == "running"
    d.wait_status(d.create({"worker": "w", "date": time.time(), "job": "noop"})["id"], "done", timeout=20)


def test_after_stop_and_start_work_on_a_dead_a_restarting_and_a_starting_worker(gated: Daemon, gate: Path) -> None:
    d = gated
    crash = Path(str(gate) + ".crash")
    info = d.start_worker("w", jobs=JOBS)
    # Dead, and every restart dies before hello: backoff (then crash loop) between them.
    crash.touch()
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: worker_info(d, "w")["restarts"] >= 2 and worker_info(d, "w")["state"] in ("backoff", "crashloop"), 30, "w restarting")
    assert health(d)[0] == 503
    res = d.cli("stop", "w", timeout=60)
    assert "worker w stopped" in res.stdout
    assert worker_info(d, "w")["state"] == "stopped"
    wait_until(lambda: health(d)[0] == 200, 30, "/health 200: a stopped worker is not down")
    crash.unlink()
    d.cli("start", "w", "--jobs", "testjobs", "--jobs", "gatedjobs")
    assert worker_info(d, "w")["running"]
    # In a restart backoff: `after start` restarts it now. Crash-looping, its next restart
    # is 8 s or more away, so its own restart cannot come first on a loaded machine (the
    # supervisor's next try would succeed once the crash file is gone, and `after start`
    # would then rightly answer that w is already running).
    crash.touch()
    os.kill(worker_info(d, "w")["pid"], signal.SIGKILL)
    wait_until(lambda: worker_info(d, "w")["state"] == "crashloop", 90, "w crash-looping")
    crash.unlink()
    d.cli("start", "w")
    wait_until(lambda: worker_info(d, "w")["running"], 20, "w running after start")
    # Held in its import (starting, never said hello): stopped at once, by signal. Still
    # crash-looping, its own restart is a minute away: `after start` restarts it now, and
    # waits beside for a hello the gate holds back.
    gate.touch()
    os.kill(worker_info(d, "w")["pid"], signal.SIGKILL)
    wait_until(lambda: worker_info(d, "w")["state"] in ("backoff", "crashloop", "starting"), 30, "w lost again")
    with ThreadPoolExecutor(1) as beside:
        starting = beside.submit(d.cli, "start", "w", check=False)
        wait_until(lambda: worker_info(d, "w")["state"] == "starting" and worker_info(d, "w")["pid"] is not None, 30, "w held starting")
        t0 = time.monotonic()
        d.cli("stop", "w", timeout=60)
        assert time.monotonic() - t0 < 20
        assert worker_info(d, "w")["state"] == "stopped"
        starting.result(timeout=60)
    gate.unlink()
    d.cli("start", "w", "--jobs", "testjobs", "--jobs", "gatedjobs")
    d.wait_status(d.create({"worker": "w", "date": time.time(), "job": "noop"})["id"], "done", timeout=20)


def test_a_task_whose_job_is_a_string_does_not_stop_its_worker(daemon: Daemon, couch: Couch, dbname: str) -> None:
    """Issue 11's blocker: a document with ``"job": "noop"`` (a string) broke the
    daemon's reading of the worker's messages; the worker was left dead, listed running."""
    info = daemon.start_worker("victim")
    doc = {"_id": "task:poison", "type": "task", "worker": "victim", "date": iso_in(0), "job": "noop", "status": "waiting"}

    async def put() -> None:
        async with couch.store(dbname) as store:
            await store.put(doc)

    asyncio.run(put())
    daemon.wait_status("task:poison", {"done", "err"}, timeout=30)
    ok = daemon.create({"worker": "victim", "date": time.time(), "job": "noop"})["id"]
    daemon.wait_status(ok, "done", timeout=20)
    after = worker_info(daemon, "victim")
    assert after["running"] and after["pid"] == info["pid"] and after["restarts"] == 0
    assert health(daemon)[0] == 200


def test_a_worker_survives_messages_it_cannot_handle(settings: Settings) -> None:
    """The worker process itself, driven over its channel by this test as the daemon would:
    a message whose handling raises is logged with its task id, and the worker goes on."""
    import dataclasses

    parent, child = socket.socketpair()
    env = {**os.environ, "AFTER_WORKER_SETTINGS": json.dumps(dataclasses.asdict(settings)), "PYTHONPATH": str(TESTS / "jobs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "after.worker", "--name", "t", "--fd", str(child.fileno())],
        pass_fds=(child.fileno(),),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    child.close()
    try:
        parent.settimeout(30)
        chan = parent.makefile("rwb")
        assert json.loads(chan.readline())["op"] == "hello"
        for bad in ({"op": "run", "task": {"_id": ["not", "a", "string"]}}, {"op": "cancel"}, {"op": "run"}, ["not an object"]):
            chan.write(json.dumps(bad).encode() + b"\n")
        chan.write(json.dumps({"op": "stop", "timeout": 1}).encode() + b"\n")
        chan.flush()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        parent.close()
    log = out.decode(errors="replace")
    assert proc.returncode == 0, log
    assert "cannot handle message" in log and "worker t stopped" in log, log


# -- jobs die with their worker ----------------------------------------------------------------------


def test_a_workers_death_takes_its_shell_jobs_process_group(daemon: Daemon, tmp_path: Path) -> None:
    """kill -9 of a worker running ``sh`` with a ``sleep`` under it: both die with it (the
    shell by its death signal, the sleep with its process group), and the retry starts
    only when they are gone."""
    script = f"""
d={tmp_path}
if [ -e $d/first ]; then
  st=$(cut -d' ' -f3 /proc/$(cat $d/sleep.pid)/stat 2>/dev/null)
  echo "second ${{st:-gone}}" >> $d/runs
  exit 0
fi
echo $$ > $d/sh.pid
sleep 30 &
echo $! > $d/sleep.pid
touch $d/first
wait
"""
    info = daemon.start_worker("w")
    task_id = daemon.create({"worker": "w", "date": time.time(), "retry": {"max": 1, "delay": 0}, "job": {"name": "shell", "arguments": [script]}})["id"]
    wait_until(lambda: (tmp_path / "first").exists(), 20, "the job's processes to start")
    sh_pid = int((tmp_path / "sh.pid").read_text())
    sleep_pid = int((tmp_path / "sleep.pid").read_text())
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: gone(sh_pid) and gone(sleep_pid), 15, "the job's shell and its sleep to be gone")
    doc = daemon.wait_status(task_id, {"done", "err"}, timeout=30)
    assert doc["status"] == "done", doc
    runs = (tmp_path / "runs").read_text().split()
    assert runs in (["second", "gone"], ["second", "Z"]), runs  # the first copy was dead when the retry started
    assert "killed the process group" in daemon.cli("log", "w").stdout


def test_an_isolated_jobs_process_dies_with_its_worker(daemon: Daemon, tmp_path: Path) -> None:
    info = daemon.start_worker("w")
    out = tmp_path / "runs"
    task_id = daemon.create({"worker": "w", "date": time.time(), "job": {"name": "hang_sync", "arguments": [str(out)]}})["id"]
    wait_until(lambda: out.exists() and out.read_text().strip() != "", 20, "the job's process to start")
    job_pid = int(out.read_text().split()[2])
    assert job_pid != info["pid"]
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: gone(job_pid), 15, "the job's process to be gone")
    assert daemon.wait_status(task_id, "err", timeout=20)["error"]["reason"] == "worker died"


# -- the worker's log --------------------------------------------------------------------------------


def test_the_worker_log_has_a_line_per_task_start_and_end(daemon: Daemon) -> None:
    daemon.start_worker("w")
    ok = daemon.create({"worker": "w", "date": time.time(), "job": {"name": "sleep", "arguments": [0.2]}})["id"]
    bad = daemon.create({"worker": "w", "date": time.time(), "job": "fail"})["id"]
    daemon.wait_status(ok, "done")
    daemon.wait_status(bad, "err")

    def logged() -> str:
        status, text = daemon.api("GET", "/workers/w/log")
        assert status == 200
        return str(text)

    wait_until(lambda: f"task {bad}: job fail ended" in logged() and f"task {ok}: job sleep ended" in logged(), 10, "the end lines in the worker's log")
    text = logged()
    assert f"task {ok}: job sleep started" in text and f"task {bad}: job fail started" in text
    line = next(x for x in text.splitlines() if f"task {ok}: job sleep ended" in x)
    assert " done in " in line and float(line.rsplit(" in ", 1)[1].rstrip("s")) >= 0.2
    assert f"task {bad}: job fail ended err (exception) in " in text


# -- shutdown ----------------------------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Callable[[], Daemon]]:
    state = tmp_path / "state"
    port = free_port()
    started: list[Daemon] = []

    def start() -> Daemon:
        d = spawn_daemon(embedded_env(state, port), state, wait=60)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def couch_pid(d: Daemon) -> int:
    return int(json.loads((d.state / "couchdb.json").read_text())["pid"])


def test_sigterm_and_after_shutdown_exit_0_and_stop_the_embedded_couchdb(embedded: Callable[[], Daemon]) -> None:
    d = embedded()
    d.start_worker("w")
    pid = couch_pid(d)
    assert d.stop(signal.SIGTERM) == 0
    assert gone(pid), "the embedded CouchDB outlived its daemon"
    assert json.loads((d.state / "daemon-exit.json").read_text())["clean"] is True
    d = embedded()
    wait_until(lambda: worker_info(d, "w")["running"], 30, "w back")
    pid = couch_pid(d)
    res = d.cli("shutdown", check=False, timeout=120)
    assert res.returncode == 0 and "daemon stopped" in res.stdout, res.stderr
    assert d.proc.wait(timeout=30) == 0
    assert gone(pid), "the embedded CouchDB outlived its daemon"


def test_a_shutdown_with_a_worker_down_is_clean_and_keeps_it(gated: Daemon, gate: Path, start_daemon: Callable[..., Daemon]) -> None:
    d = gated
    crash = Path(str(gate) + ".crash")
    d.start_worker("a")
    info = d.start_worker("b", jobs=JOBS)
    crash.touch()
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: worker_info(d, "b")["restarts"] >= 2 and not worker_info(d, "b")["running"], 30, "b dead and restarting")
    res = d.cli("shutdown", check=False, timeout=120)
    assert res.returncode == 0 and "daemon stopped" in res.stdout, res.stderr
    assert d.proc.wait(timeout=30) == 0
    saved = json.loads((d.state / "workers.json").read_text())
    assert sorted(saved) == ["a", "b"] and saved["b"]["jobs"] == JOBS
    crash.unlink()
    d2 = start_daemon("d1", port=int(d.env["AFTER_PORT"]), AFTER_TEST_GATE=str(gate))
    wait_until(lambda: {w["name"] for w in d2.api("GET", "/workers?here=1")[1]["workers"] if w["running"]} == {"a", "b"}, 30, "a and b back")


def test_after_shutdown_says_when_the_shutdown_failed_or_the_daemon_crashed(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon("d1")
    d.start_worker("w")
    saved = d.state / "workers.json"
    saved.unlink()
    saved.mkdir()  # workers.json cannot be written at shutdown: a failed step
    res = d.cli("shutdown", check=False, timeout=120)
    assert res.returncode == 1, res.stdout
    assert "shutdown step(s) failed" in res.stderr and "workers.json" in res.stderr, res.stderr
    assert d.proc.wait(timeout=30) == 1
    assert "failed step" in d.log()
    saved.rmdir()
    d = start_daemon("d1", port=int(d.env["AFTER_PORT"]))
    wait_until(lambda: (d.state / "daemon.json").exists(), 30, "the daemon's pidfile")
    d.stop(signal.SIGKILL)
    res = d.cli("shutdown", check=False, timeout=60)
    assert res.returncode == 1 and "did not shut down cleanly" in res.stderr, res.stderr
