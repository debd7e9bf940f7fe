"""The ``after`` command. Everything but ``serve``, ``token`` and ``setup`` goes through the REST port.

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
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import aiohttp
import click
from yarl import URL

from after import __version__, config, tls, tokens
from after.config import Settings
from after.errors import AfterError

CONTEXT = {"help_option_names": ["-h", "--help"]}
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    click.echo(f"after: {message}", err=True)
    sys.exit(1)


def segment(value: str) -> str:
    """``value`` as exactly one URL path segment.

    Task ids and worker names come from the user: ``a/b`` must not become two segments,
    and ``.``/``..`` must not be resolved as dot-segments (``after task show ../workers``
    asks for the task named ``../workers``, it does not list workers). ``quote`` leaves
    dots alone, so a dot-only segment is encoded by hand; the URL is then sent as it is
    (see :meth:`Api.url`), since yarl would otherwise decode ``%2E`` and drop the segment.
    """
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _error_line(data: bytes, status: int) -> str:
    """The daemon's ``message`` (or the body's start, when it is not After's JSON) and the status."""
    try:
        parsed = json.loads(data)
        msg = parsed.get("message") if isinstance(parsed, dict) else None
    except ValueError:
        msg = None
    if not isinstance(msg, str):
        msg = data.decode(errors="replace").strip()[:200]
    return f"{msg} (HTTP {status})"


class Api:
    """A small synchronous client of the daemon's REST port (HTTPS verified: see :mod:`after.tls`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.base_url
        try:
            self.ssl = tls.client_context(settings.client_ca_file or None)
        except AfterError as exc:
            fail(exc.message)

    def url(self, path: str) -> URL:
        """The daemon's URL for ``path``, already encoded (its segments made by :func:`segment`)."""
        return URL(self.base + path, encoded=True)

    def _headers(self) -> dict[str, str]:
        token = self.settings.token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def session(self, total: float | None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else True)
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total), connector=connector)

    def tls_failure(self, exc: aiohttp.ClientSSLError) -> str:
        """What to say when HTTPS with the daemon fails: the URL, why, and the setting to fix."""
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            why = getattr(exc.certificate_error, "verify_message", None) or str(exc.certificate_error)
            trusted = f"the CA file {self.settings.client_ca_file}" if self.settings.client_ca_file else "the system's CAs"
            return (
                f"the certificate of {self.base} does not verify against {trusted} ({why}): "
                "set client.ca_file (AFTER_CA_FILE) to the CA that signed it"
            )
        return f"TLS with {self.base} failed ({exc.os_error.strerror or exc.os_error}); does the daemon serve HTTPS (server.tls_cert)?"

    def run(self, go: Callable[[], Coroutine[Any, Any, T]], unreachable: str) -> T:
        """Run one exchange with the daemon; a failure to reach it is a one-line error."""
        try:
            return asyncio.run(go())
        except aiohttp.ClientSSLError as exc:
            fail(self.tls_failure(exc))
        except aiohttp.ClientConnectionError:
            fail(unreachable)

    def request(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None, raw: bool = False) -> Any:
        async def go() -> Any:
            async with self.session(120) as session:
                kwargs: dict[str, Any] = {"headers": self._headers(), "params": params or {}}
                if body is not None:
                    kwargs["json"] = body
                async with session.request(method, self.url(path), **kwargs) as resp:
                    data = await resp.read()
                    if resp.status >= 400:
                        fail(_error_line(data, resp.status))
                    if raw:
                        return data
                    return json.loads(data) if data else None

        return self.run(go, f"no After daemon answers on {self.base} (start one with `after serve` or `after start NAME`)")

    def stream(self, path: str, params: dict[str, str], out: Callable[[bytes], None]) -> None:
        async def go() -> None:
            async with self.session(None) as session:
                async with session.get(self.url(path), params=params, headers=self._headers()) as resp:
                    if resp.status >= 400:
                        fail(_error_line(await resp.read(), resp.status))
                    async for chunk in resp.content.iter_any():
                        out(chunk)

        try:
            self.run(go, f"no After daemon answers on {self.base}")
        except KeyboardInterrupt:
            pass

    def alive(self) -> bool:
        """Whether a daemon answers; a daemon whose certificate does not verify is an error,
        not "no daemon" (starting another one on its port would only fail less clearly)."""

        async def go() -> bool:
            try:
                async with self.session(2) as session:
                    async with session.get(self.base + "/") as resp:
                        return resp.status == 200
            except aiohttp.ClientSSLError:
                raise
            except (aiohttp.ClientError, TimeoutError):
                return False

        return self.run(go, f"no After daemon answers on {self.base}")


