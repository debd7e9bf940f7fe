"""The embedded CouchDB-compatible server (pouchdb-server) used when no URL is configured.

Its data lives under ``<state>/couchdb``; the daemon starts it on a free loopback port,
supervises it (restarts it if it exits, and says so), and stops it on exit. A server
left running by a daemon that was killed is recognised from ``<state>/couchdb.json``
(pid and command line) and stopped before a new one starts: two servers cannot share
one LevelDB directory, so it is never "fought over".

Credentials, with generated passwords kept in 0600 files under ``<state>/secrets/``:
an admin (``couchdb-admin``, for setup only), the ``after`` user with the worker role
(``couchdb-after``, the daemon's and workers'), and the ``after_client`` user with the
client role (``couchdb-client``) for programs that write tasks straight into the
database; ``after couchdb`` prints its URL and credentials. The port is chosen anew at
every start and recorded in ``<state>/couchdb.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

from after.config import ROOT
from after.errors import ConfigError, StoreUnavailable

log = logging.getLogger("after.embedded")

ADMIN = "admin"
USER = "after"
#: The client account: may write tasks and a client's intents, never a worker's statuses.
CLIENT = "after_client"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def read_secret(path: Path) -> str | None:
    """A secret :func:`secret_file` made, or None when there is none yet (never creates one)."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def running_port(state: Path) -> int | None:
    """The port of the embedded server running on ``state``, from ``couchdb.json``.

    None when no server runs there: the file is missing (never started, or stopped
    cleanly), unreadable, or names a process that is no longer a pouchdb-server (its
    daemon was killed and the server went with it, or the pid was reused).
    """
    try:
        info = json.loads((state / "couchdb.json").read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return port if "pouchdb-server" in _cmdline(pid) else None


def secret_file(path: Path) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def default_binary() -> Path:
    return ROOT / "node_modules" / ".bin" / "pouchdb-server"


class EmbeddedCouch:
    """Start, supervise and stop one pouchdb-server over a state directory."""

    def __init__(self, state: Path, *, binary: str | Path | None = None, port: int | None = None) -> None:
        self.state = state
        self.binary = Path(binary) if binary else default_binary()
        self.port = port or 0
        self.data = state / "couchdb"
        self.pidfile = state / "couchdb.json"
        self.logfile = state / "logs" / "couchdb.log"
        self.admin_password = secret_file(state / "secrets" / "couchdb-admin")
        self.user_password = secret_file(state / "secrets" / "couchdb-after")
        self.client_password = secret_file(state / "secrets" / "couchdb-client")
        self._secret = secret_file(state / "secrets" / "couchdb-cookie-secret")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop_stale(self) -> None:
        """Stop a server a previous (crashed) daemon left on this state directory."""
        try:
            info = json.loads(self.pidfile.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if "pouchdb-server" not in _cmdline(pid):
            return  # gone, or the pid was reused by something else: leave it alone
        log.warning("stopping the embedded CouchDB (pid %d) left by a previous daemon", pid)
        with _suppress_lookup():
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if "pouchdb-server" not in _cmdline(pid):
                break
            time.sleep(0.1)
        else:
            with _suppress_lookup():
                os.kill(pid, signal.SIGKILL)

    def _spawn(self) -> None:
        if not self.binary.exists():
            raise ConfigError(
                f"embedded CouchDB not installed ({self.binary} missing): run `make setup`, or set couchdb.url / AFTER_COUCHDB_URL to a CouchDB server"
            )
        # The database and the server's config file (which it rewrites, mode 0644, with the
        # admin password hashed) are for the daemon's user only.
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        # The server hashes passwords into its config file and rewrites it: write it anew
        # at every start. A fixed cookie secret keeps sessions valid across restarts.
        # It holds the admin password in clear until the server hashes it: 0600.
        config = self.data / "config.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                {
                    "admins": {ADMIN: self.admin_password},
                    "couch_httpd_auth": {"secret": self._secret},
                    "log": {"file": str(self.logfile)},
                },
                f,
            )
        logf = open(self.logfile, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "-p", str(self.port), "-d", str(self.data) + "/", "-o", "127.0.0.1", "-n", "-c", str(config)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data,
                start_new_session=True,
            )
        finally:
            logf.close()
        self._write_pidfile({"pid": self.proc.pid, "port": self.port, "url": self.url, "daemon": os.getpid()})

    def _write_pidfile(self, info: dict[str, object]) -> None:
        """Write ``couchdb.json`` whole or not at all: `after couchdb` reads the port from it."""
        tmp = self.pidfile.with_name(self.pidfile.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, self.pidfile)

    async def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise StoreUnavailable(f"embedded CouchDB exited with {self.proc.returncode}; see {self.logfile}")
                try:
                    async with session.get(self.url + "/", headers={"Accept": "application/json"}) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise StoreUnavailable(f"embedded CouchDB did not answer on {self.url} within {timeout:.0f}s; see {self.logfile}")

    async def start(self) -> None:
        self.stop_stale()
        self._spawn()
        await self._wait_ready()
        await self.ensure_accounts()
        log.info("embedded CouchDB (pid %d) on %s, data in %s", self.proc.pid if self.proc else 0, self.url, self.data)

    async def ensure_accounts(self) -> None:
        """Create (or re-password) the worker and client users from the secrets files.

        Done at every start, so a state directory made before the client account existed
        gets it, and a secrets file replaced by hand takes effect.
        """
        from after import model, provision
        from after.provision import CLIENT_ROLE
        from after.store import Store

        async with Store(self.url, "_users", user=ADMIN, password=self.admin_password) as admin:
            await provision.ensure_user(admin, USER, self.user_password, [model.WORKER_ROLE])
            await provision.ensure_user(admin, CLIENT, self.client_password, [CLIENT_ROLE])

    async def supervise(self) -> None:
        """Restart the server whenever it exits (until :meth:`stop`). Run as a task."""
        delay = 0.5
        while not self._stopping:
            await asyncio.sleep(0.5)
            proc = self.proc
            if proc is None or proc.poll() is None or self._stopping:
                continue
            self.restarts += 1
            log.error("embedded CouchDB exited with %s; restarting it (restart %d)", proc.returncode, self.restarts)
            started = time.monotonic()
            try:
                self._spawn()
                await self._wait_ready()
            except (StoreUnavailable, OSError) as exc:
                log.error("embedded CouchDB restart failed: %s", exc)
            if time.monotonic() - started < 5:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                delay = 0.5

    def pause(self) -> None:
        """Stop the server without restarting it until :meth:`resume` (for outage tests)."""
        self._stopping = True
        self._terminate()

    async def resume(self) -> None:
        self._stopping = False
        self._spawn()
        await self._wait_ready()

    def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        self._stopping = True
        self._terminate()
        try:
            self.pidfile.unlink()
        except FileNotFoundError:
            pass


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return isinstance(exc, ProcessLookupError | PermissionError)
