"""The ``after`` command. Everything but ``serve``, ``token`` and ``setup`` goes through the REST port (after.cli_api).

Exit codes: 0 ok; 1 failure, with a one-line reason on stderr; 2 usage error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from after import __version__
from after.cli_api import Api, fail, load_settings, out_json, segment
from after.config import Settings
from after.errors import AfterError

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="after")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (default etc/after.toml, or $AFTER_CONFIG).")
@click.option("--host", default=None, help="Daemon address (server.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Daemon port (server.port, $AFTER_PORT).")
@click.option("--couchdb-url", default=None, help="CouchDB URL; none = embedded server ($AFTER_COUCHDB_URL).")
@click.option("--state-dir", default=None, help="State directory ($AFTER_STATE_DIR).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, host: str | None, port: int | None, couchdb_url: str | None, state_dir: str | None) -> None:
    """After: a RESTful task scheduler with named workers over CouchDB."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    ctx.obj["overrides"] = {"server_host": host, "server_port": port, "couchdb_url": couchdb_url, "state_dir": state_dir}


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def serve(ctx: click.Context, verbose: bool) -> None:
    """Run the daemon in the foreground (HTTP port, tick, worker supervision)."""
    from after.daemon import serve as run

    settings = load_settings(ctx)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        code = run(settings)
    except AfterError as exc:
        fail(exc.message)
    sys.exit(code)  # non-zero: a shutdown step failed (logged)


def ensure_daemon(settings: Settings) -> None:
    """Start a daemon in the background when none answers; wait until it does."""
    api = Api(settings)
    if api.alive():
        return
    logdir = settings.state_path / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    logfile = logdir / "daemon.log"
    click.echo(f"after: no daemon on {settings.base_url}; starting one in the background (log: {logfile})", err=True)
    env = dict(os.environ)
    env.update({"AFTER_PORT": str(settings.server_port), "AFTER_HOST": settings.server_host, "AFTER_STATE_DIR": str(settings.state_path)})
    if settings.couchdb_url:
        env["AFTER_COUCHDB_URL"] = settings.couchdb_url
    if settings.config_file:
        env["AFTER_CONFIG"] = settings.config_file
    with open(logfile, "ab") as f:
        # -P: the daemon inherits our working directory, which may hold a directory named
        # `after` (the checkout's parent) that `-m after` would import instead of the package.
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "after", "serve"], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the daemon exited with {proc.returncode}; see {logfile}")
        if api.alive():
            return
        time.sleep(0.2)
    fail(f"the daemon did not answer within 60 s; see {logfile}")


@main.command()
@click.argument("name")
@click.option("--jobs", "jobs", multiple=True, help="Python module registering jobs with @after.jobs.job (repeatable).")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=4, show_default=True, help="Tasks run at once.")
@click.pass_context
def start(ctx: click.Context, name: str, jobs: tuple[str, ...], concurrency: int) -> None:
    """Start the named worker NAME (and the daemon, if none runs)."""
    settings = load_settings(ctx)
    ensure_daemon(settings)
    info = Api(settings).request("POST", f"/workers/{segment(name)}", body={"concurrency": concurrency, "jobs": list(jobs)})
    click.echo(f"worker {name} started (pid {info.get('pid')})")


@main.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(0, 86400), default=None, help="Seconds running jobs get to finish (default workers.shutdown_timeout).")
@click.pass_context
def stop(ctx: click.Context, name: str, timeout: float | None) -> None:
    """Stop the named worker NAME gracefully."""
    params = {"timeout": str(timeout)} if timeout is not None else None
    Api(load_settings(ctx)).request("DELETE", f"/workers/{segment(name)}", params=params)
    click.echo(f"worker {name} stopped")


@main.command(name="log")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", type=click.IntRange(1, 100000), default=200, show_default=True)
@click.pass_context
def log_cmd(ctx: click.Context, name: str, follow: bool, lines: int) -> None:
    """Print the log of worker NAME."""
    api = Api(load_settings(ctx))

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    if follow:
        api.stream(f"/workers/{segment(name)}/log", {"lines": str(lines), "follow": "1"}, write)
    else:
        write(api.request("GET", f"/workers/{segment(name)}/log", params={"lines": str(lines)}, raw=True))


@main.command()
@click.argument("name")
@click.pass_context
def clean(ctx: click.Context, name: str) -> None:
    """Empty the log of worker NAME."""
    Api(load_settings(ctx)).request("DELETE", f"/workers/{segment(name)}/log")
    click.echo(f"log of {name} cleaned")


