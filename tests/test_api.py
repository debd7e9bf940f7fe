"""The REST API against real daemons on a real CouchDB: the spec agrees with the router,
errors have one shape and the right status, never a 500 for bad input, bulk create,
filters and stable paging, revisions (ETag / If-Match), and security by default.

Most tests share one daemon (module scope: starting daemons is what costs time); each
uses its own worker names and due dates, so they do not see each other's tasks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, WORKER_PASSWORD, Couch, Daemon, daemon_env, http, tid

from after import provision
from after.api import create_app
from after.api.routes import ROUTES
from after.api.spec import build
from after.config import Settings
from after.embedded import free_port
from after.scheduler import Scheduler
from after.store import Store
from after.supervisor import Supervisor

#: The routes PRODUCT.md promises (plus bulk create, which is POST /tasks with a list, and history).
PRODUCT_ROUTES = {
    ("GET", "/"),
    ("POST", "/tasks"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("GET", "/tasks/{id}/history"),
    ("POST", "/tasks/{id}/cancel"),
    ("POST", "/tasks/{id}/reschedule"),
    ("DELETE", "/tasks/{id}"),
    ("GET", "/workers"),
    ("POST", "/workers/{name}"),
    ("DELETE", "/workers/{name}"),
    ("GET", "/workers/{name}/log"),
    ("DELETE", "/workers/{name}/log"),
    ("GET", "/events"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
}


# -- daemons of this module ---------------------------------------------------------------------


async def _create_db(couch: Couch, name: str) -> None:
    async with couch.store(name, as_admin=True) as admin:
        await provision.setup(admin, create=True)


async def _drop_db(couch: Couch, name: str) -> None:
    async with couch.store(name, as_admin=True) as admin:
        with contextlib.suppress(Exception):
            await provision.drop(admin)


def wait_answering(base: str, proc: subprocess.Popen[bytes], log: Path, *, path: str = "/health", wait: float = 30) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError):
            if http(base, "GET", path, timeout=1)[0] == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"daemon did not answer within {wait}s:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def running_daemon(couch: Couch, root: Path, **extra: str) -> Iterator[Daemon]:
    """A real ``after serve`` on its own fresh database, for a module of tests.

    Ready when ``/health`` answers (also when reads need a token); the token is then
    the configured one or the generated file.
    """
    db = f"t{uuid.uuid4().hex[:16]}"
    asyncio.run(_create_db(couch, db))
    state = root / "state"
    state.mkdir(parents=True, exist_ok=True)
    env = daemon_env(couch, db, state, free_port(), **extra)
    logfile = state / "daemon-stdout.log"
    with open(logfile, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "after", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    d = Daemon(f"http://127.0.0.1:{env['AFTER_PORT']}", state, env, proc, logfile)
    try:
        wait_answering(d.base, proc, logfile)
        yield d
    finally:
        d.stop(signal.SIGTERM, timeout=60)
        asyncio.run(_drop_db(couch, db))


@pytest.fixture(scope="module")
def api(couch: Couch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The shared daemon: a small body limit (64 KiB) so 413 is cheap to provoke."""
    with running_daemon(couch, tmp_path_factory.mktemp("api"), AFTER_SERVER_MAX_BODY_BYTES="65536") as d:
        yield d


