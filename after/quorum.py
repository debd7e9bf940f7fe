"""What CouchDB's write replies and a document's conflicting leaves mean for After. Pure code.

On a CouchDB 3 cluster a write goes to every replica of the document's shard at once;
each replica takes the first edit of a revision it sees and refuses the others, and the
coordinator answers by counting the replicas that took *this* edit
(``fabric_doc_update:force_reply/3``, ``chttpd_db:update_doc_result_to_json/2``):

- ``{"ok": true, "rev"}`` (HTTP 201): at least ``w`` replicas took it.
- ``{"ok": true, "rev", "accepted": true}`` (HTTP 202): at least one, but fewer than ``w``.
  A competing edit of the same revision may have been taken by the others, and its
  writer may have been told "ok" too.
- ``{"error": "conflict"}`` (409): none took it.

A replica takes at most one child of a revision by an interactive edit, so the replica
sets of two competing edits are disjoint: if one edit was taken by a *majority* of the
``n`` replicas, no competitor can have been. After sends ``w`` = majority on every write
that decides something (the store does), so :data:`Verdict.OURS` — a row without
``accepted`` — is certain, and :data:`Verdict.UNCERTAIN` is never acted on as a success:
a claim answered so is not dispatched, a worker's acceptance answered so does not start
its job. On one node (or the embedded server) every ``ok`` is a majority of one.

The edits that lost such races stay in the document as conflicting leaves. CouchDB shows
one of them (longest branch, then highest revision id), which need not be the one our
protocol wants: :func:`resolve` decides, from the leaves alone, which leaf is the task's
state and which are deleted. Whoever meets a conflict may carry the decision out; the
rule is deterministic, so every daemon decides the same.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from after import model, timing
from after.errors import InvalidInput


class Verdict(enum.Enum):
    """What one row of a write reply means for the writer."""

    #: A majority of replicas took this edit: it is the only child of its revision that can be.
    OURS = "ours"
    #: Some replica took it, fewer than the quorum: a competitor may hold the majority.
    UNCERTAIN = "uncertain"
    #: No replica took it: another edit of that revision was there first.
    THEIRS = "theirs"
    #: Refused by ``validate_doc_update`` or the database's ``_security``.
    REFUSED = "refused"
    #: Anything else (an error of the server).
    FAILED = "failed"


def majority(n: int) -> int:
    """The write quorum that makes an ``ok`` exclusive: more than half of the ``n`` replicas."""
    return max(1, n) // 2 + 1


def verdict(row: Mapping[str, Any]) -> Verdict:
    """Judge one ``_bulk_docs`` row (the store sends ``w`` = :func:`majority` with the request)."""
    error = row.get("error")
    if error is None and (row.get("ok") or "rev" in row):
        return Verdict.UNCERTAIN if row.get("accepted") else Verdict.OURS
    if error == "conflict":
        return Verdict.THEIRS
    if error in ("forbidden", "unauthorized"):
        return Verdict.REFUSED
    return Verdict.FAILED


# -- conflicting leaves ---------------------------------------------------------------------------

#: Rank of a leaf's status when two leaves have started the task as often (see :func:`rank`).
_RUNNING, _FINISHED, _CANCEL, _PENDING, _STALE_RUN, _CLAIM = 5, 4, 3, 2, 1, 0


def _lease_live(doc: Mapping[str, Any], now: datetime) -> bool:
    try:
        return timing.parse_date((doc.get("lease") or {}).get("until"), field="lease.until") > now
    except InvalidInput:
        return False


def stage(doc: Mapping[str, Any], now: datetime) -> int:
    """How far a leaf's current run got, for ranking leaves with equal :func:`starts`.

    A worker running it under a live lease outranks everything (a job may be executing);
    then a finished run; a cancel intent; a pending state; a run whose lease ended; and
    last a bare claim, which a daemon takes only with a majority and which is worth
    nothing once another branch moved on (an uncertain claim is never dispatched).
    """
    status = doc.get("status")
    if status == model.SCHEDULED:
        return _RUNNING if _lease_live(doc, now) else _STALE_RUN
    if status in model.TERMINAL:
        return _FINISHED
    if status == model.CANCEL:
        return _CANCEL
    if status == model.SCHEDULE:
        return _CLAIM
    return _PENDING


def starts(doc: Mapping[str, Any]) -> int:
    """How many times a worker accepted this task, over all runs (never reset).

    Only a worker that holds a majority claim accepts, so a branch that started the task
    more often is the one that really ran it; claims and lease recoveries made without a
    quorum (a daemon cut off from the cluster) never raise it.
    """
    value = doc.get("starts")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def rank(doc: Mapping[str, Any], now: datetime) -> tuple[int, int, str, str]:
    """The order of leaves: :func:`starts`, then :func:`stage`, then last write (``updated``), then revision."""
    updated = doc.get("updated")
    return (starts(doc), stage(doc, now), updated if isinstance(updated, str) else "", str(doc.get("_rev", "")))


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The decision over a document's leaves."""

    #: The leaf that is the task's state from now on.
    winner: Mapping[str, Any]
    #: The other leaves, to be deleted (each by a tombstone on its own revision).
    losers: tuple[Mapping[str, Any], ...]
    #: The body written on top of the winner: the losers' history merged in, a lost cancel
    #: re-applied, and a new ``updated``, so that every daemon takes the settled state
    #: although its branch may be shorter than a deleted one (see ``scheduler.older``).
    rewrite: dict[str, Any]


