"""The cluster's rules as plain data: what a write reply means, which conflicting leaf wins, who claims.

Tables of CouchDB's own reply shapes (``chttpd_db:update_doc_result_to_json/2``) and of
the leaves our protocol can leave behind, with a fixed clock.
"""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from after import quorum, timing
from after.quorum import Verdict

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
LIVE = "2026-12-01T10:00:30Z"
ENDED = "2026-12-01T09:59:00Z"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"ok": True, "id": "t", "rev": "2-a"}, Verdict.OURS),  # 201: w replicas took it
        ({"ok": True, "id": "t", "rev": "2-a", "accepted": True}, Verdict.UNCERTAIN),  # 202
        ({"id": "t", "rev": "2-a"}, Verdict.OURS),  # pouchdb-server's row without "ok"
        ({"id": "t", "error": "conflict", "reason": "Document update conflict."}, Verdict.THEIRS),
        ({"id": "t", "error": "forbidden", "reason": "status 'scheduled' can only be written by a worker"}, Verdict.REFUSED),
        ({"id": "t", "error": "unauthorized", "reason": "no"}, Verdict.REFUSED),
        ({"id": "t", "error": "internal_server_error", "reason": "boom"}, Verdict.FAILED),
        ({"id": "t", "rev": "2-a", "error": "conflict"}, Verdict.THEIRS),  # the {{Id, Rev}, Error} shape
    ],
)
def test_verdict_of_a_bulk_docs_row(row: dict[str, Any], expected: Verdict) -> None:
    assert quorum.verdict(row) is expected


@pytest.mark.parametrize(("n", "w"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (0, 1)])
def test_the_write_quorum_is_a_majority(n: int, w: int) -> None:
    assert quorum.majority(n) == w


