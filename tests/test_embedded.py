"""The daemon's own embedded CouchDB (no URL configured), and `after start` with no daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, TESTS, Couch, Daemon, http, spawn_daemon

from after.embedded import free_port


def embedded_env(state: Path, port: int) -> dict[str, str]:
    config = state.parent / "empty.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
    env.update({"AFTER_CONFIG": str(config), "AFTER_STATE_DIR": str(state), "AFTER_PORT": str(port), "PYTHONPATH": str(TESTS / "jobs")})
    return env


def couch_pid(state: Path) -> int:
    return int(json.loads((state / "couchdb.json").read_text())["pid"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/cmdline").exists() and b"pouchdb-server" in Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.fixture
def embedded_daemon(tmp_path: Path) -> Iterator[Daemon]:
    state = tmp_path / "state"
    d = spawn_daemon(embedded_env(state, free_port()), state)
    yield d
    d.stop()


def test_embedded_server_is_started_supervised_and_stopped(embedded_daemon: Daemon) -> None:
    d = embedded_daemon
    status, info = d.api("GET", "/")
    assert status == 200 and info["couchdb"]["reachable"] and info["couchdb"]["embedded"]
    d.start_worker("w")
    first = d.create({"worker": "w", "date": time.time(), "job": "noop"})["id"]
    d.wait_status(first, "done")
    pid = couch_pid(d.state)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not (d.state / "couchdb.json").exists() or couch_pid(d.state) == pid or d.api("GET", "/health")[0] != 200):
        time.sleep(0.3)
    assert couch_pid(d.state) != pid
    assert "restarting it" in d.log()
    second = d.create({"worker": "w", "date": time.time(), "job": "noop"})["id"]
    d.wait_status(second, "done", timeout=30)
    assert d.task(first)["status"] == "done"  # data survived the restart
    new_pid = couch_pid(d.state)
    assert d.stop() == 0
    assert not alive(new_pid)


def test_stale_embedded_server_of_a_killed_daemon_is_handled(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    d1 = spawn_daemon(embedded_env(state, port), state)
    task_id = d1.create({"worker": "w", "date": "2030-01-01", "job": "noop"})["id"]
    stale = couch_pid(state)
    d1.stop(signal.SIGKILL)
    assert alive(stale)  # left behind by the killed daemon
    d2 = spawn_daemon(embedded_env(state, port), state)
    try:
        assert not alive(stale)
        assert d2.task(task_id)["status"] == "waiting"
        assert "left by a previous daemon" in d2.log()
    finally:
        d2.stop()


def test_after_start_starts_a_daemon_in_the_background(couch: Couch, dbname: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = embedded_env(state, free_port())
    env["AFTER_COUCHDB_URL"] = couch.url_for()
    env["AFTER_DATABASE"] = dbname
    res = subprocess.run([sys.executable, "-m", "after", "start", "mailer"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)
    try:
        assert res.returncode == 0, res.stderr
        assert "starting one in the background" in res.stderr
        assert "worker mailer started" in res.stdout
        base = f"http://127.0.0.1:{env['AFTER_PORT']}"
        status, body = http(base, "GET", "/workers")
        assert status == 200 and body["workers"][0]["name"] == "mailer"
        # A second start finds the daemon running and says nothing about starting one.
        res2 = subprocess.run([sys.executable, "-m", "after", "start", "other"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert res2.returncode == 0 and "background" not in res2.stderr
    finally:
        down = subprocess.run([sys.executable, "-m", "after", "shutdown"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert down.returncode == 0, down.stderr


def test_daemon_refuses_a_public_bind_without_a_configured_token(tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "state", free_port())
    env["AFTER_HOST"] = "0.0.0.0"
    res = subprocess.run([sys.executable, "-m", "after", "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "refusing to listen on 0.0.0.0" in res.stderr and "api_token" in res.stderr


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "state", free_port())
    bad = tmp_path / "bad.toml"
    bad.write_text('[scheduler]\nlease_seconds = "long"\n')
    env["AFTER_CONFIG"] = str(bad)
    res = subprocess.run([sys.executable, "-m", "after", "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "scheduler.lease_seconds" in res.stderr
    bad.write_text("[server]\nprot = 1\n")
    res = subprocess.run([sys.executable, "-m", "after", "token"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "unknown setting server.prot" in res.stderr
    bad.write_text("[server\n")
    res = subprocess.run([sys.executable, "-m", "after", "list"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "not valid TOML" in res.stderr