@pytest.fixture(scope="module")
def strict(couch: Couch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with a configured token, protected reads and one CORS origin."""
    with running_daemon(
        couch,
        tmp_path_factory.mktemp("strict"),
        AFTER_API_TOKEN="configured-token-" + uuid.uuid4().hex,
        AFTER_SERVER_PROTECT_READS="true",
        AFTER_SERVER_CORS_ORIGINS="http://ui.example",
    ) as d:
        yield d


def is_error(body: Any, code: str, field: str | None = None) -> bool:
    """The one error shape: {"error", "message", "field"?}, with no traceback in it."""
    assert isinstance(body, dict), body
    assert set(body) <= {"error", "message", "field"} and isinstance(body.get("message"), str), body
    assert "Traceback" not in body["message"] and 'File "' not in body["message"], body
    assert body["error"] == code, body
    if field is not None:
        assert body.get("field") == field, body
    return True


def send(d: Daemon, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    return d.api(method, path, body, **kw)


def raw_post(d: Daemon, path: str, data: bytes, ctype: str = "application/json", **kw: Any) -> tuple[int, Any]:
    return http(d.base, "POST", path, raw=data, token=d.token, headers={"Content-Type": ctype}, **kw)


def wait_for(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


# -- the spec ----------------------------------------------------------------------------------------


def test_router_and_spec_agree(tmp_path: Path) -> None:
    """Every route the application serves is in /openapi.json and vice versa (static UI files aside)."""
    settings = Settings(state_dir=str(tmp_path), couchdb_url="http://127.0.0.1:9")
    store = Store(settings.couchdb_url, "unused")
    supervisor = Supervisor(settings, worker_settings={}, on_lost=_no_loss, on_change=lambda name: None)
    app = create_app(settings, store=store, supervisor=supervisor, scheduler=Scheduler(store, settings, supervisor), token="t")
    routed = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD" and not r.resource.canonical.startswith("/ui")
    }
    spec = build(ROUTES)
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert routed == documented
    assert documented >= PRODUCT_ROUTES
    for path, ops in spec["paths"].items():
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path


async def _no_loss(worker: str, docs: list[dict[str, Any]]) -> None:
    return None


def test_openapi_and_docs_are_served(api: Daemon) -> None:
    status, spec = http(api.base, "GET", "/openapi.json")
    assert status == 200
    assert spec["openapi"] == "3.1.0"
    assert spec == build(ROUTES)
    write_ops = [op for ops in spec["paths"].values() for m, op in ops.items() if m in ("post", "delete")]
    assert write_ops and all(op["security"] == [{"bearer": []}] and "401" in op["responses"] for op in write_ops)
    status, page = http(api.base, "GET", "/docs")
    assert status == 200 and page.startswith("<!doctype html>")
    for path in spec["paths"]:
        assert path in page


# -- errors ------------------------------------------------------------------------------------------


def test_errors_have_one_shape_and_the_right_status(api: Daemon) -> None:
    status, body = raw_post(api, "/tasks", b"{not json")
    assert status == 400 and is_error(body, "invalid", "body")
    status, body = raw_post(api, "/tasks", b'{"worker": "e", "job": "noop", "date": NaN}')
    assert status == 400 and is_error(body, "invalid", "body")

    task = {"worker": "e", "date": "2032-01-01", "job": "noop"}
    status, body = send(api, "POST", "/tasks", task, token="")
    assert status == 401 and is_error(body, "unauthorized")
    status, body = send(api, "POST", "/tasks", task, token="not-the-token")
    assert status == 401 and is_error(body, "unauthorized")

    status, body = send(api, "GET", "/no/such/route")
    assert status == 404 and is_error(body, "not_found")
    status, body = send(api, "GET", "/tasks/task:nosuch")
    assert status == 404 and is_error(body, "not_found")

    status, body = send(api, "PATCH", "/tasks")
    assert status == 405 and is_error(body, "method_not_allowed")

    status, body = send(api, "POST", "/tasks", {**task, "id": "dup"})
    assert status == 201
    status, body = send(api, "POST", "/tasks", {**task, "id": "dup"})
    assert status == 409 and is_error(body, "conflict", "id")
    # Nothing of a bulk create is stored when one id exists.
    status, body = send(api, "POST", "/tasks", [{**task, "id": "fresh"}, {**task, "id": "dup"}])
    assert status == 409 and is_error(body, "conflict", "id")
    assert send(api, "GET", "/tasks/task:fresh")[0] == 404

    status, body = raw_post(api, "/tasks", b'{"worker": "e", "job": "noop", "date": "2032-01-01", "job": {"kwargs": {"x": "' + b"x" * 70_000 + b'"}}}')
    assert status == 413 and is_error(body, "too_large")
    assert "server.max_body_bytes" in body["message"]
    status, body = raw_post(api, "/tasks", b"worker=e", ctype="text/plain")
    assert status == 415 and is_error(body, "unsupported_media_type")

    status, body = send(api, "POST", "/tasks", {**task, "cron": "0 3 * * *", "timezone": "Mars/Olympus_Mons"})
    assert status == 422 and is_error(body, "unprocessable", "timezone")
    status, body = send(api, "POST", "/tasks", {**task, "cron": "61 * * * *"})
    assert status == 422 and is_error(body, "unprocessable", "cron")
    # Issue 13: never fires in its zone (every match in New York's skipped hour), with a date or without.
    for when in ({}, {"date": "2032-01-01"}):
        status, body = send(api, "POST", "/tasks", {**task, **when, "cron": "*/15 2 * 3 0#2", "timezone": "America/New_York"})
        assert status == 422 and is_error(body, "unprocessable", "cron") and "never fires" in body["message"], body


def test_unknown_job_for_a_worker_that_declares_its_jobs_is_422(api: Daemon) -> None:
    api.start_worker("declared", jobs=["testjobs"])
    _, info = send(api, "GET", "/workers/declared")
    assert "noop" in info["jobs"] and "count" in info["jobs"]
    status, body = send(api, "POST", "/tasks", {"worker": "declared", "date": "2032-01-01", "job": {"name": "nosuchjob"}})
    assert status == 422 and is_error(body, "unprocessable", "job.name")
    assert "'nosuchjob'" in body["message"] and "noop" in body["message"]
    good = {"worker": "declared", "date": "2032-01-01", "job": "noop"}
    status, body = send(api, "POST", "/tasks", [good, {**good, "job": "nosuchjob"}])
    assert status == 422 and is_error(body, "unprocessable", "[1].job.name")
    # A worker this daemon does not run may be elsewhere: its tasks are accepted.
    assert send(api, "POST", "/tasks", {"worker": "elsewhere", "date": "2032-01-01", "job": "nosuchjob"})[0] == 201
    send(api, "DELETE", "/workers/declared")


def test_bad_input_never_gets_a_5xx(api: Daemon) -> None:
    """Odd and hostile input gets a 4xx in the one shape; the daemon logs no traceback."""
    _, created = send(api, "POST", "/tasks", {"worker": "odd", "date": "2032-01-01", "job": "noop"})
    path = f"/tasks/{tid(created['id'])}"
    # A worker's name becomes a file name (its log): never a path.
    for method, url in (
        ("GET", "/workers/..%2Fdaemon-stdout/log"),
        ("DELETE", "/workers/..%2Fdaemon-stdout/log"),
        ("GET", "/workers/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd/log"),
        ("GET", "/workers/a%00b/log"),
        ("GET", "/workers/a%0A"),
        ("POST", "/workers/a%0A"),
    ):
        status, reply = send(api, method, url)
        assert status == 400 and is_error(reply, "invalid", "name"), (method, url, reply)
    cases: list[tuple[str, str, Any, dict[str, str] | None]] = [
        ("POST", "/workers/w1", {"jobs": ["../../evil"]}, None),
        ("POST", "/workers/w1", {"concurrency": "many"}, None),
        ("POST", "/workers/w1", [1, 2], None),
        ("DELETE", "/workers/w1?timeout=-1", None, None),
        ("GET", "/tasks?cursor=!!!", None, None),
        ("GET", "/tasks?cursor=W10", None, None),
        ("GET", "/tasks?from=someday", None, None),
        ("GET", "/tasks?to=1e300", None, None),
        ("GET", "/tasks?limit=0", None, None),
        ("GET", "/tasks?limit=ten", None, None),
        ("GET", "/tasks?status=bogus", None, None),
        ("GET", "/tasks/%00", None, None),
        ("GET", "/tasks/_design%2Fafter", None, None),
        ("GET", "/events", None, {"Last-Event-ID": "not-an-id"}),
        ("POST", "/tasks", {"worker": "odd\n", "date": "2032-01-01", "job": "noop"}, None),
        ("POST", "/tasks", {"worker": "odd", "date": 1e300, "job": "noop"}, None),
        ("POST", "/tasks", {"worker": "odd", "date": "2032-01-01", "job": "noop", "retry": {"max": -1}}, None),
        ("POST", "/tasks", {"worker": "odd", "date": "2032-01-01", "job": "noop", "timezone": "Europe/Lisbon"}, None),
        ("POST", "/tasks", {"worker": "odd", "job": "noop", "cron": "* * *"}, None),
        ("POST", "/tasks", {"worker": "odd", "date": "2032-01-01", "job": "noop", "id": "_design/after"}, None),
        ("POST", "/tasks", "just a string", None),
        ("POST", "/tasks", [], None),
        ("POST", "/tasks", [None], None),
        ("POST", path + "/reschedule", {"date": "nope"}, None),
        ("POST", path + "/reschedule", {"when": "2033-01-01"}, None),
        ("POST", path + "/reschedule", None, None),
        ("DELETE", path, None, {"If-Match": '"1-stale"'}),
    ]
    for method, url, body, headers in cases:
        status, reply = send(api, method, url, body, headers=headers)
        assert 400 <= status < 500, (method, url, body, status, reply)
        assert is_error(reply, reply["error"])
    deep = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB limit, far over any recursion limit
    status, reply = raw_post(api, "/tasks", deep)
    assert status == 400 and is_error(reply, "invalid", "body")
    # The traversal did not touch the daemon's own files, and nothing failed inside.
    assert (api.state / "daemon-stdout.log").stat().st_size > 0
    assert "Traceback" not in api.log()
    assert send(api, "GET", "/health")[0] == 200


# -- tasks -------------------------------------------------------------------------------------------


def test_bulk_create_filters_and_stable_paging(api: Daemon) -> None:
    base = 2_000_000_000  # 2033-05-18: this test's tasks, and only them, are due in this range
    bodies = [{"id": f"page-{i:02d}", "worker": "pa" if i % 2 else "pb", "date": base + 3600 * i, "job": "sleep" if i % 3 == 0 else "noop"} for i in range(25)]
    status, created = send(api, "POST", "/tasks", bodies)
    assert status == 201
    assert created["ids"] == [f"task:page-{i:02d}" for i in range(25)]
    assert [t["id"] for t in created["tasks"]] == created["ids"] and all(t["rev"].startswith("1-") for t in created["tasks"])
    rng = {"from": "2033-05-18T00:00:00Z", "to": base + 3600 * 30}

    def listing(**params: Any) -> tuple[list[str], str | None]:
        q = urllib.parse.urlencode({**rng, **params})
        status, body = send(api, "GET", f"/tasks?{q}")
        assert status == 200, body
        return [t["_id"] for t in body["tasks"]], body["next"]

    def all_pages(**params: Any) -> list[str]:
        ids, nxt = listing(**params)
        seen = list(ids)
        while nxt:
            ids, nxt = listing(cursor=nxt, **params)
            seen += ids
        return seen

    everything = [f"task:page-{i:02d}" for i in range(25)]
    assert listing(limit=100) == (everything, None)
    assert all_pages(limit=4) == everything
    assert all_pages(limit=3, worker="pa") == [t for i, t in enumerate(everything) if i % 2]
    assert all_pages(limit=2, job="sleep") == [t for i, t in enumerate(everything) if i % 3 == 0]
    assert listing(worker="pb", job="sleep")[0] == [t for i, t in enumerate(everything) if i % 2 == 0 and i % 3 == 0]
    assert listing(**{"from": base + 3600 * 20})[0] == everything[20:]
    assert listing(to=base + 3600 * 2)[0] == everything[:3]
    # An exact page: no cursor that leads to an empty page.
    assert listing(limit=25) == (everything, None)

    # Status is an index range too; cancel three and wait for the tick to acknowledge them.
    for i in (3, 4, 5):
        assert send(api, "POST", f"/tasks/task:page-{i:02d}/cancel")[0] == 200
    canceled = everything[3:6]
    wait_for(lambda: listing(status="canceled")[0] == canceled, what="three tasks canceled")
    assert all_pages(limit=2, status="waiting") == everything[:3] + everything[6:]
    assert listing(status="canceled", worker="pa")[0] == ["task:page-03", "task:page-05"]

    # Paging is stable: the last task of a page deleted and the next one changed between
    # two requests shift nothing (offset paging would skip one).
    first, nxt = listing(limit=8)
    assert first == everything[:8]
    assert send(api, "DELETE", "/tasks/task:page-07")[0] == 200
    assert send(api, "POST", "/tasks/task:page-08/reschedule", {"date": base + 3600 * 8})[0] == 200
    second, _ = listing(limit=8, cursor=nxt)
    assert second == everything[8:16]
    # A cursor belongs to its filters.
    status, body = send(api, "GET", f"/tasks?{urllib.parse.urlencode({**rng, 'worker': 'pa', 'cursor': nxt})}")
    assert status == 400 and is_error(body, "invalid", "cursor")


def test_one_task_history_and_revisions(api: Daemon) -> None:
    status, created = send(api, "POST", "/tasks", {"id": "rev-1", "worker": "nobody", "date": "2034-01-01T10:00:00+01:00", "job": "noop"})
    assert status == 201 and created["id"] == "task:rev-1"
    assert created["task"]["date"] == "2034-01-01T09:00:00.000Z"
    assert "no worker named 'nobody'" in created["task"]["notice"]
    status, doc = send(api, "GET", "/tasks/rev-1")  # the task: prefix may be left out
    assert status == 200 and doc["_id"] == "task:rev-1" and doc["status"] == "waiting"
    etag = _headers(api.base, "GET", "/tasks/task:rev-1", {})["ETag"]
    assert etag == f'"{doc["_rev"]}"'

    status, body = send(api, "POST", "/tasks/task:rev-1/cancel", headers={"If-Match": '"1-0000"'})
    assert status == 409 and is_error(body, "conflict", "rev")
    assert "stale revision" in body["message"]
    status, doc = send(api, "POST", "/tasks/task:rev-1/reschedule", {"date": "2034-02-01"}, headers={"If-Match": etag})
    assert status == 200 and doc["status"] == "reschedule" and doc["date"] == "2034-02-01T00:00:00.000Z"
    status, body = send(api, "DELETE", "/tasks/task:rev-1", headers={"If-Match": etag})
    assert status == 409 and is_error(body, "conflict", "rev")

    status, hist = send(api, "GET", "/tasks/task:rev-1/history")
    assert status == 200 and hist["id"] == "task:rev-1"
    assert [(h["status"], h["by"]) for h in hist["history"]] == [("waiting", "api"), ("reschedule", "api")]
    assert send(api, "GET", "/tasks/task:nosuch/history")[0] == 404

    status, body = send(api, "DELETE", "/tasks/task:rev-1", headers={"If-Match": f'"{doc["_rev"]}"'})
    assert status == 200 and body == {"deleted": "task:rev-1"}
    assert send(api, "GET", "/tasks/task:rev-1")[0] == 404


# -- security ----------------------------------------------------------------------------------------

#: A working request for every write route, in an order where each can succeed.
WRITE_EXAMPLES: list[tuple[str, str, str, Any, int]] = [
    ("post", "/tasks", "/tasks", {"id": "sec-1", "worker": "sec", "date": "2035-01-01", "job": "noop"}, 201),
    ("post", "/tasks/{id}/backfill", "/tasks/task:sec-1/backfill", {"from": "2026-01-01", "to": "2026-01-02"}, 409),  # one-shot: past the check
    ("post", "/tasks/{id}/cancel", "/tasks/task:sec-1/cancel", None, 200),
    ("post", "/tasks/{id}/reschedule", "/tasks/task:sec-1/reschedule", {"date": "2035-02-01"}, 200),
    ("post", "/tasks/{id}/pause", "/tasks/task:sec-1/pause", {"note": "sec"}, 200),
    ("post", "/tasks/{id}/resume", "/tasks/task:sec-1/resume", None, 200),
    ("post", "/workers/{name}/pause", "/workers/sec/pause", None, 200),
    ("post", "/workers/{name}/resume", "/workers/sec/resume", None, 200),
    ("delete", "/tasks/{id}", "/tasks/task:sec-1", None, 200),
    ("post", "/workers/{name}", "/workers/sec", {"concurrency": 1}, 201),
    ("delete", "/workers/{name}/log", "/workers/sec/log", None, 200),
    ("delete", "/workers/{name}", "/workers/sec", None, 200),
    ("post", "/tokens", "/tokens", {"scope": "read", "label": "sec"}, 201),
    ("delete", "/tokens/{id}", "/tokens/0123456789abcdef", None, 404),  # no such token: past the credentials check
]


def test_every_write_route_needs_the_token(api: Daemon) -> None:
    spec = build(ROUTES)
    # The remote worker protocol's routes are held to the token in tests/test_remote.py.
    worker_calls = {(r.method.lower(), r.path) for r in ROUTES if r.worker}
    writes = {(m, p) for p, ops in spec["paths"].items() for m in ops if m not in ("get", "head")} - worker_calls
    assert writes == {(m, p) for m, p, *_ in WRITE_EXAMPLES}, "a write route has no example here"
    token = api.token
    for method, _template, path, body, ok in WRITE_EXAMPLES:
        for bad in ({"token": ""}, {"token": "wrong"}, {"token": token + "x"}, {"token": None, "headers": {"Authorization": f"Basic {token}"}}):
            status, reply = http(api.base, method.upper(), path, body, **bad)
            assert status == 401, (method, path, bad, reply)
            assert is_error(reply, "unauthorized")
        if path == "/tasks":
            assert send(api, "GET", "/tasks/task:sec-1")[0] == 404  # the refused create wrote nothing
        status, reply = http(api.base, method.upper(), path, body, token=token)
        assert status == ok, (method, path, reply)
    # The token is in no log line: not the daemon's, not a worker's.
    logs = [api.logfile, *sorted((api.state / "logs").glob("*.log"))]
    assert len(logs) > 1
    for log in logs:
        assert token not in log.read_text(errors="replace"), log


def test_no_route_echoes_couchdb_credentials(api: Daemon) -> None:
    secrets = [WORKER_PASSWORD, base64.b64encode(f"after:{WORKER_PASSWORD}".encode()).decode()]
    api.start_worker("creds")
    _, created = send(api, "POST", "/tasks", {"worker": "creds", "date": time.time(), "job": "noop"})
    api.wait_status(created["id"], "done")
    paths = ["/", "/tasks", f"/tasks/{tid(created['id'])}", f"/tasks/{tid(created['id'])}/history", "/workers", "/workers/creds"]
    paths += ["/workers/creds/log", "/health", "/metrics", "/openapi.json", "/docs", "/stats", "/tasks/nosuch", "/tasks?from=bad"]
    for path in paths:
        status, body = send(api, "GET", path)
        assert status < 500, path
        text = str(body)
        for secret in secrets:
            assert secret not in text, path
    send(api, "DELETE", "/workers/creds")


def test_default_bind_is_loopback_and_cors_is_off(api: Daemon) -> None:
    port = int(api.base.rsplit(":", 1)[1])
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    ours = [f[1] for f in listening if f[3] == "0A" and int(f[1].split(":")[1], 16) == port]
    assert ours == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
    assert Settings().server_host == "127.0.0.1"
    status, _ = http(api.base, "GET", "/health", headers={"Origin": "http://ui.example"})
    assert status == 200
    headers = _headers(api.base, "GET", "/health", {"Origin": "http://ui.example"})
    assert "Access-Control-Allow-Origin" not in headers
    status, body = http(api.base, "OPTIONS", "/tasks", headers={"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"})
    assert status == 405 and is_error(body, "method_not_allowed")


def _headers(base: str, method: str, path: str, headers: dict[str, str]) -> dict[str, str]:
    import http.client

    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return {k: v for k, v in resp.getheaders()} | {":status": str(resp.status)}
    finally:
        conn.close()


def test_binding_beyond_loopback_without_a_token_refuses_to_start(couch: Couch, dbname: str, tmp_path: Path) -> None:
    env = daemon_env(couch, dbname, tmp_path / "state", free_port(), AFTER_HOST="0.0.0.0")
    res = subprocess.run([sys.executable, "-m", "after", "serve"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 1
    assert "refusing to listen on 0.0.0.0" in res.stderr
    assert "server.api_token" in res.stderr and "AFTER_API_TOKEN" in res.stderr
    assert not (tmp_path / "state" / "token").exists()


def test_protected_reads_configured_token_and_cors(strict: Daemon) -> None:
    token = strict.env["AFTER_API_TOKEN"]
    assert not (strict.state / "token").exists()  # configured: no generated token file
    for path in ("/", "/tasks", "/workers", "/metrics", "/events", "/stats"):
        status, body = http(strict.base, "GET", path)
        assert status == 401 and is_error(body, "unauthorized"), path
    for path in ("/health", "/openapi.json", "/docs"):
        assert http(strict.base, "GET", path)[0] == 200, path
    assert http(strict.base, "GET", "/tasks", token=token)[0] == 200
    status, _ = http(strict.base, "POST", "/tasks", {"worker": "w", "date": "2035-01-01", "job": "noop"}, token=token)
    assert status == 201

    allowed = _headers(strict.base, "GET", "/health", {"Origin": "http://ui.example"})
    assert allowed["Access-Control-Allow-Origin"] == "http://ui.example"
    refused = _headers(strict.base, "GET", "/health", {"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused
    preflight = _headers(
        strict.base,
        "OPTIONS",
        "/tasks",
        {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert preflight[":status"] == "204"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    # An error answer to an allowed origin is readable by its page too.
    assert _headers(strict.base, "GET", "/tasks", {"Origin": "http://ui.example"})["Access-Control-Allow-Origin"] == "http://ui.example"
    assert token not in strict.log()
