"""``after task ...`` over the REST API of a real daemon: text and --json output, errors
(one line, exit 1), and the documented shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import Daemon


def test_task_commands(daemon: Daemon) -> None:
    daemon.start_worker("cli")
    task_id = daemon.cli("task", "add", "cli", "shell", "echo from-cli").stdout.strip()
    assert task_id.startswith("task:")
    assert daemon.wait_status(task_id, "done")["result"]["stdout"] == "from-cli"

    added = json.loads(daemon.cli("task", "add", "cli", "noop", "--id", "later", "--date", "2037-01-01", "--priority", "3", "--json").stdout)
    assert added["id"] == "task:later" and added["task"]["priority"] == 3 and added["task"]["date"] == "2037-01-01T00:00:00.000Z"
    epoch = json.loads(daemon.cli("task", "add", "cli", "sleep", "2", "--json-args", "--date", "2114380800", "--json").stdout)
    assert epoch["task"]["date"] == "2037-01-01T00:00:00.000Z" and epoch["task"]["job"]["arguments"] == [2]
    cron = json.loads(daemon.cli("task", "add", "cli", "noop", "--cron", "30 2 * * *", "--timezone", "Europe/Lisbon", "--json").stdout)
    assert len(cron["task"]["next_runs"]) == 5

    lines = daemon.cli("task", "ls", "--worker", "cli").stdout.splitlines()
    assert lines[0].split()[:2] == [task_id, "done"]
    assert {line.split()[0] for line in lines} == {task_id, "task:later", epoch["id"], cron["id"]}
    page = daemon.cli("task", "ls", "--worker", "cli", "--limit", "2")
    assert len(page.stdout.splitlines()) == 2 and "(more: --cursor " in page.stderr
    cursor = page.stderr.split("--cursor ")[1].rstrip(")\n")
    rest = json.loads(daemon.cli("task", "ls", "--worker", "cli", "--limit", "2", "--cursor", cursor, "--json").stdout)
    # By due date, then id: the two 2037 tasks last (a uuid sorts before "later").
    assert [t["_id"] for t in rest["tasks"]] == [epoch["id"], "task:later"] and rest["next"] is None

    shown = json.loads(daemon.cli("task", "show", "later", "--json").stdout)
    assert shown["_id"] == "task:later" and shown["status"] == "waiting"
    assert daemon.cli("task", "reschedule", "later", "2038-01-01").stdout.split() == ["task:later", "reschedule", "2038-01-01T00:00:00.000Z"]
    assert json.loads(daemon.cli("task", "cancel", "later", "--json").stdout)["status"] == "cancel"
    daemon.wait_status("task:later", "canceled")
    assert daemon.cli("task", "rm", "later").stdout.strip() == "task:later deleted"
    assert json.loads(daemon.cli("task", "rm", cron["id"], "--json").stdout) == {"deleted": cron["id"]}

    # Errors: the daemon's message, one line, exit 1; usage errors exit 2.
    missing = daemon.cli("task", "show", "later", check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("after: ") and "(HTTP 404)" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = daemon.cli("task", "add", "cli", "noop", "--cron", "99 * * * *", check=False)
    assert bad.returncode == 1 and "cron" in bad.stderr and "(HTTP 422)" in bad.stderr
    unknown = daemon.cli("task", "add", "cli", "nosuchjob", check=False)
    assert unknown.returncode == 1 and "has no job 'nosuchjob'" in unknown.stderr
    assert daemon.cli("task", "ls", "--status", "bogus", check=False).returncode == 2


def test_shell_completion_as_documented(tmp_path: Path) -> None:
    """The README's `eval "$(_AFTER_COMPLETE=bash_source after)"` gives a bash completion that knows the commands."""
    after = Path(sys.executable).parent / "after"
    assert after.exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
    source = subprocess.run([str(after)], env={**env, "_AFTER_COMPLETE": "bash_source"}, capture_output=True, text=True, timeout=30)
    assert source.returncode == 0 and "complete " in source.stdout and "_after_completion" in source.stdout
    complete = {**env, "_AFTER_COMPLETE": "bash_complete", "COMP_WORDS": "after task ", "COMP_CWORD": "2"}
    words = subprocess.run([str(after)], env=complete, capture_output=True, text=True, timeout=30)
    assert {line.split(",")[1] for line in words.stdout.splitlines()} == {"add", "ls", "show", "cancel", "reschedule", "rm", "pause", "resume", "backfill"}
