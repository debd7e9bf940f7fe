"""No document can stop After: documents of any shape written straight into CouchDB.

Each ends in a documented state (it runs, or it ends ``err`` reason ``invalid`` naming
the field) while the worker that received it stays up, a normal task still runs, and
the daemon shuts down cleanly. The property-based test lets hypothesis write documents
of any JSON shape into the real server; the same generator drives ``POST /tasks``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Couch, Daemon, http, wait_until
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from after import model, timing

WORKER = "victim"


def now_iso(seconds: float = 0) -> str:
    return timing.fmt(datetime.now(UTC) + timedelta(seconds=seconds))


def put_direct(couch: Couch, db: str, doc: dict[str, Any]) -> tuple[int, Any]:
    """PUT ``doc`` straight into CouchDB as its admin (what a direct writer with curl does)."""
    auth = base64.b64encode(f"{couch.admin}:{couch.admin_password}".encode()).decode()
    return http(couch.url, "PUT", f"/{db}/{doc['_id']}", doc, headers={"Authorization": f"Basic {auth}"})


def get_direct(couch: Couch, db: str, doc_id: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{couch.admin}:{couch.admin_password}".encode()).decode()
    status, doc = http(couch.url, "GET", f"/{db}/{doc_id}", headers={"Authorization": f"Basic {auth}"})
    assert status == 200, doc
    return json.loads(doc) if isinstance(doc, str) else doc  # type: ignore[no-any-return]


@pytest.fixture
def victim(start_daemon: Callable[..., Daemon]) -> Iterator[Daemon]:
    d = start_daemon()
    d.start_worker(WORKER)
    yield d


def worker_pid(d: Daemon) -> int:
    status, info = d.api("GET", f"/workers/{WORKER}")
    assert status == 200 and info["running"], info
    return int(info["pid"])


def assert_alive_and_working(d: Daemon, pid: int) -> None:
    """The worker that received the documents is the same process, and still runs tasks."""
    assert worker_pid(d) == pid
    os.kill(pid, 0)
    reply = d.create({"worker": WORKER, "date": now_iso(), "job": "noop"})
    d.wait_status(reply["id"], "done", timeout=60)
    assert d.api("GET", "/health")[0] == 200


def assert_clean_shutdown(d: Daemon) -> None:
    assert d.stop(signal.SIGTERM, timeout=60) == 0, d.log()[-3000:]
    assert "Traceback" not in d.log(), d.log()[-5000:]
    saved = json.loads((d.state / "workers.json").read_text())
    assert WORKER in saved, saved


def test_the_string_form_of_job_written_directly_runs_and_the_worker_lives(victim: Daemon, couch: Couch, dbname: str) -> None:
    """Finding 1: ``"job": "noop"`` (the REST shorthand) written straight into CouchDB."""
    pid = worker_pid(victim)
    status, _ = put_direct(couch, dbname, {"_id": "task:poison", "type": "task", "worker": WORKER, "date": now_iso(), "job": "noop", "status": "waiting"})
    assert status == 201
    doc = victim.wait_status("task:poison", {"done", "err"}, timeout=60)
    assert doc["status"] == "done", doc
    assert doc["job"] == {"name": "noop", "arguments": [], "kwargs": {}}  # normalized when claimed
    assert_alive_and_working(victim, pid)
    assert_clean_shutdown(victim)


BASE = {"type": "task", "worker": WORKER, "job": {"name": "noop"}, "status": "waiting"}


#: Direct documents of every bad shape, each with the field its error must name.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"type": None}, "type"),  # finding 7: no type, in the task: id space
    ({"status": "bogus"}, "status"),
    ({"worker": None}, "worker"),
    ({"worker": 42}, "worker"),
    ({"job": 5}, "job"),
    ({"job": {"name": "noop", "arguments": "x"}}, "job.arguments"),
    ({"date": "someday"}, "date"),
    ({"cron": "0 0 30 2 *"}, "cron"),  # finding 2: never fires
    ({"cron": "*/15 2 * 3 0#2", "timezone": "America/New_York"}, "cron"),  # every match a time New York skips
    ({"cron": "5/10 * * * *"}, "cron"),  # Debian's crontab refuses a step without a range
    ({"cron": "0 0 31 4 *", "status": "scheduled", "lease": {"id": "l", "daemon": "d", "until": "2000-01-01T00:00:00Z"}}, "cron"),
    ({"timeout": 1e12}, "timeout"),  # finding 4
    ({"retry": {"max": "3"}}, "retry.max"),
    ({"status": "scheduled", "lease": "mine"}, "lease"),
    ({"attempts": -1}, "attempts"),
]


def test_a_direct_document_that_is_not_a_task_ends_err_invalid_naming_the_field(victim: Daemon, couch: Couch, dbname: str) -> None:
    """All written at once into one daemon's database: each ends err naming its field."""
    pid = worker_pid(victim)
    expected: dict[str, str] = {}
    for i, (change, field) in enumerate(BAD):
        doc_id = f"task:bad-{i}-{field}"
        doc = {k: v for k, v in {**BASE, "_id": doc_id, "date": now_iso(), **change}.items() if v is not None}
        status, reply = put_direct(couch, dbname, doc)
        assert status == 201, reply
        expected[doc_id] = field
    for doc_id, field in expected.items():
        ended = victim.wait_status(doc_id, "err", timeout=60)
        assert ended["error"]["reason"] == "invalid", ended
        assert ended["error"]["field"] == field, ended["error"]
        assert ended["error"]["message"].startswith(field + ":"), ended["error"]
        assert ended["type"] == "task"
    # Listed as what they are, never as an unknown status.
    status, page = victim.api("GET", "/tasks?status=err&limit=100")
    assert set(expected) <= {t["_id"] for t in page["tasks"]}
    assert set(victim.api("GET", "/stats")[1]["counts"]) <= set(model.STATUSES)
    assert_alive_and_working(victim, pid)


