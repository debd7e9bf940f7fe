"""No silent stop (issue 12): each way the store can fail a running daemon is caused for
real while tasks are due (the design document deleted, ``_security`` shutting the worker
role out, a 5xx or a malformed answer), and the daemon says so (/health 503 naming the
cause, one log line, /metrics), keeps retrying, and runs every task once when the cause
is repaired, without a restart. Nothing is mocked: the real server, a real daemon."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import Couch, CuttableLink, Daemon, executions, wait_until

from after import model, timing
from after.design import DESIGN
from after.errors import NotFound
from after.provision import CLIENT_ROLE

#: A window of 6 s: refreshed every 2 s, so a task due 10 s ahead needs a refresh to run.
FAST = {"AFTER_SCHEDULER_WINDOW_SECONDS": "6"}
OPEN = {"admins": {"names": [], "roles": [model.WORKER_ROLE]}, "members": {"names": [], "roles": [model.WORKER_ROLE, CLIENT_ROLE]}}
SHUT = {"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": ["nobody"]}}


def set_security(couch: Couch, db: str, security: dict) -> None:
    async def put() -> None:
        async with couch.store(db, as_admin=True) as admin:
            await admin.db._put_security(security)

    asyncio.run(put())


def delete_design(couch: Couch, db: str) -> None:
    async def delete() -> None:
        async with couch.store(db, as_admin=True) as admin:
            await admin.delete(f"_design/{DESIGN}")

    asyncio.run(delete())


def design_exists(couch: Couch, db: str) -> bool:
    async def get() -> bool:
        async with couch.store(db, as_admin=True) as admin:
            try:
                await admin.get(f"_design/{DESIGN}")
            except NotFound:
                return False
            return True

    return asyncio.run(get())


def create(d: Daemon, out: Path, delays: list[float]) -> list[str]:
    now = time.time()
    body = [{"worker": "w", "date": now + s, "job": {"name": "count", "arguments": [str(out)]}} for s in delays]
    return list(d.create(body)["ids"])


def write_tasks(couch: Couch, db: str, out: Path, delays: list[float]) -> list[str]:
    """Tasks written straight into the database (as admin: whatever the daemon can do now)."""
    now = datetime.now(UTC)
    docs = [
        model.new_task({"worker": "w", "date": timing.fmt(now + timedelta(seconds=s)), "job": {"name": "count", "arguments": [str(out)]}}, now=now)
        for s in delays
    ]

    async def write() -> None:
        async with couch.store(db, as_admin=True) as admin:
            for doc in docs:
                await admin.put(doc)

    asyncio.run(write())
    return [doc["_id"] for doc in docs]


def reasons(d: Daemon) -> tuple[int, list[str]]:
    status, body = d.api("GET", "/health")
    return status, body["reasons"]


def unhealthy_with(d: Daemon, cause: str) -> Callable[[], bool]:
    def check() -> bool:
        status, why = reasons(d)
        return status == 503 and any(cause in r for r in why)

    return check


def metric(d: Daemon, name: str, **labels: str) -> float:
    status, text = d.api("GET", "/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def all_ran_once(d: Daemon, out: Path, ids: list[str], timeout: float, what: str) -> None:
    try:
        wait_until(lambda: set(executions(out)) >= set(ids), timeout, what)
    except AssertionError as exc:
        missing = [d.task(i) for i in ids if i not in executions(out)]
        raise AssertionError(f"{exc}; not run: {missing}; stats {d.api('GET', '/stats')[1]}:\n{d.log()[-6000:]}") from None
    wait_until(lambda: all(d.task(i)["status"] == "done" for i in ids), 30, "their outcomes written")
    ran = executions(out)
    assert all(ran[i] == 1 for i in ids), {i: ran[i] for i in ids}


def test_a_deleted_design_document_then_a_closed_security_stop_nothing(start_daemon: Callable[..., Daemon], couch: Couch, dbname: str, tmp_path: Path) -> None:
    d = start_daemon(**FAST)
    d.start_worker("w")
    out = tmp_path / "runs"

    # (a) _design/after deleted while tasks are due: some within the window, some beyond it.
    first = create(d, out, [2, 4, 9, 13])
    delete_design(couch, dbname)
    wait_until(lambda: "the design document _design/after was missing: written again" in d.log(), 20, "the daemon to write the design document again")
    assert design_exists(couch, dbname)
    assert d.log().count("window loop: design document missing") == 1, d.log()[-3000:]
    assert metric(d, "after_loop_errors_total", loop="window") >= 1
    all_ran_once(d, out, first, 40, "every task to run after the design document was repaired")
    wait_until(lambda: reasons(d)[0] == 200, 20, "/health to be ok again")

    # (b) _security shuts the worker role out while tasks are due (before and beyond the window).
    # One task runs when the door shuts: its worker holds its outcome and tells the daemon.
    running = d.create({"worker": "w", "date": time.time(), "job": {"name": "count", "arguments": [str(out)], "kwargs": {"sleep": 4}}})["id"]
    d.wait_status(running, "scheduled", timeout=20)
    # Due later than the claim-ahead (2 s) plus a margin: still waiting when the door shuts.
    created = time.time()
    second = create(d, out, [6, 9, 13])
    set_security(couch, dbname, SHUT)
    try:
        wait_until(unhealthy_with(d, "access forbidden by _security"), 20, "/health to name the forbidden access")
        wait_until(unhealthy_with(d, "worker w: writes loop failing: access forbidden by _security"), 20, "/health to name the worker's held writes")
        wait_until(lambda: metric(d, "after_loop_failing", loop="heartbeat", cause="access forbidden by _security") == 1, 20, "the metric")
        # Nothing to wait for but time: two of them are due by now and every loop retries.
        time.sleep(max(1.0, created + 11 - time.time()))
        assert not set(executions(out)) & set(second)
        assert d.log().count("heartbeat loop: access forbidden by _security") == 1, d.log()[-3000:]
        assert metric(d, "after_loop_errors_total", loop="heartbeat") >= 2
    finally:
        set_security(couch, dbname, OPEN)
    all_ran_once(d, out, [running, *second], 40, "every task to run once _security lets the worker role in again")
    wait_until(lambda: reasons(d)[0] == 200, 20, "/health to be ok again")
    assert "heartbeat loop works again" in d.log()
    assert d.proc.poll() is None


def test_a_daemon_started_while_security_shuts_it_out_comes_up_and_works_once_let_in(
    start_daemon: Callable[..., Daemon], couch: Couch, dbname: str, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    ids = write_tasks(couch, dbname, out, [1, 3, 12])
    set_security(couch, dbname, SHUT)
    try:
        d = start_daemon(**FAST)
        wait_until(unhealthy_with(d, "access forbidden by _security"), 20, "/health to name the forbidden access")
        assert d.proc.poll() is None
        d.start_worker("w")
        time.sleep(3)
        assert not executions(out)
    finally:
        set_security(couch, dbname, OPEN)
    all_ran_once(d, out, ids, 40, "every task to run once let in")
    wait_until(lambda: reasons(d)[0] == 200, 20, "/health to be ok again")


def test_unreachable_at_start_then_a_5xx_then_a_malformed_answer_are_named_and_outlived(
    start_daemon: Callable[..., Daemon], couch: Couch, dbname: str, link: CuttableLink, tmp_path: Path
) -> None:
    """The daemon starts while CouchDB is out of reach (it comes up, 503), then CouchDB
    answers 500, then something answers garbage; once CouchDB is back, every task due
    meanwhile runs once."""
    out = tmp_path / "runs"
    ids = write_tasks(couch, dbname, out, [2, 5, 12])
    link.cut()
    try:
        d = start_daemon(AFTER_COUCHDB_URL=link.via(couch.url_for()), **FAST)
        d.start_worker("w")
        wait_until(unhealthy_with(d, "CouchDB unreachable"), 20, "/health to name the unreachable store")
        link.answer_with("500 Internal Server Error", b'{"error":"unknown_error","reason":"function_clause"}')
        wait_until(unhealthy_with(d, "CouchDB answered 5xx"), 20, "/health to name the 5xx")
        link.answer_with("200 OK", b"<html>a proxy's error page</html>")
        wait_until(unhealthy_with(d, "malformed answer"), 20, "/health to name the malformed answer")
        time.sleep(3)  # retried meanwhile, logged once
        assert d.log().count("load loop: malformed answer") == 1, d.log()[-3000:]
        assert not executions(out)
    finally:
        link.restore()
    all_ran_once(d, out, ids, 40, "every task to run once CouchDB answers again")
    wait_until(lambda: reasons(d)[0] == 200, 20, "/health to be ok again")
