"""Test fixtures: a real CouchDB-compatible server, a database per test, real daemons.

Nothing here mocks the store. The server is the embedded pouchdb-server, started once
per session on a free port, or the CouchDB named by ``AFTER_TEST_COUCHDB_URL`` (with
server-admin credentials in the URL). Each test gets its own database, prepared as
``after setup`` would, and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from after import model, provision
from after.config import Settings
from after.embedded import ADMIN, EmbeddedCouch, free_port
from after.errors import Conflict
from after.jobs import TaskContext
from after.store import Store, split_credentials

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
WORKER_USER = "after"
WORKER_PASSWORD = "after-test-password"
CLIENT_USER = "client"
CLIENT_PASSWORD = "client-test-password"


@dataclasses.dataclass
class Couch:
    url: str
    admin: str | None
    admin_password: str | None
    embedded: EmbeddedCouch | None

    def store(self, db: str, *, as_admin: bool = False, user: str = WORKER_USER, password: str = WORKER_PASSWORD) -> Store:
        if as_admin:
            return Store(self.url, db, user=self.admin, password=self.admin_password)
        return Store(self.url, db, user=user, password=password)

    def url_for(self, user: str = WORKER_USER, password: str = WORKER_PASSWORD) -> str:
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{user}:{password}@{rest}"


#: The session's server, for helpers that need its admin (see :func:`write_leaves`).
_SESSION_COUCH: list[Couch] = []


@pytest.fixture(scope="session")
def couch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Couch]:
    env_url = os.environ.get("AFTER_TEST_COUCHDB_URL")
    if env_url:
        base, user, password = split_credentials(env_url)
        info = Couch(base, user, password, None)
    else:
        state = tmp_path_factory.mktemp("couchdb")
        emb = EmbeddedCouch(state)
        asyncio.run(emb.start())
        info = Couch(emb.url, ADMIN, emb.admin_password, emb)

    async def users() -> None:
        # Under pytest-xdist (`make test` runs two processes) both may set up the same
        # CouchDB (AFTER_TEST_COUCHDB_URL) at once: a conflict on a user means the other did.
        async with info.store("_users", as_admin=True) as admin:
            for attempt in range(5):
                try:
                    await provision.ensure_system_db(admin, "_replicator")
                    await provision.ensure_user(admin, WORKER_USER, WORKER_PASSWORD, [model.WORKER_ROLE])
                    await provision.ensure_user(admin, CLIENT_USER, CLIENT_PASSWORD, ["after_client"])
                    return
                except Conflict:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    asyncio.run(users())
    _SESSION_COUCH[:] = [info]
    yield info
    if info.embedded is not None:
        info.embedded.stop()


@pytest.fixture
def dbname(couch: Couch) -> Iterator[str]:
    """A fresh database, set up as `after setup` does; deleted after the test."""
    with fresh_database(lambda name: couch.store(name, as_admin=True)) as name:
        yield name


@contextlib.contextmanager
def fresh_database(admin: Callable[[str], Store], *, prefix: str = "t") -> Iterator[str]:
    """Create a database named ``<prefix><random>`` with ``admin(name)`` (an admin's store),
    set up as `after setup` does; delete it afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:16]}"

    async def create() -> None:
        async with admin(name) as store:
            await provision.setup(store, create=True)

    async def drop() -> None:
        async with admin(name) as store:
            try:
                await provision.drop(store)
            except Exception:
                pass

    asyncio.run(create())
    try:
        yield name
    finally:
        asyncio.run(drop())


@pytest.fixture
def settings(couch: Couch, dbname: str, tmp_path: Path) -> Settings:
    return Settings(
        couchdb_url=couch.url,
        couchdb_user=WORKER_USER,
        couchdb_password=WORKER_PASSWORD,
        couchdb_database=dbname,
        state_dir=str(tmp_path / "state"),
        server_port=free_port(),
    )


# -- HTTP helper ---------------------------------------------------------------------------------


def http(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON or text). Never raises for HTTP errors.
    ``context``: the TLS context of an https daemon (a test CA)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None and raw is None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(payload) if payload else None
    return status, payload.decode(errors="replace")