def load_settings(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        try:
            obj["settings"] = config.load(obj.get("config"), overrides=obj.get("overrides"))
        except AfterError as exc:
            fail(exc.message)
    settings: Settings = obj["settings"]
    return settings


def out_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


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


def ago(iso: Any, now: float) -> str:
    """How long before ``now`` (epoch seconds) an ISO time was, as ``3s ago`` / ``4m ago`` /
    ``2h ago``; ``-`` when there is none. Another daemon's clock may run a little ahead:
    a time in the future counts as just now."""
    if not isinstance(iso, str):
        return "-"
    try:
        then = datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return "-"
    secs = max(0.0, now - then)
    if secs < 120:
        return f"{secs:.0f}s ago"
    return f"{secs / 60:.0f}m ago" if secs < 7200 else f"{secs / 3600:.0f}h ago"


def _host(w: dict[str, Any]) -> str:
    """The HOST cell: ``*`` marks a worker held by another daemon on the database."""
    return str(w.get("host") or "-") + ("" if w.get("here", True) else "*")


def worker_lines(workers: list[dict[str, Any]], now: float) -> list[str]:
    """The text of ``after list``: local worker processes first, in the columns scripts
    have always read (NAME HOST STATE ...), then remote workers (docs/worker-protocol.md)
    in a table of their own, since what tells them apart (the address they call from, their
    last call, whether they are live) means nothing for a local process. Both tables start
    with NAME HOST STATE."""
    local = [w for w in workers if not w.get("remote")]
    remote = [w for w in workers if w.get("remote")]
    out: list[str] = []
    if local or not remote:
        out.append(f"{'NAME':<16} {'HOST':<16} {'STATE':<10} {'PID':>7} {'UPTIME':>9} {'TASKS':>6}  LAST ERROR")
    for w in local:
        uptime = f"{w['uptime']:.0f}s" if w.get("uptime") is not None else "-"
        out.append(
            f"{w['name']:<16} {_host(w):<16} {w['state']:<10} {w.get('pid') or '-':>7} {uptime:>9} {w.get('tasks_run', 0):>6}  {w.get('last_error') or ''}"
        )
    if remote:
        if local:
            out.append("")
        out.append("REMOTE WORKERS (connected over the REST port)")
        out.append(f"{'NAME':<16} {'HOST':<16} {'STATE':<10} {'PID':>7} {'LIVE':<4} {'RUNNING':>7} {'TASKS':>6} {'LAST BEAT':>9}  {'ADDRESS':<16} LAST ERROR")
        for w in remote:
            live = "yes" if w.get("live") else "no" if w.get("live") is False else "-"
            running = f"{w.get('running_tasks', 0)}/{w.get('concurrency') or '-'}"
            beat = ago(w.get("last_heartbeat"), now)
            out.append(
                f"{w['name']:<16} {_host(w):<16} {w['state']:<10} {w.get('pid') or '-':>7} {live:<4} {running:>7} {w.get('tasks_run', 0):>6} {beat:>9}  "
                f"{w.get('address') or '-':<16} {w.get('last_error') or ''}"
            )
    if any(not w.get("here", True) for w in workers):
        out.append("(* held by another daemon on this database; --here for this daemon's only)")
    return out


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--here", is_flag=True, help="Only this daemon's workers (default: every daemon's on the database).")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, here: bool) -> None:
    """List workers of every daemon: name, host, state, pid, uptime, tasks run, last error;
    remote workers apart, with whether they are live, their running tasks, last call and address."""
    workers = Api(load_settings(ctx)).request("GET", "/workers", params={"here": "1"} if here else None)["workers"]
    if as_json:
        out_json(workers)
        return
    for line in worker_lines(workers, time.time()):
        click.echo(line.rstrip())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def daemons(ctx: click.Context, as_json: bool) -> None:
    """List every daemon on the database (live, stopped, gone), from their heartbeats."""
    items = Api(load_settings(ctx)).request("GET", "/daemons")["daemons"]
    if as_json:
        out_json(items)
        return
    click.echo(f"{'ID':<36} {'STATE':<8} {'QUORUM':<7} {'WORKERS':<24} {'LAST BEAT':<25} URL")
    for d in items:
        names = ",".join(str(w.get("name")) for w in d.get("workers") or []) or "-"
        mark = " (here)" if d.get("here") else ""
        click.echo(f"{d['id'] + mark:<36} {d['state']:<8} {d.get('quorum', '-'):<7} {names:<24} {d.get('beat', '-'):<25} {d.get('url', '-')}")


