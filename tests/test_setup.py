"""`after setup`, `make setup` and `./configure` on a CouchDB the operator owns.

Setup uses the account the operator configured (``couchdb.url`` with credentials, as
``./configure --couchdb-url`` writes it), never resets an existing user's password unless
asked (``--reset-password``), adds After's roles to ``_security`` keeping the operator's,
and says what it changed. A daemon on such a CouchDB only checks ``_security``. No
password reaches make's output, a command line, or a file others may read.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Couch, daemon_env, http, spawn_daemon
from test_direct_writes import after_cli, basic, plain_env

from after import provision
from after.config import Settings
from after.daemon import prepare_store
from after.embedded import free_port
from after.worker import settings_from_env

#: What an operator put in ``_security`` besides After's roles: it must survive.
OPERATOR_SECURITY = {
    "admins": {"names": ["ops"], "roles": ["dba"]},
    "members": {"names": ["reader"], "roles": ["after_worker", "readers"]},
}


def session_ok(couch: Couch, user: str, password: str) -> bool:
    status, body = http(couch.url, "GET", "/_session", headers=basic(user, password))
    return status == 200 and isinstance(body, dict) and body.get("userCtx", {}).get("name") == user


def security(couch: Couch, db: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read (or, with ``body``, write then read) ``_security`` as the server admin."""

    async def go() -> dict[str, Any]:
        async with couch.store(db, as_admin=True) as admin:
            if body is not None:
                await admin.db._put_security(body)
            return dict(await admin.db._get_security())

    return asyncio.run(go())


@pytest.fixture
def admin_url(couch: Couch) -> str:
    if couch.admin is None:
        pytest.skip("needs the server admin's credentials")
    return couch.url_for(couch.admin, couch.admin_password or "")


@pytest.fixture
def account(couch: Couch, admin_url: str) -> Iterator[tuple[str, str]]:
    """A user name and password (not created); the user is deleted afterwards."""
    name, password = f"op-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:8]}"
    yield name, password

    async def drop() -> None:
        async with couch.store("_users", as_admin=True) as admin:
            try:
                doc = await admin.get(f"org.couchdb.user:{name}")
                await admin.delete(doc["_id"], doc["_rev"])
            except Exception:
                pass

    asyncio.run(drop())


def create_user(couch: Couch, name: str, password: str) -> None:
    async def go() -> None:
        async with couch.store("_users", as_admin=True) as admin:
            await provision.ensure_user(admin, name, password, ["after_worker"])

    asyncio.run(go())


def setup_cli(tmp_path: Path, dbname: str, admin_url: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`after setup` as an operator runs it: the daemon's URL configured, the admin URL in the environment."""
    env = plain_env(tmp_path / "state", AFTER_COUCHDB_URL=url, AFTER_DATABASE=dbname, AFTER_COUCHDB_ADMIN_URL=admin_url)
    return after_cli(env, "setup", *args)


def test_setup_creates_the_configured_user_then_changes_nothing(couch: Couch, dbname: str, admin_url: str, account: tuple[str, str], tmp_path: Path) -> None:
    name, password = account
    first = setup_cli(tmp_path, dbname, admin_url, couch.url_for(name, password))
    assert first.returncode == 0, first.stderr
    assert f"created user {name!r} (role after_worker)" in first.stdout
    assert password not in first.stdout + first.stderr
    assert session_ok(couch, name, password)

    again = setup_cli(tmp_path, dbname, admin_url, couch.url_for(name, password))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "nothing to change", again.stdout
    assert session_ok(couch, name, password)

    # No password configured: the user's is left as it is, and setup says the default does not work.
    blind = setup_cli(tmp_path, dbname, admin_url, couch.url, "--user", name)
    assert blind.returncode == 1
    assert f"user {name!r} exists and the default password 'after' (none is configured) does not work" in blind.stderr
    assert "--reset-password" in blind.stderr
    assert session_ok(couch, name, password) and not session_ok(couch, name, "after")


def test_reset_password_sets_the_configured_one(couch: Couch, dbname: str, admin_url: str, account: tuple[str, str], tmp_path: Path) -> None:
    name, old = account
    create_user(couch, name, old)
    new = old + "-new"
    kept = setup_cli(tmp_path, dbname, admin_url, couch.url_for(name, new))
    assert kept.returncode == 1 and "the configured password does not work" in kept.stderr
    assert session_ok(couch, name, old) and not session_ok(couch, name, new)

    reset = setup_cli(tmp_path, dbname, admin_url, couch.url_for(name, new), "--reset-password")
    assert reset.returncode == 0, reset.stderr
    assert f"user {name!r}: password reset" in reset.stdout
    assert session_ok(couch, name, new) and not session_ok(couch, name, old)


def test_operator_security_survives_setup_and_daemon_start(couch: Couch, dbname: str, admin_url: str, tmp_path: Path, settings: Settings) -> None:
    security(couch, dbname, OPERATOR_SECURITY)
    res = setup_cli(tmp_path, dbname, admin_url, couch.url_for())
    assert res.returncode == 0, res.stderr
    assert f"_security of {dbname!r}: added role after_worker to admins" in res.stdout
    assert f"_security of {dbname!r}: added role after_client to members" in res.stdout
    merged = security(couch, dbname)
    assert merged["admins"] == {"names": ["ops"], "roles": ["dba", "after_worker"]}
    assert merged["members"] == {"names": ["reader"], "roles": ["after_worker", "readers", "after_client"]}

    # The daemon's own start on this (external) CouchDB: the store step, in process.
    asyncio.run(prepare_store(settings, None))
    assert security(couch, dbname) == merged
    assert setup_cli(tmp_path, dbname, admin_url, couch.url_for()).stdout.splitlines()[0] == "nothing to change"


def test_daemon_warns_about_missing_roles_and_leaves_security(couch: Couch, dbname: str, tmp_path: Path) -> None:
    # The daemon's user is a member and an admin of the database by name only (as an
    # operator may set it): After's roles are missing, and the daemon may write _security.
    foreign = {"admins": {"names": ["after"], "roles": []}, "members": {"names": ["after"], "roles": ["ops"]}}
    security(couch, dbname, foreign)
    state = tmp_path / "d0"
    d = spawn_daemon(daemon_env(couch, dbname, state, free_port()), state)
    try:
        assert http(d.base, "GET", "/")[0] == 200
        log = d.log()
    finally:
        d.stop()
    assert security(couch, dbname) == foreign
    warning = next((line for line in log.splitlines() if "_security of" in line), "")
    assert "WARNING" in warning, log[-2000:]
    for missing in ("role after_worker in admins", "role after_worker in members", "role after_client in members", "after setup --admin-url"):
        assert missing in warning


def make_env(tmp_path: Path, dbname: str) -> dict[str, str]:
    env = plain_env(tmp_path / "state", AFTER_DATABASE=dbname)
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "COUCHDB_URL", "COUCHDB_ADMIN_URL"):
        env.pop(var, None)
    return env


