"""The CLI's entry points and the URLs it builds from user input.

- ``bin/after`` run from the parent of a checkout named ``after`` (what the README's
  ``git clone <repo> after`` makes): the directory must not shadow the package, neither in
  the CLI nor in the daemon, worker and job processes it starts.
- Task ids and worker names are one path segment each: ``a/b`` and ``..`` are names, not
  paths, so the daemon answers about exactly that name (404), never another route.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Couch, Daemon, daemon_env, wait_until
from test_api import running_daemon

from after.embedded import free_port


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def parent_of_checkout(tmp_path: Path) -> Path:
    """A directory holding ``after`` -> the checkout, as ``git clone <repo> after`` lays it out."""
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "after").symlink_to(ROOT, target_is_directory=True)
    return parent


def test_bin_after_runs_from_the_parent_of_a_checkout_named_after(parent_of_checkout: Path) -> None:
    res = run(["after/bin/after", "--version"], cwd=parent_of_checkout)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("after, version ")
    helped = run(["after/bin/after", "--help"], cwd=parent_of_checkout)
    assert helped.returncode == 0 and "Usage:" in helped.stdout, helped.stderr


def test_daemon_worker_and_job_process_started_from_there_work(couch: Couch, dbname: str, tmp_path: Path, parent_of_checkout: Path) -> None:
    """`after start` from the parent starts a daemon, which starts a worker, which starts an
    isolated job process: each of them is a ``python -m after...`` in that directory."""
    env = daemon_env(couch, dbname, tmp_path / "state", free_port())
    # An empty PYTHONPATH entry means "the current directory": that would be the shadowing
    # asked for, not the one under test.
    env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if p)
    cli = ["after/bin/after"]
    try:
        started = run([*cli, "start", "w", "--jobs", "testjobs"], cwd=parent_of_checkout, env=env)
        assert started.returncode == 0, started.stderr
        task_id = run([*cli, "task", "add", "w", "echo", "from-parent"], cwd=parent_of_checkout, env=env).stdout.strip()
        assert task_id.startswith("task:")

        def done() -> bool:
            shown = run([*cli, "task", "show", task_id], cwd=parent_of_checkout, env=env)
            return shown.returncode == 0 and json.loads(shown.stdout)["status"] in ("done", "err")

        wait_until(done, 60, "the task started from the checkout's parent to finish")
        doc = json.loads(run([*cli, "task", "show", task_id], cwd=parent_of_checkout, env=env).stdout)
        assert doc["status"] == "done", doc
        assert doc["result"]["args"] == ["from-parent"]
    finally:
        down = run([*cli, "shutdown"], cwd=parent_of_checkout, env=env)
    assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def shared(couch: Couch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the path tests: they only read, and each is refused by name."""
    with running_daemon(couch, tmp_path_factory.mktemp("segments")) as d:
        yield d


@pytest.mark.parametrize("name", ["../workers", "a/b", "..", "x?y#z", "%2e%2e"])
def test_task_ids_are_one_path_segment(shared: Daemon, name: str) -> None:
    daemon = shared
    res = daemon.cli("task", "show", name, check=False)
    assert res.returncode == 1
    assert "(HTTP 404)" in res.stderr and name in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    for command in (["task", "cancel", name], ["task", "rm", name], ["task", "reschedule", name, "2037-01-01"]):
        other = daemon.cli(*command, check=False)
        assert other.returncode == 1 and "(HTTP 404)" in other.stderr, (command, other.stderr)


@pytest.mark.parametrize("name", ["../tasks", "a/b", ".."])
def test_worker_names_are_one_path_segment(shared: Daemon, name: str) -> None:
    """The name reaches the daemon whole, which refuses it by name (400), never another route."""
    daemon = shared
    for command in (["stop", name], ["log", name], ["log", "-f", name], ["clean", name], ["start", name]):
        res = daemon.cli(*command, check=False)
        assert res.returncode == 1, (command, res.stdout)
        assert f"invalid worker name {name!r}" in res.stderr and "(HTTP 400)" in res.stderr, (command, res.stderr)