def test_strays_written_while_no_daemon_ran_are_ended_at_start(start_daemon: Callable[..., Daemon], couch: Couch, dbname: str) -> None:
    """Documents no agenda view shows (no type, unknown status) are found by the strays view."""
    d = start_daemon()
    d.start_worker(WORKER)
    assert d.stop() == 0
    put_direct(couch, dbname, {"_id": "task:untyped", "worker": WORKER, "date": now_iso(), "job": "noop", "status": "waiting"})
    put_direct(couch, dbname, {"_id": "task:bogus", "type": "task", "worker": WORKER, "date": now_iso(), "job": "noop", "status": "bogus"})
    d = start_daemon("d1", state=d.state)
    for doc_id, field in (("task:untyped", "type"), ("task:bogus", "status")):
        ended = d.wait_status(doc_id, "err", timeout=60)
        assert ended["error"]["field"] == field, ended


# -- property-based ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
HUGE = st.sampled_from([1e12, 1e300, -1e300, 2**63, -(2**63), 1e-300, 0, -1])


def field_values(now: float) -> dict[str, st.SearchStrategy[Any]]:
    """Per field: plausible values, edge values and anything at all."""
    iso = st.floats(min_value=-30, max_value=2).map(lambda s: timing.fmt(timing.from_ts(now + s)))
    return {
        "job": st.one_of(st.sampled_from(["noop", "nope", ""]), st.sampled_from(["noop", "nope"]).map(lambda n: {"name": n}), JSON),
        "date": st.one_of(iso, st.floats(min_value=now - 30, max_value=now + 2), HUGE, st.sampled_from(["soon", "2020-01-01", "9999-12-31T23:59:59Z"]), JSON),
        "cron": st.one_of(st.sampled_from(["* * * * *", "0 0 30 2 *", "0 0 31 4 *", "nope", "*/5 * * * * *", "0 0 29 2 *"]), JSON),
        "timezone": st.one_of(st.sampled_from(["UTC", "Europe/Lisbon", "Mars/Base"]), JSON),
        "timeout": st.one_of(st.floats(min_value=0.001, max_value=60), HUGE, JSON),
        "priority": st.one_of(st.integers(-5, 5), HUGE, JSON),
        "expires": st.one_of(iso, HUGE, JSON),
        "retry": st.one_of(st.integers(0, 3), st.fixed_dictionaries({"max": st.integers(0, 2), "delay": st.floats(0, 1)}), HUGE, JSON),
        "misfire": st.one_of(st.sampled_from(["run", "skip", "coalesce", "bogus"]), JSON),
        "retention": st.one_of(st.floats(0, 1e6), HUGE, JSON),
        "overlap": st.one_of(st.sampled_from(["wait", "skip", "bogus"]), JSON),
        "status": st.one_of(st.sampled_from(["waiting", "reschedule", "schedule", "scheduled", "cancel", "done", "bogus"]), JSON),
        "type": st.one_of(st.just("task"), JSON),
        "worker": st.one_of(st.just(WORKER), st.sampled_from(["", "nobody", "a/b"]), JSON),
        "lease": st.one_of(
            st.fixed_dictionaries({"id": st.text(max_size=4), "daemon": st.text(max_size=4), "until": iso}),
            JSON,
        ),
        "attempts": st.one_of(st.integers(0, 3), HUGE, JSON),
        "history": st.one_of(st.just([]), JSON),
        "runs": JSON,
        "extra": JSON,
    }


