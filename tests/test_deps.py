"""Dependencies as pure decisions (after.deps) and the scheduler's bookkeeping of them
(after.deptrack): tables, no store, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from after import deps, schema
from after.deptrack import DepTracker
from after.errors import Unprocessable


def t(task_id: str, status: str = "waiting", **extra: Any) -> dict[str, Any]:
    return {"_id": task_id, "type": "task", "status": status, **extra}


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        (None, deps.MISSING),
        ({"_id": "task:x", "_deleted": True, "type": "task"}, deps.MISSING),
        ({"_id": "task:x", "type": "pause"}, deps.MISSING),
        (t("task:a", "done"), deps.DONE),
        (t("task:a", "err"), deps.FAILED),
        (t("task:a", "canceled"), deps.FAILED),
        (t("task:a", "waiting"), deps.WAITING),
        (t("task:a", "scheduled"), deps.WAITING),
        (t("task:a", "cancel"), deps.WAITING),
        (t("task:a", "reschedule", cron="* * * * *", runs=[]), deps.WAITING),
        (t("task:a", "reschedule", cron="* * * * *", runs=[{"status": "err"}]), deps.WAITING),
        (t("task:a", "reschedule", cron="* * * * *", runs=[{"status": "err"}, {"status": "done"}]), deps.DONE),
        (t("task:a", "err", cron="* * * * *", runs=[{"status": "done"}]), deps.DONE),
        (t("task:a", "waiting", runs=[{"status": "done"}]), deps.WAITING),  # runs count for cron tasks only
    ],
)
def test_kind_of_a_dependency(doc: dict[str, Any] | None, kind: str) -> None:
    assert deps.kind(doc) == kind


def test_ids_are_prefixed_deduplicated_and_junk_ignored() -> None:
    assert deps.ids_of({"after": ["a", "task:a", "task:b", "", 3]}) == ["task:a", "task:b"]
    assert deps.ids_of({"after": "task:a"}) == []
    assert deps.ids_of({}) == []


D = deps.DONE
F = deps.FAILED
W = deps.WAITING
M = deps.MISSING


@pytest.mark.parametrize(
    ("after", "on_failure", "kinds", "state", "waiting_on", "culprit"),
    [
        (["a"], None, {"task:a": D}, "ready", (), None),
        (["a", "b"], None, {"task:a": D, "task:b": D}, "ready", (), None),
        (["a", "b"], None, {"task:a": D, "task:b": W}, "wait", ("task:b",), None),
        (["a", "b"], None, {"task:a": D}, "unknown", ("task:b",), None),
        (["a", "b"], None, {"task:a": F, "task:b": W}, "fail", (), "task:a"),
        (["a", "b"], "err", {"task:b": F}, "fail", (), "task:b"),  # decided although a is unknown
        (["a", "b"], "run", {"task:a": F, "task:b": W}, "wait", ("task:b",), None),
        (["a", "b"], "run", {"task:a": F, "task:b": D}, "ready", (), None),
        (["a"], "run", {"task:a": M}, "fail", (), "task:a"),  # nothing will ever finish it
        (["a"], None, {"task:a": M}, "fail", (), "task:a"),
        ([], None, {}, "ready", (), None),
    ],
)
def test_readiness(after: list[str], on_failure: str | None, kinds: dict[str, str], state: str, waiting_on: tuple[str, ...], culprit: str | None) -> None:
    task = t("task:z", after=after, **({"after_failed": on_failure} if on_failure else {}))
    verdict = deps.readiness(task, kinds)
    assert (verdict.state, verdict.waiting_on if state != "unknown" else verdict.unknown, verdict.culprit) == (state, waiting_on, culprit)
    if state == "fail":
        assert culprit is not None and culprit in verdict.reason


@pytest.mark.parametrize(
    ("graph", "starts", "cycle"),
    [
        ({"a": ["b"], "b": ["c"], "c": []}, None, None),
        ({"a": ["a"]}, None, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, None, ["a", "b", "a"]),
        ({"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}, None, None),  # a diamond is no cycle
        ({"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}, ["x"], ["a", "b", "c", "a"]),
        ({"a": ["b"], "b": ["a"], "x": []}, ["x"], None),  # not reachable from the start
    ],
)
def test_find_cycle(graph: dict[str, list[str]], starts: list[str] | None, cycle: list[str] | None) -> None:
    assert deps.find_cycle(graph, starts) == cycle


def test_a_chain_of_ten_thousand_needs_no_recursion() -> None:
    graph = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(10_000)}
    assert deps.find_cycle(graph) is None
    graph["t0"] = ["t9999"]
    cycle = deps.find_cycle(graph, ["t5000"])
    assert cycle is not None and len(cycle) == 10_001


def test_check_batch_unknown_ids_and_cycles() -> None:
    found = {"task:old": t("task:old", "done")}
    ok = deps.check_batch([t("task:a", after=["task:old"]), t("task:b", after=["a", "old"])], found)
    assert ok.unknown == {} and ok.cycle is None
    bad = deps.check_batch([t("task:a", after=["task:old", "task:nope"]), t("task:b", after=["task:gone"])], found)
    assert bad.unknown == {0: ["task:nope"], 1: ["task:gone"]}
    loop = deps.check_batch([t("task:a", after=["task:b"]), t("task:b", after=["task:a"])], {})
    assert loop.cycle == ["task:a", "task:b", "task:a"]
    assert deps.check_batch([t("task:a", after=["task:a"])], {}).cycle == ["task:a", "task:a"]
    # an existing document (written straight into CouchDB) naming a new task's id
    direct = {"task:old": t("task:old", after=["task:new"])}
    assert deps.check_batch([t("task:new", after=["task:old"])], direct).cycle == ["task:new", "task:old", "task:new"]
    assert deps.outside([t("task:a", after=["task:b", "task:x"]), t("task:b", after=["x"])]) == ["task:x"]


# -- the tracker ---------------------------------------------------------------------------


def test_tracker_waits_then_releases_on_the_feed() -> None:
    tr = DepTracker()
    d = t("task:d", after=["task:b", "task:c"])
    assert sorted(tr.want(d)) == ["task:b", "task:c"]
    tr.learn(["task:b", "task:c"], {"task:b": t("task:b", "done", result=1), "task:c": t("task:c", "scheduled")})
    assert tr.judge(d).state == "wait"
    assert tr.saw(t("task:c", "scheduled")) == []  # same kind: nothing to look at again
    assert tr.saw(t("task:x", "done")) == []  # nobody waits on it
    assert tr.saw(t("task:c", "done", result=2)) == ["task:d"]
    verdict = tr.judge(d)
    assert verdict.state == "ready"
    assert verdict.outcomes == {"task:b": {"status": "done", "result": 1, "error": None}, "task:c": {"status": "done", "result": 2, "error": None}}
    assert len(tr) == 0 and not tr.known and not tr.awaited  # nothing kept once it goes


def test_tracker_keeps_a_newer_feed_state_over_a_late_read() -> None:
    tr = DepTracker()
    d = t("task:d", after=["task:a"])
    tr.want(d)
    assert tr.saw(t("task:a", "done")) == ["task:d"]  # the feed came first
    tr.learn(["task:a"], {"task:a": t("task:a", "scheduled")})  # an older read
    assert tr.judge(d).state == "ready"


def test_tracker_deleted_dependency_and_failed_one() -> None:
    tr = DepTracker()
    d = t("task:d", after=["task:a"])
    e = t("task:e", after=["task:b"], after_failed="run")
    tr.want(d)
    tr.want(e)
    tr.learn(["task:a", "task:b"], {"task:a": t("task:a"), "task:b": t("task:b")})
    assert tr.gone("task:a") == ["task:d"]
    verdict = tr.judge(d)
    assert verdict.state == "fail" and "task:a" in verdict.reason and verdict.culprit == "task:a"
    assert tr.saw(t("task:b", "err", error={"message": "x"})) == ["task:e"]
    ready = tr.judge(e)
    assert ready.state == "ready" and ready.outcomes == {"task:b": {"status": "err", "result": None, "error": {"message": "x"}}}


def test_tracker_lets_go_of_a_dependent_no_longer_pending() -> None:
    tr = DepTracker()
    tr.want(t("task:d", after=["task:a"]))
    tr.saw(t("task:d", "cancel", after=["task:a"]))
    assert len(tr) == 0 and not tr.awaited


def test_tracker_finds_a_cycle_of_direct_documents() -> None:
    tr = DepTracker()
    a, b = t("task:a", after=["task:b"]), t("task:b", after=["task:a"])
    tr.want(a)
    tr.want(b)
    tr.learn(["task:a", "task:b"], {"task:a": a, "task:b": b})
    verdict = tr.judge(a)
    assert verdict.state == "fail" and "cycle" in verdict.reason


# -- the gate: the tracker's decision for a tick's due tasks, with a fake store and clock ----

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class FakeStore:
    """``get_many`` over a dict, counting the requests (one per tick at most)."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs, self.requests = docs, 0

    async def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        self.requests += 1
        return {i: self.docs[i] for i in ids if i in self.docs}