def tid(task_id: str) -> str:
    return quote(task_id, safe="")


@dataclasses.dataclass
class Daemon:
    """A real ``after serve`` process on a free port."""

    base: str
    state: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    logfile: Path

    @property
    def token(self) -> str:
        return (self.state / "token").read_text().strip()

    def api(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        kw.setdefault("token", self.token)
        return http(self.base, method, path, body, **kw)

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "after", *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if check and res.returncode != 0:
            raise AssertionError(f"after {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def start_worker(self, name: str, *, concurrency: int = 4, jobs: list[str] | None = None) -> dict[str, Any]:
        status, body = self.api("POST", f"/workers/{name}", {"concurrency": concurrency, "jobs": jobs or ["testjobs"]})
        assert status == 201, body
        return body

    def create(self, body: Any) -> dict[str, Any]:
        status, reply = self.api("POST", "/tasks", body)
        assert status == 201, reply
        return reply

    def task(self, task_id: str) -> dict[str, Any]:
        status, doc = self.api("GET", f"/tasks/{tid(task_id)}")
        assert status == 200, doc
        return doc

    def wait_status(self, task_id: str, statuses: set[str] | str, timeout: float = 20) -> dict[str, Any]:
        wanted = {statuses} if isinstance(statuses, str) else statuses
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = self.task(task_id)
            if doc.get("status") in wanted:
                return doc
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} is {doc.get('status')}, not {wanted} after {timeout}s:\n{json.dumps(doc, indent=1)[:3000]}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def daemon_env(couch: Couch, dbname: str, state: Path, port: int, **extra: str) -> dict[str, str]:
    config = state.parent / f"{state.name}.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
    env.update(
        {
            "AFTER_CONFIG": str(config),
            "AFTER_COUCHDB_URL": couch.url_for(),
            "AFTER_DATABASE": dbname,
            "AFTER_STATE_DIR": str(state),
            "AFTER_PORT": str(port),
            "PYTHONPATH": str(TESTS / "jobs") + os.pathsep + env.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def spawn_daemon(env: dict[str, str], state: Path, *, wait: float = 30) -> Daemon:
    state.mkdir(parents=True, exist_ok=True)
    logfile = state / "daemon-stdout.log"
    with open(logfile, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "after", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{env['AFTER_PORT']}"
    d = Daemon(base, state, env, proc, logfile)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{d.log()[-3000:]}")
        try:
            status, _ = http(base, "GET", "/", timeout=1)
            if status == 200 and (state / "token").exists():
                return d
        except OSError:
            pass
        time.sleep(0.1)
    d.stop(signal.SIGKILL)
    raise AssertionError(f"daemon did not answer within {wait}s:\n{d.log()[-3000:]}")


@pytest.fixture
def start_daemon(couch: Couch, dbname: str, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory: start one or more real daemons on this test's database."""
    started: list[Daemon] = []

    def start(name: str = "d0", *, port: int | None = None, state: Path | None = None, **extra: str) -> Daemon:
        st = state or tmp_path / name
        env = daemon_env(couch, dbname, st, port or free_port(), **extra)
        d = spawn_daemon(env, st)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(signal.SIGTERM, timeout=60)


@pytest.fixture
def daemon(start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a certificate for 127.0.0.1 and its key; and one of another CA (for mismatches)."""
    import trustme

    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    other = trustme.CA().issue_cert("127.0.0.1")
    files = {"ca": root / "ca.pem", "cert": root / "cert.pem", "key": root / "key.pem", "other_key": root / "other-key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for i, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(files["cert"]), append=i > 0)
    leaf.private_key_pem.write_to_path(str(files["key"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    return files


@pytest.fixture
def https_daemon(couch: Couch, dbname: str, tmp_path: Path, pki: dict[str, Path]) -> Iterator[Daemon]:
    """A daemon serving HTTPS with :func:`pki`'s certificate (its clients verify it with ``pki["ca"]``)."""
    state = tmp_path / "state"
    port = free_port()
    env = daemon_env(couch, dbname, state, port, AFTER_TLS_CERT=str(pki["cert"]), AFTER_TLS_KEY=str(pki["key"]))
    state.mkdir(parents=True)
    logfile = state / "daemon-stdout.log"
    with open(logfile, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "after", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    d = Daemon(f"https://127.0.0.1:{port}", state, env, proc, logfile)
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, d.log()
        try:
            if http(d.base, "GET", "/", timeout=1, context=context)[0] == 200 and (state / "token").exists():
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no HTTPS answer within 30 s:\n{d.log()[-3000:]}"
        time.sleep(0.1)
    yield d
    d.stop(signal.SIGTERM)


def executions(path: Path) -> collections.Counter[str]:
    """How many times each task ran, as recorded by the test jobs themselves (one line per run)."""
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in path.read_text().splitlines() if line)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def iso_in(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    from after import timing

    return timing.fmt(datetime.now(UTC) + timedelta(seconds=seconds))


class CuttableLink:
    """A TCP forwarder between the daemon and CouchDB that the test can cut and restore:
    the store really becomes unreachable for the daemon (nothing is mocked)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        #: Set by :meth:`lose_next_answer`; counts the answers dropped.
        self._lose_answer = False
        self.answers_lost = 0
        #: Set by :meth:`answer_with`: every new connection gets this answer, not CouchDB.
        self.canned: bytes | None = None
        self.socks: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.up:
                client.close()
                continue
            if self.canned is not None:
                threading.Thread(target=self._answer, args=(client, self.canned), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool = False) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if answers and self._lose_answer:
                    # CouchDB has done the request (here is its answer); the client never hears.
                    self._lose_answer = False
                    self.answers_lost += 1
                    break
                dst.sendall(chunk)
        self._drop(src, dst)

    def _answer(self, client: socket.socket, canned: bytes) -> None:
        with contextlib.suppress(OSError), client:
            client.settimeout(5)
            client.recv(65536)  # the request (its head at least)
            client.sendall(canned)

    def answer_with(self, status: str, body: bytes, content_type: str = "application/json") -> None:
        """From now on answer every request with ``status`` and ``body`` (a CouchDB answering
        5xx, or something answering garbage), until :meth:`restore`."""
        head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        self.canned = head.encode() + body
        self.up = True
        with self.lock:
            live = list(self.socks)
        self._drop(*live)

    def lose_next_answer(self) -> None:
        """Let the next request through, then break its connection before the answer."""
        self._lose_answer = True

    def _drop(self, *socks: socket.socket) -> None:
        with self.lock:
            for s in socks:
                if s in self.socks:
                    self.socks.discard(s)
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

    def cut(self) -> None:
        self.up = False
        with self.lock:
            live = list(self.socks)
        self._drop(*live)

    def restore(self) -> None:
        self.up = True
        self.canned = None

    def via(self, url: str) -> str:
        """``url`` (a CouchDB URL, credentials included) rerouted through this link."""
        parts = urllib.parse.urlsplit(url)
        return url.replace(f":{parts.port}", f":{self.port}", 1)

    @classmethod
    def to(cls, url: str) -> CuttableLink:
        parts = urllib.parse.urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5984)

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def link(couch: Couch) -> Iterator[CuttableLink]:
    """A :class:`CuttableLink` to this session's CouchDB, closed after the test."""
    cut = CuttableLink.to(couch.url)
    yield cut
    cut.close()


def recording_job() -> tuple[list[str], Callable[[TaskContext], Awaitable[None]]]:
    """An in-process job, and the list of the task ids it ran, in order."""
    ran: list[str] = []

    async def hit(ctx: TaskContext) -> None:
        ran.append(ctx.id)

    return ran, hit


class AcceptedLink:
    """An HTTP proxy in front of CouchDB that turns chosen ``_bulk_docs`` answers into a
    cluster's 202: every ``ok`` row gains ``"accepted": true`` (taken by fewer replicas
    than the quorum). The write itself really happens on the server; only what the
    writer is told changes, which is exactly what a CouchDB cluster does to the loser of
    a race or to a node cut off from the others.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.loop = asyncio.new_event_loop()
        self._pending: list[Callable[[list[dict[str, Any]]], bool]] = []
        self.rewritten = 0
        self.lock = threading.Lock()
        ready = threading.Event()
        self.port = 0

        async def serve() -> None:
            from aiohttp import ClientSession, web

            self.session = ClientSession(auto_decompress=False)
            app = web.Application(client_max_size=256 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        ready.wait(10)

    def accept_next(self, count: int = 1, *, when: Callable[[list[dict[str, Any]]], bool] = lambda docs: True) -> None:
        """Answer the next ``count`` bulk writes whose documents satisfy ``when`` with 202 rows."""
        with self.lock:
            self._pending += [when] * count

    def _take(self, docs: list[dict[str, Any]]) -> bool:
        with self.lock:
            for i, when in enumerate(self._pending):
                if when(docs):
                    del self._pending[i]
                    return True
        return False

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with self.session.request(request.method, self.target + request.path_qs, data=body or None, headers=headers) as up:
            payload = await up.read()
            status = up.status
            out_headers = {k: v for k, v in up.headers.items() if k.lower() in ("content-type", "etag", "cache-control")}
        if request.method == "POST" and request.path.endswith("/_bulk_docs") and status in (200, 201):
            docs = json.loads(body).get("docs") or []
            if self._take(docs):
                rows = json.loads(payload)
                for row in rows:
                    if "error" not in row:
                        row["accepted"] = True
                payload, status = json.dumps(rows).encode(), 202
                self.rewritten += 1
        return web.Response(body=payload, status=status, headers=out_headers)

    def via(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return url.replace(f":{parts.port}", f":{self.port}", 1)

    def close(self) -> None:
        async def stop() -> None:
            await self.session.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def accepted_link(couch: Couch) -> Iterator[AcceptedLink]:
    """An :class:`AcceptedLink` to this session's CouchDB, closed after the test."""
    proxy = AcceptedLink(couch.url)
    yield proxy
    proxy.close()


def conflicting_leaves(base: dict[str, Any], *branches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents that, written with ``new_edits: false``, give ``base`` one branch per
    argument (each a list of successive bodies): real conflicting leaves, made the way
    replication makes them. Returns the leaves (last body of each branch) with their revs."""
    gen, base_hash = base["_rev"].split("-", 1)
    writes = []
    for branch in branches:
        ids = [base_hash]
        for i, body in enumerate(branch, start=1):
            ids.insert(0, uuid.uuid4().hex)
            doc = {**body, "_id": base["_id"], "_rev": f"{int(gen) + i}-{ids[0]}", "_revisions": {"start": int(gen) + i, "ids": list(ids)}}
        writes.append(doc)
    return writes


async def write_leaves(store: Store, leaves: list[dict[str, Any]]) -> None:
    """Write :func:`conflicting_leaves` as replication does (``new_edits: false``).

    pouchdb-server 4.2 answers such a write ``[]`` and drops it silently when the
    database has a ``validate_doc_update`` (any, even one that accepts everything;
    measured here): there, the design document's validation is set aside for the write,
    as an admin, and put back. CouchDB takes the write as it is.
    """
    reply = await store.db._bulk_docs(leaves, new_edits=False)
    assert not [r for r in reply if "error" in r], reply
    revs = {d["_rev"] for d in leaves}
    found = {leaf["_rev"] for d in {d["_id"] for d in leaves} for leaf in await store.leaves(d)}
    if revs <= found:
        return
    assert os.environ.get("AFTER_TEST_COUCHDB_URL") is None, f"CouchDB dropped new_edits=false writes: {sorted(revs - found)}"
    couch = _SESSION_COUCH[0]
    async with couch.store(store.name, as_admin=True) as admin:
        design = await admin.get("_design/after")
        validate = design.pop("validate_doc_update")
        design = await admin.put(design)
        try:
            reply = await admin.db._bulk_docs(leaves, new_edits=False)
            assert not [r for r in reply if "error" in r], reply
        finally:
            design["validate_doc_update"] = validate
            await admin.put(design)
    found = {leaf["_rev"] for d in {d["_id"] for d in leaves} for leaf in await store.leaves(d)}
    assert revs <= found, f"leaves not written: {sorted(revs - found)}"