def test_make_setup_uses_the_configured_account_and_shows_no_password(
    couch: Couch, dbname: str, admin_url: str, account: tuple[str, str], tmp_path: Path
) -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    name, password = account
    admin_password = couch.admin_password or ""
    # -o: config.mk and the venv stamp count as up to date; VPY: this interpreter.
    argv = [
        "make",
        "-o",
        "config.mk",
        "-o",
        ".venv/.installed",
        f"VPY={sys.executable}",
        f"COUCHDB_URL={couch.url_for(name, password)}",
        f"COUCHDB_ADMIN_URL={admin_url}",
    ]
    env = make_env(tmp_path, dbname)
    # What make would run (the `sh -c` lines `ps` shows): the URLs travel in the environment.
    dry = subprocess.run([*argv, "-n", "setup", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m after setup" in dry.stdout and "-m after serve" in dry.stdout
    assert password not in dry.stdout and admin_password not in dry.stdout

    res = subprocess.run([*argv, "setup"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"created user {name!r}" in res.stdout
    assert password not in res.stdout + res.stderr and admin_password not in res.stdout + res.stderr
    assert session_ok(couch, name, password)


def test_configure_writes_config_mk_for_its_owner_only(tmp_path: Path) -> None:
    shutil.copy(ROOT / "configure", tmp_path / "configure")
    old = tmp_path / "config.mk"
    old.write_text("# an older one\n")
    old.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
    res = subprocess.run(
        ["./configure", "--couchdb-url=http://after:s3cret-pw@couch.example:5984", f"--python={sys.executable}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "s3cret-pw" not in res.stdout + res.stderr
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    text = old.read_text()
    assert text.count("s3cret-pw") == 1 and "COUCHDB_URL = http://after:s3cret-pw@couch.example:5984" in text


def test_state_secrets_are_for_the_owner_only(couch: Couch, tmp_path: Path) -> None:
    token = Settings(state_dir=str(tmp_path / "state")).ensure_token()
    assert token and stat.S_IMODE((tmp_path / "state" / "token").stat().st_mode) == 0o600
    if couch.embedded is None:
        pytest.skip("the embedded server's files: only when the tests run on it")
    emb = couch.embedded
    secrets = emb.state / "secrets"
    # The server's data directory holds the database and its config file (admin password).
    for directory in (secrets, emb.data):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for path in secrets.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_make_install_puts_the_readme_the_unit_names(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    env = make_env(tmp_path, "unused")
    prefix = "/opt/after-test"
    argv = ["make", "-n", "-o", "config.mk", "-o", ".venv/.installed", f"PREFIX={prefix}"]
    install = subprocess.run([*argv, "install"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert install.returncode == 0, install.stderr
    assert f"README.md {prefix}/share/after/" in install.stdout
    assert f"sed 's#/usr/local/#{prefix}/#g' etc/after.service > {prefix}/share/after/after.service" in install.stdout
    uninstall = subprocess.run([*argv, "uninstall"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert f"{prefix}/share/after " in uninstall.stdout
    # The unit as installed with the default PREFIX names that README, and its user is documented.
    unit = (ROOT / "etc" / "after.service").read_text()
    assert "Documentation=file:///usr/local/share/after/README.md" in unit and "User=after" in unit
    assert "useradd --system --user-group --home-dir /var/lib/after" in (ROOT / "README.md").read_text()


def test_worker_takes_its_settings_out_of_the_environment_jobs_inherit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's settings (CouchDB password, API token) are not passed on to its jobs' processes."""
    monkeypatch.setenv("AFTER_WORKER_SETTINGS", json.dumps({"couchdb_password": "pw-in-env", "server_api_token": "tok"}))
    settings = settings_from_env()
    assert settings.couchdb_password == "pw-in-env" and settings.server_api_token == "tok"
    assert "AFTER_WORKER_SETTINGS" not in os.environ