async def test_gate_passes_ready_ends_failed_parks_waiting_and_expiring() -> None:
    store = FakeStore({"task:ok": t("task:ok", "done", result=5), "task:bad": t("task:bad", "err"), "task:slow": t("task:slow", "scheduled")})
    plain = t("task:plain")
    ready = t("task:ready", after=["task:ok"])
    failed = t("task:failed", after=["task:ok", "task:bad"], history=[])
    parked = t("task:parked", after=["task:slow"])
    expiring = t("task:expiring", after=["task:slow"], expires="2026-12-01T11:00:00Z")
    gone = t("task:gone", after=["task:slow"], expires="2026-12-01T09:00:00Z")  # past: planned, ended expired
    tr = DepTracker()
    go, ends, later = await tr.gate([plain, ready, failed, parked, expiring, gone], NOW, store.get_many, by="d1", limit=10)
    assert [d["_id"] for d in go] == ["task:plain", "task:ready", "task:gone"]
    assert ready["dependencies"] == {"task:ok": {"status": "done", "result": 5, "error": None}}
    assert [(e["_id"], e["status"], e["error"]["reason"], e["error"]["task"]) for e in ends] == [("task:failed", "err", "dependency", "task:bad")]
    assert [(d["_id"], at) for d, at in later] == [("task:expiring", datetime(2026, 12, 1, 11, 0, tzinfo=UTC).timestamp())]
    assert store.requests == 1
    # The parked ones wait on the feed: no read at the next tick, released when it says so.
    assert tr.saw(t("task:slow", "done")) == ["task:expiring", "task:parked"]
    go, ends, later = await tr.gate([parked], NOW, store.get_many, by="d1", limit=10)
    assert go == [parked] and not ends and not later and store.requests == 1