@st.composite
def task_documents(draw: st.DrawFn, *, now: float, stored: bool = True) -> dict[str, Any]:
    """A task document: a valid one, with each field kept, dropped or replaced by anything."""
    doc: dict[str, Any] = {"worker": WORKER, "date": timing.fmt(timing.from_ts(now)), "job": {"name": "noop"}}
    if stored:
        doc.update({"type": "task", "status": "waiting"})
    for name, values in field_values(now).items():
        if not stored and name in ("status", "type", "lease", "attempts", "history", "runs"):
            continue
        choice = draw(st.sampled_from(["keep", "keep", "keep", "drop", "set"]))
        if choice == "drop":
            doc.pop(name, None)
        elif choice == "set":
            doc[name] = draw(values)
    return doc


def settled(doc: dict[str, Any], *, end: float) -> bool:
    """In a documented state: finished (and if err, with a reason that is not our bug), or
    validly pending where it is expected to wait (a cron's next run, a worker not running
    here, a date still ahead)."""
    status = doc.get("status")
    if doc.get("type") != "task" or status not in model.STATUSES:
        return False
    if status in model.TERMINAL:
        error = doc.get("error") or {}
        if status == "err":
            assert error.get("reason") not in (None, "internal"), doc
            if error["reason"] == "invalid":
                assert error.get("message") and error.get("field"), doc
        return True
    if status in model.PENDING and model.problem(doc) is None:
        due = timing.due_at(doc)
        return bool(doc.get("cron")) or doc.get("worker") != WORKER or (due is not None and due.timestamp() > end)
    return False


def write_and_settle(d: Daemon, couch: Couch, dbname: str, docs: list[dict[str, Any]]) -> None:
    ids = []
    for doc in docs:
        doc["_id"] = f"task:p-{uuid.uuid4().hex[:10]}"
        status, reply = put_direct(couch, dbname, doc)
        if status == 201:
            ids.append(doc["_id"])
        else:
            # CouchDB's own refusal (validate_doc_update: a task needs a status), a clear error.
            assert status in (400, 403), (status, reply, doc)
    end = time.time() + 90

    def all_settled() -> bool:
        return all(settled(get_direct(couch, dbname, i), end=end) for i in ids)

    wait_until(all_settled, 120, "every document written in a documented state")


@pytest.mark.slow
def test_documents_of_any_shape_never_stop_the_worker_or_the_daemon(victim: Daemon, couch: Couch, dbname: str) -> None:
    pid = worker_pid(victim)
    now = time.time()
    examples = int(os.environ.get("AFTER_TEST_POISON_EXAMPLES", "4"))

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=os.environ.get("AFTER_TEST_POISON_RANDOM") is None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(docs=st.lists(task_documents(now=now), min_size=25, max_size=25))
    def run(docs: list[dict[str, Any]]) -> None:
        write_and_settle(victim, couch, dbname, docs)

    run()
    assert_alive_and_working(victim, pid)
    assert "tick failed" not in victim.log()
    assert_clean_shutdown(victim)


@pytest.mark.slow
def test_the_same_shapes_posted_get_a_4xx_or_run(victim: Daemon) -> None:
    pid = worker_pid(victim)
    now = time.time()
    created: list[str] = []

    @settings(max_examples=150, deadline=None, database=None, derandomize=True, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(body=task_documents(now=now, stored=False))
    def post(body: dict[str, Any]) -> None:
        status, reply = victim.api("POST", "/tasks", body)
        assert status in (201, 400, 422), (status, reply, body)
        if status == 201:
            created.append(reply["id"])
        else:
            assert reply["error"] in ("invalid", "unprocessable") and reply["message"], reply
            if reply.get("field"):
                assert reply["message"].startswith(reply["field"] + ":"), reply

    post()
    assert created
    end = time.time() + 90
    wait_until(lambda: all(settled(victim.task(i), end=end) for i in created), 120, "every posted task in a documented state")
    assert_alive_and_working(victim, pid)
    assert_clean_shutdown(victim)