def couchdb_account(settings: Settings) -> dict[str, Any]:
    """Where and as whom a program writes tasks straight into CouchDB.

    The embedded server's port changes at every start: it is read from ``couchdb.json``,
    which the daemon writes when it starts the server (so it must be running). The account
    is the client one (role ``after_client``), never the daemon's: the worker role may
    write claims, which would let a direct writer bypass the protocol.
    """
    from after import embedded
    from after.store import split_credentials

    if settings.embedded:
        port = embedded.running_port(settings.state_path)
        if port is None:
            fail(f"no embedded CouchDB runs on state directory {settings.state_path}: start the daemon (`after serve` or `after start NAME`)")
        password = embedded.read_secret(settings.state_path / "secrets" / "couchdb-client")
        if password is None:
            fail(f"no client account yet in {settings.state_path / 'secrets'}: restart the daemon to create it")
        url, user = f"http://127.0.0.1:{port}", embedded.CLIENT
    else:
        url, _, _ = split_credentials(settings.couchdb_url)  # the daemon's own credentials stay out
        user, password = settings.couchdb_client_user, settings.couchdb_client_password or None
    db_url = f"{url}/{quote(settings.couchdb_database, safe='')}"
    with_credentials = None
    if user and password:
        scheme, rest = db_url.split("://", 1)
        with_credentials = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"
    return {
        "url": url,
        "database": settings.couchdb_database,
        "database_url": db_url,
        "embedded": settings.embedded,
        "user": user or None,
        "password": password,
        "url_with_credentials": with_credentials,
    }


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--url-with-credentials", "with_credentials", is_flag=True, help="Print only the database URL with the client's credentials in it (for curl).")
@click.pass_context
def couchdb(ctx: click.Context, as_json: bool, with_credentials: bool) -> None:
    """Print the CouchDB URL, database and client account, for writing tasks straight into CouchDB."""
    info = couchdb_account(load_settings(ctx))
    if with_credentials:
        if not info["url_with_credentials"]:
            fail("no client account configured: set couchdb.client_password (and create it with `after setup --client-password`)")
        click.echo(info["url_with_credentials"])
        return
    if as_json:
        out_json(info)
        return
    missing = "(not configured: couchdb.client_user / couchdb.client_password)"
    click.echo(f"url       {info['url']}")
    click.echo(f"database  {info['database']}")
    click.echo(f"user      {info['user'] or missing}")
    click.echo(f"password  {info['password'] or missing}")


@main.command()
@click.pass_context
def shutdown(ctx: click.Context) -> None:
    """Stop the daemon of this state directory (as SIGTERM would); wait and say how it ended.

    Exits 0 only when the daemon exited after a clean shutdown (workers stopped and kept
    for its return, embedded CouchDB stopped); otherwise says what happened, exits 1.
    """
    from after.daemon import EXIT_FILE

    settings = load_settings(ctx)
    state = settings.state_path
    pid = _daemon_pid(state)
    if pid is None:
        fail(f"no daemon runs on state directory {state}")
    if not _process_alive(pid):
        fail(f"no daemon runs on state directory {state} (daemon {pid} is gone; it did not shut down cleanly)")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        fail(f"no daemon runs on state directory {state} (daemon {pid} is gone)")
    # Running jobs get workers.shutdown_timeout, then each worker's stop its margin.
    limit = settings.workers_shutdown_timeout + 90
    deadline = time.monotonic() + limit
    while _process_alive(pid):
        if time.monotonic() > deadline:
            fail(f"daemon {pid} did not stop within {limit:.0f} s")
        time.sleep(0.1)
    try:
        ended = json.loads((state / EXIT_FILE).read_text())
    except (OSError, ValueError):
        ended = {}
    if not isinstance(ended, dict) or ended.get("pid") != pid:
        fail(f"daemon {pid} exited without finishing its shutdown (it crashed?); see its log")
    if not ended.get("clean"):
        failures = ended.get("failures") or ["unknown"]
        fail(f"daemon {pid} stopped, but {len(failures)} shutdown step(s) failed: {'; '.join(map(str, failures))}")
    click.echo("daemon stopped")