def leaf(status: str, rev: str, *, starts: int = 0, lease: str | None = None, updated: str = "2026-12-01T09:59:59Z", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": "task:1", "_rev": rev, "type": "task", "status": status, "starts": starts, "updated": updated}
    if lease is not None:
        doc["lease"] = {"id": rev, "daemon": "daemon:x", "until": lease}
    doc["history"] = [{"status": "waiting", "at": "2026-12-01T09:00:00Z", "by": "api"}, {"status": status, "at": updated, "by": rev}]
    doc.update(extra)
    return doc


# (case, leaves, the winner's revision or None for undecided)
RESOLUTIONS = [
    ("the worker's acceptance beats a rival claim", [leaf("schedule", "2-b", lease=LIVE), leaf("scheduled", "3-a", starts=1, lease=LIVE)], "3-a"),
    ("a claim loses to a pending state of the same starts", [leaf("schedule", "2-b", lease=LIVE), leaf("reschedule", "2-a")], "2-a"),
    ("a claim loses to a finished run", [leaf("schedule", "9-z", lease=LIVE), leaf("done", "4-a", starts=1)], "4-a"),
    ("two live claims: undecided", [leaf("schedule", "2-b", lease=LIVE), leaf("schedule", "2-a", lease=LIVE)], None),
    (
        "two claims whose leases ended: the last written",
        [leaf("schedule", "2-b", lease=ENDED, updated="2026-12-01T09:58:00Z"), leaf("schedule", "2-a", lease=ENDED)],
        "2-a",
    ),
    (
        "a run that started more often wins over a later recovery without quorum",
        [leaf("done", "5-a", starts=1, updated="2026-12-01T09:50:00Z"), leaf("waiting", "9-c", starts=0, updated="2026-12-01T09:59:00Z")],
        "5-a",
    ),
    (
        "a retry that ran again beats the cut-off worker's outcome",
        [leaf("done", "9-m", starts=1), leaf("done", "7-a", starts=2, updated="2026-12-01T09:00:00Z")],
        "7-a",
    ),
    ("running under a live lease beats a finished sibling", [leaf("err", "4-b", starts=1), leaf("scheduled", "4-a", starts=1, lease=LIVE)], "4-a"),
    ("a run whose lease ended loses to the recovery", [leaf("scheduled", "4-a", starts=1, lease=ENDED), leaf("err", "4-b", starts=1)], "4-b"),
    (
        "same rank: the last write wins",
        [leaf("done", "4-b", starts=1, updated="2026-12-01T09:59:00Z"), leaf("err", "4-a", starts=1, updated="2026-12-01T09:59:30Z")],
        "4-a",
    ),
    ("same rank and time: the highest revision", [leaf("done", "4-b", starts=1), leaf("err", "4-a", starts=1)], "4-b"),
    ("a cancel beats a claim of the same starts", [leaf("schedule", "2-b", lease=LIVE), leaf("cancel", "2-a")], "2-a"),
    ("deleted leaves do not count", [leaf("schedule", "2-b", lease=LIVE), {"_id": "task:1", "_rev": "3-x", "_deleted": True}], None),
]


@pytest.mark.parametrize(("case", "leaves", "winner"), RESOLUTIONS, ids=[c for c, _, _ in RESOLUTIONS])
def test_which_leaf_wins(case: str, leaves: list[dict[str, Any]], winner: str | None) -> None:
    for order in (leaves, list(reversed(leaves))):  # the order CouchDB lists leaves in is no input
        res = quorum.resolve(order, NOW)
        if winner is None:
            assert res is None
            continue
        assert res is not None
        assert res.winner["_rev"] == winner
        assert sorted(d["_rev"] for d in res.losers) == sorted(d["_rev"] for d in leaves if d["_rev"] != winner and not d.get("_deleted"))


def test_a_cancel_that_lost_to_a_running_leaf_is_reapplied_with_both_histories() -> None:
    running = leaf("scheduled", "3-a", starts=1, lease=LIVE, updated="2026-12-01T09:59:50Z")
    cancel = leaf("cancel", "3-b", updated="2026-12-01T09:59:55Z")
    res = quorum.resolve([cancel, running], NOW, by="daemon:me")
    assert res is not None and res.winner["_rev"] == "3-a"
    assert res.rewrite["status"] == "cancel" and res.rewrite["_rev"] == "3-a"
    assert res.rewrite["lease"] == running["lease"]  # the worker running it is the one to stop it
    statuses = [h["status"] for h in res.rewrite["history"]]
    assert statuses == ["waiting", "scheduled", "cancel", "cancel"]
    assert res.rewrite["history"][-1]["by"] == "daemon:me"


def test_a_cancel_that_lost_to_a_finished_run_is_not_reapplied() -> None:
    res = quorum.resolve([leaf("cancel", "3-b"), leaf("done", "4-a", starts=1)], NOW)
    assert res is not None and res.winner["_rev"] == "4-a"
    assert res.rewrite["status"] == "done" and res.rewrite["updated"] == timing.fmt(NOW)
    assert "conflict resolved" in res.rewrite["history"][-1]["reason"]


def test_undecided_claims_are_decided_once_their_leases_end() -> None:
    claims = [leaf("schedule", "2-b", lease=LIVE), leaf("schedule", "2-a", lease=LIVE)]
    assert quorum.resolve(claims, NOW) is None
    later = NOW + timedelta(minutes=1)
    res = quorum.resolve(claims, later)
    assert res is not None and res.winner["_rev"] == "2-b"


def test_rendezvous_is_stable_spread_and_moves_only_a_leavers_share() -> None:
    daemons = ["daemon:a:1", "daemon:b:2", "daemon:c:3"]
    ids = [f"task:{i:04x}" for i in range(3000)]
    first = {t: quorum.rendezvous(t, daemons) for t in ids}
    assert first == {t: quorum.rendezvous(t, list(reversed(daemons))) for t in ids}
    share = collections.Counter(first.values())
    assert set(share) == set(daemons) and min(share.values()) > 800, share
    without_c = {t: quorum.rendezvous(t, daemons[:2]) for t in ids}
    moved = [t for t in ids if first[t] != without_c[t]]
    assert all(first[t] == "daemon:c:3" for t in moved)
    assert quorum.rendezvous("task:x", []) is None