@main.command()
@click.argument("name")
@click.pass_context
def clean(ctx: click.Context, name: str) -> None:
    """Empty the log of worker NAME."""
    Api(load_settings(ctx)).request("DELETE", f"/workers/{segment(name)}/log")
    click.echo(f"log of {name} cleaned")


@main.command()
@click.option("--worker", metavar="NAME", default=None, help="Issue a token for worker NAME's remote protocol calls only (for its host).")
@click.option("--read-only", "read_only", is_flag=True, help="Issue a read-only token (dashboards: GET of everything but /tokens).")
@click.option("--label", default=None, help="What the new token is for (shown by --list).")
@click.option("--list", "list_tokens", is_flag=True, help="List the tokens issued on this database (never their secrets).")
@click.option("--revoke", metavar="ID", default=None, help="Revoke a token (its id, as --list shows, or the token itself).")
@click.option("--json", "as_json", is_flag=True, help="JSON output (with --worker, --read-only, --list, --revoke).")
@click.pass_context
def token(ctx: click.Context, worker: str | None, read_only: bool, label: str | None, list_tokens: bool, revoke: str | None, as_json: bool) -> None:
    """Print the admin API token; or issue, list and revoke scoped tokens.

    Without options: the admin token (the daemon makes one on its first start). The
    others go through the REST port with the admin token: --worker NAME and --read-only
    print a new token once (keep it: only its hash is stored), --list shows every token,
    --revoke ID refuses one from then on.
    """
    given = {"--worker": worker is not None, "--read-only": read_only, "--list": list_tokens, "--revoke": revoke is not None}
    actions = [flag for flag, on in given.items() if on]
    if len(actions) > 1:
        raise click.UsageError(f"{' and '.join(actions)} cannot be combined: one action at a time")
    if label is not None and actions not in (["--worker"], ["--read-only"]):
        raise click.UsageError("--label goes with --worker NAME or --read-only (it names a new token)")
    settings = load_settings(ctx)
    value = settings.token()
    if not actions:
        if not value:
            fail("no token yet: start the daemon once (`make run` or `after serve`), or set server.api_token")
        click.echo(value)
        return
    if not value:
        fail("scoped tokens are issued with the admin token, and there is none here: run this on the daemon's host, or set server.api_token")
    api = Api(settings)
    if list_tokens:
        listed = api.request("GET", "/tokens")["tokens"]
        if as_json:
            out_json(listed)
            return
        click.echo(f"{'ID':<17} {'SCOPE':<7} {'WORKER':<16} {'CREATED':<25} {'REVOKED':<25} LABEL")
        for t in listed:
            created, revoked = t.get("created") or "-", t.get("revoked") or "-"
            click.echo(f"{t['id']:<17} {t['scope']:<7} {t.get('worker') or '-':<16} {created:<25} {revoked:<25} {t.get('label') or ''}")
        return
    if revoke is not None:
        parsed = tokens.parse(revoke)
        token_id = parsed[0] if parsed else revoke.removeprefix(tokens.DOC_PREFIX)
        done = api.request("DELETE", f"/tokens/{segment(token_id)}")
        if as_json:
            out_json(done)
        else:
            click.echo(f"token {done['id']} revoked at {done['revoked']}")
        return
    body: dict[str, Any] = {"scope": "worker", "worker": worker} if worker is not None else {"scope": "read"}
    if label is not None:
        body["label"] = label
    made = api.request("POST", "/tokens", body=body)
    if as_json:
        out_json(made)
        return
    click.echo(made["token"])
    what = f"worker {made['worker']}'s protocol calls" if made["scope"] == "worker" else "reads"
    click.echo(f"(token {made['id']}, for {what}; shown this once: keep it. Revoke it with `after token --revoke {made['id']}`)", err=True)


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


from after.cli_tasks import task  # noqa: E402 - registers the `after task` group

main.add_command(task)