def _daemon_pid(state: Path) -> int | None:
    """The pid of the daemon of ``state``: from daemon.json (written once it is up), else
    from its lock file while the lock is held (a daemon still starting)."""
    import fcntl

    try:
        return int(json.loads((state / "daemon.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        with open(state / "daemon.lock") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return int(f.read().strip())
            return None  # nobody holds it: no daemon (our lock goes with the file's close)
    except (OSError, ValueError):
        return None


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (exited, not reaped: a daemon started by
    `after start` is reaped by init, which in some containers never does) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def configured_account(settings: Settings) -> tuple[str, str | None]:
    """The daemon's CouchDB user and password as configured: ``couchdb.user`` /
    ``couchdb.password`` (``$AFTER_COUCHDB_PASSWORD``), else those in ``couchdb.url``
    (what ``./configure --couchdb-url`` wrote), as :class:`after.store.Store` reads them.
    The user defaults to ``after``; the password is None when none is configured."""
    from after.store import split_credentials

    _, url_user, url_password = split_credentials(settings.couchdb_url) if settings.couchdb_url else ("", None, None)
    return settings.couchdb_user or url_user or "after", settings.couchdb_password or url_password or None


@main.command()
@click.option(
    "--admin-url",
    required=True,
    envvar="AFTER_COUCHDB_ADMIN_URL",
    help="CouchDB URL with server-admin credentials (better in $AFTER_COUCHDB_ADMIN_URL: options show in ps).",
)
@click.option("--user", default=None, help="CouchDB user the daemon and workers use (default: couchdb.user, else the user in couchdb.url, else after).")
@click.option(
    "--password",
    default=None,
    help="Its password (default: couchdb.password / $AFTER_COUCHDB_PASSWORD, else the one in couchdb.url, else after for a new user; an option shows in ps).",
)
@click.option("--client-user", default=None, help="Client account (role after_client) to create too (default couchdb.client_user).")
@click.option(
    "--client-password",
    default=None,
    envvar="AFTER_COUCHDB_CLIENT_PASSWORD",
    help="Its password; without one no client account is made (default couchdb.client_password).",
)
@click.option("--reset-password", is_flag=True, help="Also set the password of users that exist already (otherwise it is left, and only checked).")
@click.pass_context
def setup(
    ctx: click.Context, admin_url: str, user: str | None, password: str | None, client_user: str | None, client_password: str | None, reset_password: bool
) -> None:
    """Prepare a CouchDB 3.x server: _users/_replicator, the users, the database, its _security and design document.

    Idempotent and respectful: an existing user keeps its password unless --reset-password
    (the configured one is checked, and a mismatch reported); After's roles are added to
    the database's _security, whatever else is there stays. Prints one line per change,
    or "nothing to change". Exits 1 when a configured password does not work.
    """
    from after import model, provision
    from after.provision import CLIENT_ROLE
    from after.store import Store

    settings = load_settings(ctx)
    conf_user, conf_password = configured_account(settings)
    user = user or conf_user
    password = password or conf_password
    client_user = client_user or settings.couchdb_client_user
    client_password = client_password or settings.couchdb_client_password
    accounts = [(user, password or "after", model.WORKER_ROLE, password is not None)]
    if client_password:
        accounts.append((client_user, client_password, CLIENT_ROLE, True))
    changes: list[str] = []
    problems: list[str] = []

    async def go() -> None:
        async with Store(admin_url, settings.couchdb_database) as admin:
            for system_db in ("_users", "_replicator"):
                if await provision.ensure_system_db(admin, system_db):
                    changes.append(f"created database {system_db!r}")
            for name, secret, role, configured in accounts:
                made = await provision.ensure_user(admin, name, secret, [role], reset_password=reset_password)
                changes.extend(made)
                if any(line.startswith("created user") for line in made) or reset_password:
                    continue
                if not await provision.password_works(admin, name, secret):
                    which = "the configured password" if configured else "the default password 'after' (none is configured)"
                    problems.append(
                        f"user {name!r} exists and {which} does not work for it: left as it is. Configure its password "
                        "(./configure --couchdb-url=http://USER:PASSWORD@HOST:5984, couchdb.password or $AFTER_COUCHDB_PASSWORD), "
                        "or run `after setup --reset-password` to set it to the configured one"
                    )
            changes.extend(await provision.setup(admin, create=True, security="merge"))

    try:
        asyncio.run(go())
    except AfterError as exc:
        fail(exc.message)
    for line in changes or ["nothing to change"]:
        click.echo(line)
    users = f"users {user!r} and {client_user!r}" if client_password else f"user {user!r}"
    if problems:
        for line in problems:
            click.echo(f"after: {line}", err=True)
        sys.exit(1)
    click.echo(f"database {settings.couchdb_database!r} and {users} ready")


from after.cli_overlap import backfill  # noqa: E402,F401 - registers `after task backfill`
from after.cli_pause import pause, resume  # noqa: E402 - `after pause|resume`, `after task pause|resume`
from after.cli_tasks import task  # noqa: E402 - registers the `after task` group
from after.cli_tokens import token  # noqa: E402 - registers `after token`
from after.cli_workers import daemons, list_cmd  # noqa: E402 - `after list`, `after daemons`

main.add_command(task)
main.add_command(pause)
main.add_command(resume)
main.add_command(token)
main.add_command(list_cmd)
main.add_command(daemons)