@pytest.mark.parametrize(
    ("expires", "expired"),
    [(None, False), ("2026-12-01T09:59:59Z", True), ("2026-12-01T10:00:00Z", True), ("2026-12-01T10:00:01Z", False), ("junk", False)],
)
def test_expired(expires: str | None, expired: bool) -> None:
    assert deps.expired({"expires": expires}, NOW) is expired


def test_a_never_seen_dependency_gets_a_grace_a_deleted_one_does_not() -> None:
    """A direct writer may store a dependent a moment before the task it names."""
    tr = DepTracker()
    d = t("task:d", after=["task:soon"])
    assert tr.want(d, 1000.0) == ["task:soon"]
    tr.learn(["task:soon"], {})
    early = tr.judge(d, 1000.0 + deps.MISSING_GRACE - 1)
    assert early.state == "wait" and early.recheck == 1000.0 + deps.MISSING_GRACE and early.waiting_on == ("task:soon",)
    assert tr.saw(t("task:soon", "waiting")) == ["task:d"]  # it appeared: waited on like any other
    assert tr.judge(d, 1001.0).state == "wait"
    assert tr.gone("task:soon") == ["task:d"]  # then deleted: no grace
    assert tr.judge(d, 1001.0).state == "fail"
    e = t("task:e", after=["task:never"])
    tr.want(e, 2000.0)
    tr.learn(["task:never"], {})
    late = tr.judge(e, 2000.0 + deps.MISSING_GRACE)
    assert late.state == "fail" and late.culprit == "task:never"
    assert not tr.since and not tr.never_seen and not tr.known


@pytest.mark.parametrize(
    ("was", "kind"),
    [("done", deps.DONE), ("err", deps.FAILED), ("canceled", deps.FAILED), (None, deps.MISSING), ("waiting", deps.MISSING)],
)
def test_a_tombstone_counts_as_what_the_task_ended_as(was: str | None, kind: str) -> None:
    """A purge's tombstone keeps the status (``was``); a client's deletion has none."""
    tomb = {"_id": "task:a", "_rev": "3-x", "_deleted": True, **({"was": was} if was else {})}
    assert deps.kind(tomb) == kind
    assert deps.summary(tomb) == {"status": was, "result": None, "error": None, "kind": kind}


async def test_gate_reads_tombstones_of_what_it_did_not_find() -> None:
    store = FakeStore({})
    buried = FakeStore({"task:purged": {"_id": "task:purged", "_deleted": True, "was": "done"}})
    d = t("task:d", after=["task:purged"])
    go, ends, later = await DepTracker().gate([d], NOW, store.get_many, by="d1", limit=10, buried=buried.get_many)
    assert go == [d] and d["dependencies"] == {"task:purged": {"status": "done", "result": None, "error": None}}
    assert not ends and not later and (store.requests, buried.requests) == (1, 1)


def test_after_failed_without_after_is_refused_naming_it() -> None:
    with pytest.raises(Unprocessable) as err:
        schema.task_input({"worker": "w", "job": "x", "date": 1, "after_failed": "run"})
    assert err.value.field == "after_failed"
    schema.task_input({"worker": "w", "job": "x", "date": 1, "after_failed": "run", "after": ["task:a"]})
