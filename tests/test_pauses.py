"""Pause and resume as pure decisions (after.pauses), with a fake clock: what is held, what a
pause and a resume write, what a resume yields through the tick's plan (the misfire policy,
the same code as after downtime), and the paused worker names a daemon keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from after import model, pauses, schema, timing
from after.errors import Conflict, InvalidInput

NOW = datetime(2037, 3, 1, 12, 0, 0, tzinfo=UTC)
PAUSE = {"by": "api", "at": "2037-03-01T11:00:00.000Z", "note": None}


def task(status: str = "waiting", *, worker: str = "w", paused: Any = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": f"task:{status}-{worker}", "type": "task", "worker": worker, "status": status, "date": timing.fmt(NOW), "history": []}
    if paused is not None:
        doc["paused"] = paused
    doc.update(extra)
    return doc


@pytest.mark.parametrize(
    ("doc", "names", "held"),
    [
        (task(), set(), None),
        (task(paused=PAUSE), set(), "task"),
        (task("reschedule", paused=PAUSE), set(), "task"),
        (task(worker="mailer"), {"mailer"}, "worker"),
        (task(worker="mailer"), {"other"}, None),
        (task(paused=PAUSE, worker="mailer"), {"mailer"}, "task"),
        # Only pending tasks are held: a cancel, a recovery, a running task go on.
        (task("cancel", paused=PAUSE), {"w"}, None),
        (task("scheduled", paused=PAUSE), {"w"}, None),
        (task("schedule"), {"w"}, None),
        (task("done", paused=PAUSE), set(), None),
        # null or absent: not paused.
        (task(paused=None), set(), None),
    ],
)
def test_what_is_held(doc: dict[str, Any], names: set[str], held: str | None) -> None:
    assert pauses.held(doc, names) == held


def test_split_keeps_order_and_sorts_by_reason() -> None:
    a, b, c, d = task(worker="a"), task(worker="b", paused=PAUSE), task(worker="c"), task(worker="a", status="reschedule")
    free, by_task, by_worker = pauses.split([a, b, c, d], {"c"})
    assert (free, by_task, by_worker) == ([a, d], [b], [c])


@pytest.mark.parametrize("status", ["waiting", "reschedule", "scheduled", "cancel"])
def test_pause_sets_who_when_why_and_keeps_the_status(status: str) -> None:
    out = pauses.paused_task(task(status), by="cli", now=NOW, note="db migration", limit=50)
    assert out["paused"] == {"by": "cli", "at": "2037-03-01T12:00:00.000Z", "note": "db migration"}
    assert out["status"] == status
    assert out["history"][-1] == {"status": status, "at": timing.fmt(NOW), "by": "cli", "reason": "paused: db migration"}


def test_a_claimed_task_not_yet_started_is_released() -> None:
    out = pauses.paused_task(task("schedule", lease={"id": "l1", "daemon": "d", "until": timing.fmt(NOW)}), by="api", now=NOW, note=None, limit=50)
    assert out["status"] == "waiting" and "lease" not in out and out["paused"]["by"] == "api"
    assert out["history"][-1]["reason"] == "paused" and pauses.held(out, set()) == "task"


@pytest.mark.parametrize("status", sorted(model.TERMINAL))
def test_a_finished_task_cannot_be_paused(status: str) -> None:
    with pytest.raises(Conflict) as exc:
        pauses.paused_task(task(status), by="api", now=NOW, note=None, limit=50)
    assert exc.value.field == "status" and status in exc.value.message


def test_pause_twice_keeps_the_first_and_resume_clears() -> None:
    first = pauses.paused_task(task(), by="api", now=NOW, note="one", limit=50)
    again = pauses.paused_task(first, by="cli", now=NOW + timedelta(hours=1), note="two", limit=50)
    assert again == first
    resumed = pauses.resumed_task(first, by="cli", now=NOW + timedelta(hours=2), limit=50)
    assert resumed["paused"] is None and resumed["history"][-1]["reason"] == "resumed"
    assert pauses.resumed_task(resumed, by="cli", now=NOW, limit=50) == resumed  # not paused: unchanged
    assert pauses.held(resumed, set()) is None


def cron_task(policy: str, *, grace: float | None = None) -> dict[str, Any]:
    """An every-minute cron task due at 11:00, paused from 10:59 to NOW (12:00)."""
    return task(
        "reschedule",
        cron="* * * * *",
        timezone="UTC",
        date="2037-03-01T11:00:00.000Z",
        misfire={"policy": policy, "grace": grace},
    )


@pytest.mark.parametrize(
    ("policy", "grace", "kind", "then"),
    [
        # run: every missed occurrence runs, one after the other: the next after this one is 11:01.
        ("run", None, "fire", "2037-03-01T11:01:00.000Z"),
        # coalesce: one run for all missed; the next is after the run's start (12:01).
        ("coalesce", None, "fire", "2037-03-01T12:01:00.000Z"),
        # skip: more than its grace late: missed, on to the next occurrence after now.
        ("skip", 30.0, "miss", "2037-03-01T12:01:00.000Z"),
        # skip with a grace longer than the pause: it still runs.
        ("skip", 7200.0, "fire", "2037-03-01T12:01:00.000Z"),
    ],
)
def test_a_resumed_cron_task_follows_its_misfire_policy(policy: str, grace: float | None, kind: str, then: str) -> None:
    paused = pauses.paused_task(cron_task(policy, grace=grace), by="api", now=NOW - timedelta(minutes=61), note=None, limit=50)
    # While paused, the tick plans nothing for it.
    assert pauses.split([paused], set())[0] == []
    resumed = pauses.resumed_task(paused, by="api", now=NOW, limit=50)
    free, _, _ = pauses.split([resumed], set())
    (action,) = timing.plan(NOW, free)
    assert action.kind == kind
    if kind == "miss":
        assert action.next_date is not None and timing.fmt(action.next_date) == then
    else:
        assert timing.fmt(timing.next_after_run(resumed, started=NOW, finished=NOW + timedelta(seconds=1)) or NOW) == then


@pytest.mark.parametrize(("policy", "kind"), [("run", "fire"), ("coalesce", "fire"), ("skip", "miss")])
def test_a_one_shot_task_whose_date_passed_while_paused(policy: str, kind: str) -> None:
    doc = task(date="2037-03-01T11:00:00.000Z", misfire={"policy": policy, "grace": None})
    resumed = pauses.resumed_task(pauses.paused_task(doc, by="api", now=NOW, note=None, limit=50), by="api", now=NOW, limit=50)
    (action,) = timing.plan(NOW, [resumed])
    assert action.kind == kind and action.next_date is None


def test_paused_names_follow_their_documents() -> None:
    names = pauses.PausedNames()
    doc = pauses.worker_pause_doc("mailer", by="api", now=NOW, note="smtp down")
    assert doc == {"_id": "pause:mailer", "type": "pause", "worker": "mailer", "by": "api", "at": timing.fmt(NOW), "note": "smtp down"}
    assert names.observe(doc) == ("mailer", False)
    assert "mailer" in names and names.paused("mailer") == {"by": "api", "at": timing.fmt(NOW), "note": "smtp down"}
    assert names.observe({"_id": "pause:mailer", "_deleted": True}) == ("mailer", True)
    assert "mailer" not in names
    assert names.observe({"_id": "pause:mailer", "_deleted": True}) == ("mailer", False)  # resumed once
    # Not a pause: another type, an invalid name.
    assert names.observe({"_id": "pause:x", "type": "task"}) == ("x", False) and "x" not in names
    assert names.observe({"_id": "pause:a/b", "type": "pause"}) == (None, False)
    # A direct writer's odd fields are shown as null, never passed on as they are.
    names.observe({"_id": "pause:y", "type": "pause", "by": 3, "note": ["?"]})
    assert names.paused("y") == {"by": None, "at": None, "note": None}
    # A full load: what is gone resumed.
    assert names.replace([doc]) == ["y"]
    assert set(names.names) == {"mailer"}


def test_workers_are_annotated_with_their_names_pause() -> None:
    names = pauses.PausedNames()
    names.observe(pauses.worker_pause_doc("a", by="cli", now=NOW, note=None))
    out = pauses.annotate([{"name": "a", "host": "h1"}, {"name": "a", "host": "h2"}, {"name": "b"}], names)
    assert [w["paused"] is not None for w in out] == [True, True, False]


@pytest.mark.parametrize(
    ("body", "note", "field"),
    [
        (None, None, None),
        ({}, None, None),
        ({"note": None}, None, None),
        ({"note": "why"}, "why", None),
        ({"note": 3}, None, "note"),
        ({"note": "x" * 1001}, None, "note"),
        ({"reason": "x"}, None, "reason"),
        (["x"], None, "body"),
        ("x", None, "body"),
    ],
)
def test_the_body_of_a_pause(body: Any, note: str | None, field: str | None) -> None:
    if field is None:
        assert pauses.note_of(body) == note
    else:
        with pytest.raises(InvalidInput) as exc:
            pauses.note_of(body)
        assert exc.value.field == field


@pytest.mark.parametrize(
    ("paused", "field"),
    [
        ({"by": "ops", "at": "2037-03-01T11:00:00Z", "note": "x"}, None),
        ({"by": "ops", "at": 2000000000}, None),
        (None, None),
        (True, "paused"),
        ("yes", "paused"),
        ({"by": "ops"}, "paused.at"),
        ({"at": "2037-03-01T11:00:00Z"}, "paused.by"),
        ({"by": "ops", "at": "someday"}, "paused.at"),
        ({"by": "ops", "at": "2037-03-01T11:00:00Z", "why": "x"}, "paused.why"),
    ],
)
def test_a_stored_paused_field_is_checked(paused: Any, field: str | None) -> None:
    """A document written straight into CouchDB: a malformed ``paused`` makes it invalid
    (the scheduler ends it ``err`` naming the field)."""
    doc = {**task(), "job": {"name": "noop"}, "paused": paused}
    if field is None:
        schema.stored(doc)
    else:
        with pytest.raises(InvalidInput) as exc:
            schema.stored(doc)
        assert exc.value.field == field, exc.value.message