def resolve(leaves: Sequence[Mapping[str, Any]], now: datetime, *, by: str = "resolver", history_limit: int = 50) -> Resolution | None:
    """Which leaf of a conflicted task wins; None while that cannot be decided yet.

    The winner is the leaf of highest :func:`rank`. Undecided: when the best leaves are
    two or more bare claims (same starts) and one of them still holds a live lease — one
    of them may be the majority claim whose worker is about to accept it, and the data
    cannot tell which. The worker's acceptance (or the end of the leases) decides it.

    The winner is written again (its ``rewrite``): the losers' history entries merged in,
    so what happened on every branch stays visible, and a cancel intent that lost to a
    leaf still running or pending re-applied (the client asked for it; nothing may
    silently drop it).
    """
    live = [leaf for leaf in leaves if not leaf.get("_deleted")]
    if len(live) <= 1:
        return None
    ordered = sorted(live, key=lambda d: rank(d, now), reverse=True)
    top = rank(ordered[0], now)[:2]
    tied = [d for d in ordered if rank(d, now)[:2] == top]
    if top[1] == _CLAIM and len(tied) > 1 and any(_lease_live(d, now) for d in tied):
        return None
    winner, losers = ordered[0], tuple(ordered[1:])
    rewrite = dict(winner)
    rewrite["history"] = merged_history([winner, *losers], limit=history_limit)
    intent = next((d for d in losers if d.get("status") == model.CANCEL), None)
    if intent is not None and winner.get("status") not in model.TERMINAL | {model.CANCEL}:
        model.set_status(rewrite, model.CANCEL, by, now, limit=history_limit, reason="cancel re-applied after a conflict")
    else:
        reason = f"conflict resolved: kept {winner.get('_rev')}, deleted {len(losers)} leaf(s)"
        model.set_status(rewrite, str(winner.get("status")), by, now, limit=history_limit, reason=reason)
    return Resolution(winner, losers, rewrite)


def merged_history(leaves: Iterable[Mapping[str, Any]], *, limit: int) -> list[dict[str, Any]]:
    """Every distinct history entry of the leaves, by time (the first entry kept, as always)."""
    seen: list[dict[str, Any]] = []
    for leaf in leaves:
        for entry in leaf.get("history") or []:
            if isinstance(entry, dict) and entry not in seen:
                seen.append(entry)
    seen.sort(key=lambda e: str(e.get("at", "")))
    if len(seen) > limit:
        seen = seen[:1] + seen[-(limit - 1) :]
    return seen


# -- which daemon claims a task ---------------------------------------------------------------------


def rendezvous(task_id: str, daemons: Iterable[str]) -> str | None:
    """The daemon preferred for a task among ``daemons`` (highest random weight hashing).

    Each daemon computes the same answer from the same registry, so the daemons that run
    one worker name split its tasks between them instead of all claiming each one in the
    same instant; when a daemon leaves, only its share moves.
    """
    best: tuple[bytes, str] | None = None
    for daemon in daemons:
        weight = hashlib.blake2b(f"{daemon}\0{task_id}".encode(), digest_size=8).digest()
        if best is None or (weight, daemon) > best:
            best = (weight, daemon)
    return None if best is None else best[1]
