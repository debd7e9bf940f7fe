"""Catch-up after downtime from the changes feed (after/catchup.py): its decisions as tables,
and real daemons restarted over a backlog written straight into CouchDB while they were down."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Couch, Daemon, executions, iso_in, wait_until

from after import catchup, model, timing
from after.catchup import Checkpoint
from after.config import Settings
from after.scheduler import NoDispatcher, Scheduler
from after.store import Store

CP = Checkpoint("inst", "db", "/state", "12-abc", 1_000.0, ("task:a",), 900.0)


@pytest.mark.parametrize(
    ("cp", "now", "why"),
    [
        (None, 950.0, "no checkpoint"),
        (CP, 950.0, None),
        (Checkpoint("other", "db", "/state", 1, 1_000.0, (), 0.0), 950.0, "another database"),
        (Checkpoint("inst", "db2", "/state", 1, 1_000.0, (), 0.0), 950.0, "another database"),
        (Checkpoint("inst", "db", "/elsewhere", 1, 1_000.0, (), 0.0), 950.0, "another daemon"),
        # Its window must still reach past now + claim-ahead (2 s here): tasks beyond it may be due.
        (CP, 997.9, None),
        (CP, 998.0, "too old"),
        (CP, 5_000.0, "too old"),
    ],
)
def test_refusal(cp: Checkpoint | None, now: float, why: str | None) -> None:
    got = catchup.refusal(cp, instance="inst", database="db", owner="/state", now=now, ahead=2.0)
    assert (got is None) if why is None else (got is not None and why in got)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (catchup.encode(CP), True),
        (catchup.encode(Checkpoint("i", "d", "/s", 42, 1.5, (), 2.0)), True),
        ("", False),
        ("{torn", False),
        ("[]", False),
        (json.dumps({**json.loads(catchup.encode(CP)), "version": 0}), False),
        (json.dumps({**json.loads(catchup.encode(CP)), "seq": None}), False),
        (json.dumps({**json.loads(catchup.encode(CP)), "seq": True}), False),
        (json.dumps({**json.loads(catchup.encode(CP)), "ids": ["a", 1]}), False),
        (json.dumps({**json.loads(catchup.encode(CP)), "horizon": "soon"}), False),
        (json.dumps({**json.loads(catchup.encode(CP)), "instance": None}), False),
    ],
)
def test_decode(text: str, ok: bool) -> None:
    got = catchup.decode(text)
    assert (got is not None) is ok
    if ok and text == catchup.encode(CP):
        assert got == CP


@pytest.mark.parametrize(
    ("read", "pending", "bound", "long"),
    [(0, None, 10, False), (10, None, 10, False), (11, None, 10, True), (4, 6, 10, False), (4, 7, 10, True), (0, 11, 10, True)],
)
def test_too_long(read: int, pending: int | None, bound: int, long: bool) -> None:
    assert catchup.too_long(read, pending, bound) is long


@pytest.mark.parametrize(
    ("horizon", "now", "window", "delay"),
    [
        (1_060.0, 1_000.0, 60.0, 20.0),  # a whole window ahead: the loop's own pace
        (1_030.0, 1_000.0, 60.0, 10.0),  # the query ends a third of a window before the horizon
        (1_015.0, 1_000.0, 60.0, 0.0),  # close: at once
        (999.0, 1_000.0, 60.0, 0.0),
    ],
)
def test_first_refresh_delay(horizon: float, now: float, window: float, delay: float) -> None:
    assert catchup.first_refresh_delay(horizon, now, window) == pytest.approx(delay)


# -- the catch-up over a real store ---------------------------------------------------------------


def test_resume_reads_the_feed_page_by_page_and_keeps_only_the_window(couch: Couch, dbname: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catchup, "PAGE", 7)
    record = tmp_path / "runs.txt"

    async def run() -> None:
        async with couch.store(dbname) as store:
            cu = catchup.Catchup(store, tmp_path, ahead=2.0, window=60.0)
            instance = await catchup.database_instance(store)
            assert await catchup.database_instance(store) == instance  # written once, then read
            now = time.time()
            known = backlog(record, [now + 30])  # in the snapshot, unchanged since
            await write_all(store, known)
            seq = await store.update_seq()
            cp = Checkpoint(instance, dbname, cu.owner, seq, now + 50, (known[0]["_id"],), now)
            cu.path.write_text(catchup.encode(cp))
            due = backlog(record, [now - 40 + i for i in range(30)])
            far = backlog(record, [now + 3600])
            await write_all(store, due + far)

            sched = Scheduler(store, Settings(), NoDispatcher())
            delay = await cu.resume(sched)
            assert delay is not None and cu.how == "feed"
            assert set(sched.tasks) == {d["_id"] for d in due + known}  # the far one is beyond the window
            assert sched.horizon == pytest.approx(now + 50)
            rows, _, _ = await store.changes_page(sched.seq, limit=10)
            assert rows == []  # the follower goes on from the end of what was read

            monkeypatch.setattr(catchup, "MAX_FEED", 20)
            again = Scheduler(store, Settings(), NoDispatcher())
            again.seq = "before"
            assert await cu.resume(again) is None and cu.how == "view"
            assert again.seq == "before"  # the view path reads its own position

    asyncio.run(run())


# -- real daemons ---------------------------------------------------------------------------------


def backlog(record: Path, dues: list[float]) -> list[dict[str, Any]]:
    """Task documents as ``POST /tasks`` stores them, due at ``dues`` (epoch seconds)."""
    now = datetime.now(UTC)
    out = []
    for due in dues:
        body = {"worker": "w", "date": timing.fmt(timing.from_ts(due)), "job": {"name": "count", "arguments": [str(record)]}}
        out.append(model.new_task(body, now=now, by="test"))
    return out


async def write_all(store: Store, docs: list[dict[str, Any]]) -> None:
    """Straight into CouchDB with ``_bulk_docs``, as a program other than After would."""
    for i in range(0, len(docs), 500):
        results = await store.write_many(docs[i : i + 500])
        assert all(isinstance(r, dict) for r in results.values()), results


def bulk(couch: Couch, dbname: str, docs: list[dict[str, Any]]) -> None:
    async def write() -> None:
        async with couch.store(dbname) as store:
            await write_all(store, docs)

    asyncio.run(write())


def started_order(record: Path, due: dict[str, float]) -> list[str]:
    """Task ids in the order their jobs started (as the jobs recorded it)."""
    rows = [line.split() for line in record.read_text().splitlines() if line]
    rows.sort(key=lambda r: float(r[1]))
    return [r[0] for r in rows if r[0] in due]


def checkpointed(state: Path) -> tuple[str, ...]:
    try:
        cp = catchup.decode((state / catchup.FILENAME).read_text())
    except OSError:
        return ()
    return cp.ids if cp is not None else ()


def caught_up_by(d: Daemon, how: str, *, after: int = 0) -> None:
    text = "caught up from the changes feed" if how == "feed" else "catching up from the agenda view"
    wait_until(lambda: text in d.log()[after:], 30, f"the daemon to catch up from the {how}")


def test_backlog_written_while_down_runs_from_the_feed_oldest_first(start_daemon: Callable[..., Daemon], couch: Couch, dbname: str, tmp_path: Path) -> None:
    record = tmp_path / "runs.txt"
    state = tmp_path / "d0"
    d = start_daemon("d0", state=state)
    d.start_worker("w", concurrency=1)
    # Known before the stop and unchanged since: it comes from the checkpoint's snapshot, not the feed.
    before_date = iso_in(20)
    before = d.create({"worker": "w", "date": before_date, "job": {"name": "count", "arguments": [str(record)]}})
    caught_up_by(d, "view")
    wait_until(lambda: before["id"] in checkpointed(state), 30, "a checkpoint holding the task")
    assert d.stop() == 0

    now = time.time()
    dues = [now - 30 + 30 * i / 200 for i in range(200)]
    docs = backlog(record, dues)
    far = backlog(record, [now + 86_400])[0]  # far beyond the window: not held, not run
    shuffled = [*docs, far]
    random.Random(7).shuffle(shuffled)
    bulk(couch, dbname, shuffled)

    d2 = start_daemon("d0", state=state)
    caught_up_by(d2, "feed")
    due = {doc["_id"]: timing.parse_date(doc["date"]).timestamp() for doc in docs}
    due[before["id"]] = timing.parse_date(before_date).timestamp()
    wait_until(lambda: len(set(executions(record)) & set(due)) == len(due), 90, "every task to run")
    wait_until(lambda: d2.task(before["id"])["status"] == "done", 30, "the earlier task to finish")
    runs = executions(record)
    assert all(runs[i] == 1 for i in due), {i: n for i, n in runs.items() if n != 1}
    assert far["_id"] not in runs
    order = started_order(record, due)
    assert order == sorted(order, key=lambda i: due[i]), "not run oldest due first"
    assert d2.task(far["_id"])["status"] == "waiting"


def test_restart_with_a_checkpoint_and_nothing_new(start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    record = tmp_path / "runs.txt"
    state = tmp_path / "d0"
    d = start_daemon("d0", state=state)
    d.start_worker("w", concurrency=2)
    caught_up_by(d, "view")
    assert d.stop() == 0
    d2 = start_daemon("d0", state=state)
    caught_up_by(d2, "feed")
    # The follower goes on from where the catch-up ended: a task created now runs, once.
    task = d2.create({"worker": "w", "date": iso_in(0), "job": {"name": "count", "arguments": [str(record)]}})
    d2.wait_status(task["id"], "done", timeout=30)
    assert executions(record)[task["id"]] == 1
    assert d2.stop() == 0
    # Stopped again at once: a third start still catches up from the feed.
    mark = len(d2.log())
    d3 = start_daemon("d0", state=state)
    caught_up_by(d3, "feed", after=mark)


def test_a_checkpoint_of_another_database_or_daemon_is_ignored(
    start_daemon: Callable[..., Daemon], couch: Couch, tmp_path: Path, make_db: Callable[[], str]
) -> None:
    record = tmp_path / "runs.txt"
    elsewhere = tmp_path / "elsewhere"
    other = start_daemon("other", state=elsewhere, AFTER_DATABASE=make_db())
    caught_up_by(other, "view")
    assert other.stop() == 0
    # The same file in another daemon's state directory, on this test's database.
    d = start_with_copy(start_daemon, tmp_path / "d0", elsewhere)
    wait_until(lambda: "the checkpoint is of another database" in d.log(), 30, "the foreign checkpoint to be refused")
    d.start_worker("w", concurrency=2)
    task = d.create({"worker": "w", "date": iso_in(0), "job": {"name": "count", "arguments": [str(record)]}})
    d.wait_status(task["id"], "done", timeout=30)
    assert d.stop() == 0
    # A daemon sharing this database, with the first one's checkpoint copied in: refused too.
    t = start_with_copy(start_daemon, tmp_path / "twin", tmp_path / "d0")
    wait_until(lambda: "the checkpoint was written by another daemon" in t.log(), 30, "the other daemon's checkpoint to be refused")


def start_with_copy(start_daemon: Callable[..., Daemon], state: Path, source: Path) -> Daemon:
    """A daemon on a new state directory holding a copy of ``source``'s checkpoint."""
    state.mkdir()
    shutil.copy(source / catchup.FILENAME, state / catchup.FILENAME)
    return start_daemon(state.name, state=state)

@pytest.fixture
def make_db(couch: Couch) -> Any:
    """Factory: more fresh databases, dropped after the test."""
    from conftest import fresh_database

    made: list[Any] = []

    def make() -> str:
        cm = fresh_database(lambda name: couch.store(name, as_admin=True))
        made.append(cm)
        return cm.__enter__()

    yield make
    for cm in made:
        cm.__exit__(None, None, None)
