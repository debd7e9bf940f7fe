"""A client's intents, one rule for both doors: every change in the table is tried
straight into CouchDB as a client (``validate_doc_update``) and checked with
:func:`after.intents.refusal` (what REST checks); both must agree, with the same message.
Then the run-twice of issue 12 end to end: a running task no client write can disturb."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIENT_PASSWORD, CLIENT_USER, WORKER_PASSWORD, WORKER_USER, Couch, Daemon, tid, wait_until

from after import intents
from after.errors import Forbidden
from after.store import Store

LEASE = {"id": "lease-1", "by": "daemon:h:1", "until": "2030-01-01T00:01:00.000Z"}
BASE: dict[str, Any] = {
    "type": "task",
    "worker": "w",
    "date": "2030-01-01T00:00:00.000Z",
    "job": {"name": "count", "arguments": ["/tmp/x"], "kwargs": {}},
    "attempts": 0,
    "history": [{"status": "waiting", "at": "2029-12-31T00:00:00.000Z", "by": "api"}],
    "updated": "2029-12-31T00:00:00.000Z",
}


def doc(status: str | None, **extra: Any) -> dict[str, Any] | None:
    if status is None:
        return None
    out = copy.deepcopy(BASE)
    out.update(status=status, **extra)
    return out


def cancel_of(old: dict[str, Any] | None) -> dict[str, Any]:
    assert old is not None
    new = copy.deepcopy(old)
    new["status"] = "cancel"
    new["updated"] = "2030-01-01T00:00:01.000Z"
    new["history"].append({"status": "cancel", "at": "2030-01-01T00:00:01.000Z", "by": "client"})
    return new


def changed(old: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    new = copy.deepcopy(old or BASE)
    new.update(fields)
    return new


DELETE = None
HELD_SCHEDULED = doc("scheduled", lease=LEASE, attempts=1, started="2030-01-01T00:00:00.000Z")
HELD_SCHEDULE = doc("schedule", lease=LEASE)
HELD_CANCEL = doc("cancel", lease=LEASE, attempts=1)

#: (case, the current document (None: none yet), what the client writes (None: a deletion), allowed?)
CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None, bool]] = [
    ("create waiting", None, doc("waiting"), True),
    ("create scheduled", None, doc("scheduled", lease=LEASE), False),
    ("create schedule", None, doc("schedule", lease=LEASE), False),
    ("create done", None, doc("done", result=1), False),
    ("create cancel", None, doc("cancel"), False),
    ("create reschedule", None, doc("reschedule"), False),
    ("edit a waiting task", doc("waiting"), changed(doc("waiting"), date="2031-01-01T00:00:00.000Z"), True),
    ("reschedule a waiting task", doc("waiting"), changed(doc("waiting"), status="reschedule"), True),
    ("cancel a waiting task", doc("waiting"), cancel_of(doc("waiting")), True),
    ("delete a waiting task", doc("waiting"), DELETE, True),
    ("claim a waiting task", doc("waiting"), changed(doc("waiting"), status="schedule", lease=LEASE), False),
    ("accept a waiting task", doc("waiting"), changed(doc("waiting"), status="scheduled", lease=LEASE), False),
    ("end a waiting task done", doc("waiting"), changed(doc("waiting"), status="done", result=1), False),
    ("end a waiting task err", doc("waiting"), changed(doc("waiting"), status="err"), False),
    ("acknowledge a cancel", doc("waiting"), changed(doc("waiting"), status="canceled"), False),
    ("a running task back to waiting", HELD_SCHEDULED, changed(HELD_SCHEDULED, status="waiting"), False),
    ("a made-up result on a running task", HELD_SCHEDULED, changed(HELD_SCHEDULED, status="done", result="forged"), False),
    ("a running task's lease", HELD_SCHEDULED, changed(HELD_SCHEDULED, lease=dict(LEASE, id="mine")), False),
    ("a running task's arguments", HELD_SCHEDULED, changed(HELD_SCHEDULED, job=dict(BASE["job"], arguments=["/etc/passwd"])), False),
    ("a running task's attempts", HELD_SCHEDULED, changed(HELD_SCHEDULED, attempts=0), False),
    ("a running task no longer a task", HELD_SCHEDULED, changed(HELD_SCHEDULED, type="note"), False),
    ("reschedule a running task", HELD_SCHEDULED, changed(HELD_SCHEDULED, status="reschedule"), False),
    ("delete a running task", HELD_SCHEDULED, DELETE, False),
    ("cancel a running task", HELD_SCHEDULED, cancel_of(HELD_SCHEDULED), True),
    ("cancel a running task, changing its lease", HELD_SCHEDULED, changed(cancel_of(HELD_SCHEDULED), lease=None), False),
    ("cancel a claimed task", HELD_SCHEDULE, cancel_of(HELD_SCHEDULE), True),
    ("a claimed task back to waiting", HELD_SCHEDULE, changed(HELD_SCHEDULE, status="waiting"), False),
    ("delete a claimed task", HELD_SCHEDULE, DELETE, False),
    ("delete a running task being canceled", HELD_CANCEL, DELETE, False),
    ("acknowledge a running task's cancel", HELD_CANCEL, changed(HELD_CANCEL, status="canceled"), False),
    ("cancel again a running task being canceled", HELD_CANCEL, cancel_of(HELD_CANCEL), True),
    ("delete a waiting task being canceled", doc("cancel"), DELETE, True),
    ("reschedule a waiting task being canceled", doc("cancel"), changed(doc("cancel"), status="reschedule"), True),
    ("acknowledge a waiting task's cancel", doc("cancel"), changed(doc("cancel"), status="canceled"), False),
    ("cancel a rescheduled task", doc("reschedule"), cancel_of(doc("reschedule")), True),
    ("a rescheduled task back to waiting", doc("reschedule"), changed(doc("reschedule"), status="waiting"), False),
    ("rerun a done task", doc("done", result=1), changed(doc("done", result=1), status="reschedule"), True),
    ("delete a done task", doc("done", result=1), DELETE, True),
    ("rewrite a done task's result", doc("done", result=1), changed(doc("done", result=1), result=2), False),
    ("a done task back to waiting", doc("done", result=1), changed(doc("done", result=1), status="waiting"), False),
    ("cancel a done task", doc("done", result=1), cancel_of(doc("done", result=1)), False),
    ("rerun a failed task", doc("err"), changed(doc("err"), status="reschedule"), True),
    ("rerun a canceled task", doc("canceled"), changed(doc("canceled"), status="reschedule"), True),
    ("an unknown status", doc("waiting"), changed(doc("waiting"), status="running"), False),
    ("fix a stray", doc("bogus"), changed(doc("bogus"), status="waiting"), True),
    ("a document that is no task", {"type": "note", "text": "a"}, {"type": "note", "text": "b"}, True),
]


@pytest.mark.parametrize(("case", "old", "new", "allowed"), CASES, ids=[c[0] for c in CASES])
def test_the_rule_in_python(case: str, old: dict[str, Any] | None, new: dict[str, Any] | None, allowed: bool) -> None:
    why = intents.refusal(old, new)
    assert (why is None) is allowed, why


def test_every_rule_has_a_message_naming_it() -> None:
    assert set(intents.MESSAGES) == set(intents.CLIENT_MAY)
    assert "cancel it" in intents.MESSAGES[intents.HELD] and "waiting" in intents.MESSAGES[intents.NEW]
    assert intents.MESSAGES["done"] == "the task is done: a client may only reschedule it or delete it"


def test_couchdb_holds_direct_writers_to_the_same_rule(couch: Couch, dbname: str) -> None:
    """Each case at once, as a client straight into CouchDB: refused (403 with the
    message of :mod:`after.intents`) exactly when the Python rule refuses it; the
    workers' and admins' writes are not the validation's business."""

    async def go() -> list[str]:
        wrong: list[str] = []
        async with (
            couch.store(dbname, as_admin=True) as admin,
            couch.store(dbname, user=CLIENT_USER, password=CLIENT_PASSWORD) as client,
            couch.store(dbname, user=WORKER_USER, password=WORKER_PASSWORD) as worker,
        ):
            for i, (case, old, new, allowed) in enumerate(CASES):
                doc_id = f"task:case{i}" if (old or new or {}).get("type") == "task" else f"note:case{i}"
                rev = None
                if old is not None:
                    rev = (await admin.put(dict(old, _id=doc_id)))["_rev"]
                why = intents.refusal(old and dict(old, _id=doc_id), new and dict(new, _id=doc_id))
                try:
                    if new is None:
                        await client.delete(doc_id, rev)
                    else:
                        await client.put(dict(new, _id=doc_id, **({"_rev": rev} if rev else {})))
                    outcome = None
                except Forbidden as exc:
                    outcome = exc.message
                if allowed != (outcome is None) or (why is not None and (outcome is None or why not in outcome)):
                    wrong.append(f"{case}: CouchDB said {outcome!r}, the rule says {why!r}")
            # The daemon's account writes what the protocol needs (here: back to waiting).
            held = await worker.put(dict(HELD_SCHEDULED or {}, _id="task:held"))
            await worker.put(dict(held, status="waiting", lease=None))
        return wrong

    assert asyncio.run(go()) == []


