"""The README's REST reference runs: every ```sh block between a ``<!-- rest:start -->`` and
the next ``<!-- rest:end -->`` is executed, in order, against a live daemon, and together the
blocks must call every route of /openapi.json. The manual cannot drift from the code.

Each block runs in bash with ``AFTER`` (base URL) and ``TOKEN`` set, and ``curl`` wrapped
to fail on an HTTP error (``--fail-with-body``) and to record what it was called with.
A streaming example (``curl -N``) is stopped after two seconds and must have printed
something by then.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from pathlib import Path

from conftest import ROOT, Daemon, http

README = ROOT / "README.md"

WRAPPER = r"""
set -euo pipefail
curl() {
  { printf '%s\x1f' "$@"; printf '\x1e'; } >> "$CALLS"
  command curl --fail-with-body -sS --max-time "${MAXTIME:-30}" "$@"
}
"""


def rest_section() -> str:
    """Every part of the README between a ``<!-- rest:start -->`` and the next
    ``<!-- rest:end -->`` (the REST reference, the remote workers' curl loop), in order."""
    text = README.read_text()
    parts = re.findall(r"<!-- rest:start -->(.*?)<!-- rest:end -->", text, flags=re.S)
    assert parts and text.count("<!-- rest:start -->") == text.count("<!-- rest:end -->") == len(parts)
    return "\n".join(parts)


def sh_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", rest_section(), flags=re.S | re.M)


def called(calls_file: Path) -> list[tuple[str, str]]:
    """(method, path) of every curl call the examples made."""
    out = []
    for record in calls_file.read_text().split("\x1e"):
        args = [a for a in record.split("\x1f") if a]
        if not args:
            continue
        method = args[args.index("-X") + 1] if "-X" in args else ("POST" if "-d" in args else "GET")
        urls = [a for a in args if a.startswith("http://")]
        assert len(urls) == 1, args
        out.append((method.upper(), urllib.parse.urlsplit(urls[0]).path))
    return out


def test_readme_rest_examples_run_and_cover_every_route(daemon: Daemon, tmp_path: Path) -> None:
    blocks = sh_blocks()
    assert len(blocks) >= 20
    calls = tmp_path / "calls"
    calls.touch()
    env = {**daemon.env, "AFTER": daemon.base, "TOKEN": daemon.token, "CALLS": str(calls)}
    for i, block in enumerate(blocks):
        streaming = "curl -N" in block
        res = subprocess.run(
            ["bash", "-c", WRAPPER + block],
            env={**env, "MAXTIME": "2" if streaming else "30"},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        if streaming:
            # curl's exit code 28: stopped by --max-time, as a reader's Ctrl-C would.
            assert res.returncode == 28 and res.stdout.strip(), f"block {i}:\n{block}\n{res.stderr}"
        else:
            assert res.returncode == 0, f"block {i} failed ({res.returncode}):\n{block}\nstdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
        assert "Traceback" not in res.stdout

    _, spec = http(daemon.base, "GET", "/openapi.json")
    made = called(calls)
    missing = []
    for path, ops in spec["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path)) + "$")
        for method in ops:
            if not any(m == method.upper() and pattern.match(p) for m, p in made):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"the README has no curl example for: {', '.join(missing)}"

    # The examples did what they say.
    assert daemon.task("task:hello")["worker"] == "mailer"
    assert daemon.task("task:report-1")["status"] in ("cancel", "canceled")
    assert daemon.api("GET", "/tasks/task:report-2")[0] == 404
    assert daemon.task("task:nightly")["next_runs"]
    assert daemon.task("task:backup-hooked")["notify"] == [{"url": "http://127.0.0.1:9/after-hook", "on": ["err", "canceled"]}]
    assert daemon.task("task:load")["waiting_on"] == ["task:extract", "task:fetch"]  # Dependencies
    # The curl-only remote worker ran its task, and disconnected.
    uname = daemon.task("task:uname")
    assert uname["status"] == "done" and uname["result"]["stdout"] and uname["history"][-2]["by"].startswith("worker:bash@")
    _, workers = daemon.api("GET", "/workers")
    assert [(w["name"], w["state"]) for w in workers["workers"]] == [("mailer", "stopped")]


def test_the_readme_field_table_is_the_schema() -> None:
    """The task fields' table is generated from after.schema (``python -m after.schema``)."""
    from after import schema

    assert schema.field_table() in README.read_text(), "README's field table differs: paste `python -m after.schema` over it"
