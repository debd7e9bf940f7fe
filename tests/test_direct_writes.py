"""Writing tasks straight into CouchDB with the client account `after couchdb` prints.

The embedded server's port changes at every start, so a direct writer needs the daemon
to say where it is and as whom to write: the client user (role ``after_client``), which
the database's ``validate_doc_update`` lets create tasks and state a client's intents,
but never write the statuses of the claim protocol (``schedule``, ``scheduled``,
``canceled``).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TESTS, WORKER_PASSWORD, WORKER_USER, Couch, Daemon, http, iso_in, spawn_daemon, tid

from after.embedded import free_port


def basic(user: str, password: str) -> dict[str, str]:
    """Basic auth, and JSON answers (pouchdb-server answers text/plain without the Accept)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), "Accept": "application/json"}


def after_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "after", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def plain_env(state: Path, **extra: str) -> dict[str, str]:
    """An environment naming only an empty config file and this state directory."""
    config = state.parent / f"{state.name}.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
    env.update({"AFTER_CONFIG": str(config), "AFTER_STATE_DIR": str(state), "AFTER_PORT": str(free_port()), "PYTHONPATH": str(TESTS / "jobs")})
    env.update(extra)
    return env


@pytest.fixture
def embedded_daemon(tmp_path: Path) -> Iterator[Daemon]:
    state = tmp_path / "state"
    d = spawn_daemon(plain_env(state), state)
    yield d
    d.stop()


def task_body(worker: str, **extra: Any) -> dict[str, Any]:
    return {"type": "task", "worker": worker, "date": iso_in(0), "job": {"name": "noop"}, "status": "waiting", **extra}


def test_client_account_of_the_embedded_server_writes_tasks_but_no_claims(embedded_daemon: Daemon) -> None:
    d = embedded_daemon
    d.start_worker("direct")
    info = json.loads(d.cli("couchdb", "--json").stdout)
    port = json.loads((d.state / "couchdb.json").read_text())["port"]
    assert info["embedded"] is True and info["url"] == f"http://127.0.0.1:{port}"
    assert info["user"] == "after_client" and info["database_url"] == info["url"] + "/after"
    secret = d.state / "secrets" / "couchdb-client"
    assert secret.read_text().strip() == info["password"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((d.state / "couchdb.json").stat().st_mode) == 0o600
    assert info["password"] not in {(d.state / "secrets" / name).read_text().strip() for name in ("couchdb-after", "couchdb-admin")}
    assert info["url_with_credentials"] == f"http://after_client:{info['password']}@127.0.0.1:{port}/after"
    assert d.cli("couchdb", "--url-with-credentials").stdout.strip() == info["url_with_credentials"]
    text = d.cli("couchdb").stdout.splitlines()
    assert [line.split()[0] for line in text] == ["url", "database", "user", "password"]
    assert text[0].split()[1] == info["url"] and text[3].split()[1] == info["password"]

    auth = basic(info["user"], info["password"])
    status, session = http(info["url"], "GET", "/_session", headers=auth)
    assert status == 200 and session["userCtx"]["name"] == "after_client" and session["userCtx"]["roles"] == ["after_client"]

    # A task written straight into CouchDB runs.
    status, reply = http(info["database_url"], "PUT", "/" + tid("task:direct-1"), task_body("direct"), headers=auth)
    assert status == 201, reply
    assert d.wait_status("task:direct-1", "done", timeout=30)["history"][-1]["status"] == "done"

    # A client's intent on it: cancel a waiting task; the daemon acknowledges it.
    status, reply = http(info["database_url"], "PUT", "/" + tid("task:direct-2"), task_body("direct", date="2037-01-01T00:00:00.000Z"), headers=auth)
    assert status == 201, reply
    d.wait_status("task:direct-2", "waiting")
    status, doc = http(info["database_url"], "GET", "/" + tid("task:direct-2"), headers=auth)
    assert status == 200, doc
    status, reply = http(info["database_url"], "PUT", "/" + tid("task:direct-2"), {**doc, "status": "cancel"}, headers=auth)
    assert status == 201, reply
    d.wait_status("task:direct-2", "canceled", timeout=30)

    # A claim, or the worker's statuses, are refused by validate_doc_update.
    for i, reserved in enumerate(("schedule", "scheduled", "canceled")):
        status, reply = http(info["database_url"], "PUT", "/" + tid(f"task:claim-{i}"), task_body("direct", status=reserved), headers=auth)
        assert status == 403, (reserved, status, reply)
        assert "after_worker" in reply["reason"]
    # Nor may it change the design document (it is a member, not an admin).
    status, design = http(info["database_url"], "GET", "/_design/after", headers=auth)
    assert status == 200
    status, _ = http(info["database_url"], "PUT", "/_design/after", {**design, "language": "javascript"}, headers=auth)
    assert status in (401, 403)


def test_after_couchdb_without_a_running_embedded_server_says_so(tmp_path: Path) -> None:
    res = after_cli(plain_env(tmp_path / "state"), "couchdb")
    assert res.returncode == 1 and "no embedded CouchDB runs" in res.stderr and len(res.stderr.splitlines()) == 1


def test_after_couchdb_for_an_external_server_hides_the_daemons_credentials(couch: Couch, tmp_path: Path) -> None:
    env = plain_env(tmp_path / "state", AFTER_COUCHDB_URL=couch.url_for(), AFTER_DATABASE="mydb")
    info = json.loads(after_cli(env, "couchdb", "--json").stdout)
    assert info == {
        "url": couch.url,
        "database": "mydb",
        "database_url": couch.url + "/mydb",
        "embedded": False,
        "user": "after_client",
        "password": None,
        "url_with_credentials": None,
    }
    text = after_cli(env, "couchdb").stdout
    assert WORKER_PASSWORD not in text and "not configured" in text
    refused = after_cli(env, "couchdb", "--url-with-credentials")
    assert refused.returncode == 1 and "client_password" in refused.stderr

    env["AFTER_COUCHDB_CLIENT_PASSWORD"] = "p@ss/word"
    scheme, rest = couch.url.split("://", 1)
    assert after_cli(env, "couchdb", "--url-with-credentials").stdout.strip() == f"{scheme}://after_client:p%40ss%2Fword@{rest}/mydb"


def test_after_setup_creates_the_client_account(couch: Couch, dbname: str, tmp_path: Path) -> None:
    if couch.admin is None:
        pytest.skip("needs the server admin's credentials")
    user, password = f"client-{uuid.uuid4().hex[:8]}", "client-pw"
    env = plain_env(tmp_path / "state", AFTER_COUCHDB_URL=couch.url_for(), AFTER_DATABASE=dbname)
    admin_url = couch.url_for(couch.admin, couch.admin_password or "")
    res = after_cli(
        env, "setup", "--admin-url", admin_url, "--user", WORKER_USER, "--password", WORKER_PASSWORD, "--client-user", user, "--client-password", password
    )
    assert res.returncode == 0, res.stderr
    assert f"users {WORKER_USER!r} and {user!r} ready" in res.stdout
    auth = basic(user, password)
    assert http(couch.url, "PUT", f"/{dbname}/" + tid("task:setup-1"), task_body("w"), headers=auth)[0] == 201
    assert http(couch.url, "PUT", f"/{dbname}/" + tid("task:setup-2"), task_body("w", status="schedule"), headers=auth)[0] == 403