async def _client_writes(store: Store, task_id: str, path: Path) -> list[str]:
    """The writes of issue 12 that made a running task run twice or dropped its outcome."""
    refused = []
    forgeries = [
        ("back to waiting", lambda d: dict(d, status="waiting")),
        ("a made-up result", lambda d: dict(d, status="done", result="forged")),
        ("its lease", lambda d: dict(d, lease=dict(d["lease"], until="2099-01-01T00:00:00.000Z"))),
        ("its arguments", lambda d: dict(d, job=dict(d["job"], arguments=[str(path) + ".elsewhere"]))),
    ]
    for what, forge in forgeries:
        cur = await store.get(task_id)
        try:
            await store.put(forge(cur))
        except Forbidden:
            refused.append(what)
    cur = await store.get(task_id)
    try:
        await store.delete(task_id, cur["_rev"])
    except Forbidden:
        refused.append("delete")
    return refused


def test_a_running_task_cannot_be_made_to_run_twice_by_a_direct_writer(daemon: Daemon, couch: Couch, dbname: str, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create({"worker": "w", "date": "2000-01-01T00:00:00Z", "job": {"name": "count", "arguments": [str(out)], "kwargs": {"sleep": 3}}})
    daemon.wait_status(reply["id"], "scheduled", timeout=30)

    async def go() -> list[str]:
        async with couch.store(dbname, user=CLIENT_USER, password=CLIENT_PASSWORD) as client:
            return await _client_writes(client, reply["id"], out)

    assert asyncio.run(go()) == ["back to waiting", "a made-up result", "its lease", "its arguments", "delete"]
    # Over REST the same rule: no reschedule or delete while it runs (409, the same message).
    status, body = daemon.api("DELETE", f"/tasks/{tid(reply['id'])}")
    assert status == 409 and body["message"] == intents.MESSAGES[intents.HELD]
    done = daemon.wait_status(reply["id"], "done", timeout=30)
    assert done["result"] == reply["id"] and done["attempts"] == 1
    assert [h["status"] for h in done["history"]][-2:] == ["scheduled", "done"]
    wait_until(lambda: out.exists(), 10, "the run recorded")
    assert len(out.read_text().splitlines()) == 1


def test_the_readme_rule_table_is_the_code() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert intents.rule_table() in readme, "README's intents table differs: paste `python -m after.intents` over it"
