"""Dependencies as pure decisions (after.deps) and the scheduler's bookkeeping of them
(after.deptrack): tables, no store, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from after import deps
from after.deptrack import DepTracker


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
