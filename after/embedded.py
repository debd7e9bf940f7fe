"""The embedded CouchDB-compatible server (pouchdb-server) used when no URL is configured.

Its data lives under ``<state>/couchdb``; the daemon starts it on a free loopback port,
supervises it (restarts it if it exits, and says so), and stops it on exit. A server
left running by a daemon that was killed is recognised from ``<state>/couchdb.json``
(pid and command line) and stopped before a new one starts: two servers cannot share
one LevelDB directory, so it is never "fought over".

Credentials: an admin (for setup only) and the ``after`` user with the worker role, both
with generated passwords kept in 0600 files under the state directory.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def secret_file(path: Path) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
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
        self.data.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        # The server hashes passwords into its config file and rewrites it: write it anew
        # at every start. A fixed cookie secret keeps sessions valid across restarts.
        config = self.data / "config.json"
        config.write_text(
            json.dumps(
                {
                    "admins": {ADMIN: self.admin_password},
                    "couch_httpd_auth": {"secret": self._secret},
                    "log": {"file": str(self.logfile)},
                }
            )
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
        self.pidfile.write_text(json.dumps({"pid": self.proc.pid, "port": self.port, "daemon": os.getpid()}))

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
        log.info("embedded CouchDB (pid %d) on %s, data in %s", self.proc.pid if self.proc else 0, self.url, self.data)

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
