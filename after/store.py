"""Every CouchDB access After makes, behind a narrow interface of lease verbs.

The verbs, and exactly when a task is eligible for each:

- :meth:`Store.agenda` — tasks the scheduler must look at by ``until``: pending tasks
  (``waiting``/``reschedule``) whose ``date`` has come, held tasks (``schedule``/
  ``scheduled``) whose lease ends, and ``cancel`` intents. One view range query: its
  cost is what is due, not what is stored.
- :meth:`Store.claim` — move due tasks to ``schedule`` under a lease for one daemon, in
  one ``_bulk_docs`` request. Each document is written with the revision the scheduler
  read, so a task another daemon claimed first comes back as a conflict, never twice.
- :meth:`Store.write_many` — the same revision-checked bulk write for status changes
  (release with results, retries, recoveries).
- :meth:`Store.changes` — the ``_changes`` feed, how new and changed documents reach
  the scheduler without polling the whole database.

Built on aiocouch (server, database and document objects, its error classes) and its
raw endpoint wrappers where its convenience methods are wrong for us (see COUCHDB notes):
``_bulk_docs`` results are matched by id, never by position; views are queried with
JSON-encoded keys; ``_find`` is not used at all (no bookmarks on the embedded server).
All aiocouch/aiohttp errors are translated to :mod:`after.errors` in
:func:`after.couchfail.translate`; preparing a database (``_security``, design document,
users) is :mod:`after.provision`, over a Store.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from aiocouch import CouchDB
from aiocouch.database import Database
from aiocouch.document import Document

from after import model, quorum, timing
from after.couchfail import design_view, response_error, translate
from after.design import DESIGN
from after.errors import (
    AfterError,
    Conflict,
    CredentialsRefused,
    Forbidden,
    MalformedAnswer,
    StoreUnavailable,
    Uncertain,
)

__all__ = ["Store", "response_error", "split_credentials", "translate"]

log = logging.getLogger("after.store")


#: Fields a read with ``conflicts=true`` adds; never written back.
_READ_ONLY = frozenset({"_conflicts", "_deleted_conflicts"})


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``http://u:p@h:1/`` -> (``http://h:1``, u, p). Credentials go in a header, not the URL."""
    parts = urlsplit(url)
    user = parts.username
    password = parts.password
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return clean, user, password


class Store:
    """One CouchDB database of tasks. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(
        self,
        url: str,
        database: str = "after",
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        base, url_user, url_password = split_credentials(url)
        self.url = base
        self.name = database
        self._user = user or url_user
        self._password = password or url_password
        self._timeout = timeout
        self._couch: CouchDB | None = None
        self._db: Database | None = None
        #: Latency of every request, for /metrics: (verb, seconds) observers.
        self.observers: list[Any] = []
        self.last_ok: float = 0.0
        self.last_error: str = ""
        self._replicas: int | None = None
        #: Writes taken by fewer replicas than the quorum, and conflicted tasks settled (/metrics).
        self.uncertain_writes = 0
        self.conflicts_resolved = 0

    # -- connection ----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {
            # pouchdb-server answers text/plain without it; CouchDB always answers JSON.
            "Accept": "application/json",
            # pouchdb-server's gzip layer never flushes a continuous feed; harmless on CouchDB.
            "Accept-Encoding": "identity",
        }
        if self._user:
            raw = f"{self._user}:{self._password or ''}".encode()
            # A header rather than aiohttp.BasicAuth, which aiohttp 3.14 deprecates.
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers

    async def open(self) -> Store:
        if self._couch is None:
            self._couch = CouchDB(self.url, timeout=aiohttp.ClientTimeout(total=self._timeout))
            # aiocouch passes its own ``headers=`` to the ClientSession, so ours are set
            # on the session it created (its documented place for default headers).
            self._couch._server._http_session.headers.update(self._headers())
            self._db = Database(self._couch, self.name)
        return self

    async def close(self) -> None:
        if self._couch is not None:
            await self._couch.close()
            self._couch = None
            self._db = None

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> Database:
        if self._db is None:
            raise AfterError("store is not open")
        return self._db

    @property
    def couch(self) -> CouchDB:
        if self._couch is None:
            raise AfterError("store is not open")
        return self._couch

    @contextlib.contextmanager
    def _call(self, verb: str, what: str) -> Any:
        started = time.monotonic()
        try:
            with translate(what):
                yield
        except StoreUnavailable as exc:
            self.last_error = exc.message
            raise
        else:
            self.last_ok = time.time()
        finally:
            for obs in self.observers:
                obs(verb, time.monotonic() - started)

    # -- setup ---------------------------------------------------------------------------

    async def server_info(self) -> dict[str, Any]:
        with self._call("info", "GET /"):
            return dict(await self.couch.info())

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise :class:`StoreUnavailable` unless CouchDB answers ``GET /`` within ``timeout``.

        For /health and ``GET /``: a CouchDB that accepts connections but does not
        answer (overloaded, stopped with SIGSTOP, a partition that drops packets) would
        otherwise hold a health probe for the session's whole 30 s timeout, and the
        monitor would see its own timeout instead of a 503 that says why.
        """
        try:
            async with asyncio.timeout(timeout):
                await self.server_info()
        except TimeoutError:
            self.last_error = f"GET /: CouchDB did not answer within {timeout:g}s"
            raise StoreUnavailable(self.last_error) from None

    async def is_admin(self) -> bool:
        with self._call("session", "GET /_session"):
            _, reply = await self.couch._server._get("/_session")
        roles = (reply or {}).get("userCtx", {}).get("roles", []) if isinstance(reply, dict) else []
        return "_admin" in roles

    async def session_valid(self) -> bool:
        """Whether CouchDB takes our credentials (``GET /_session`` names our user). Never raises.

        After a 401 on a database call: if the session is valid, it is the database's
        ``_security`` that shuts us out (pouchdb-server answers 401 where CouchDB answers 403).
        """
        try:
            with self._call("session", "GET /_session"):
                _, reply = await self.couch._server._get("/_session")
                name = reply.get("userCtx", {}).get("name")
        except Exception:
            return False
        return bool(self._user) and name == self._user

    # -- single documents -----------------------------------------------------------------

    async def get(self, doc_id: str) -> dict[str, Any]:
        with self._call("get", f"document {doc_id}"):
            doc = await self.db.get(doc_id)
            return dict(doc.data or {})

    async def put(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Write one document (revision-checked); return it with its new ``_rev``."""
        with self._call("put", f"document {doc.get('_id')}"):
            d = Document(self.db, doc["_id"], data=dict(doc))
            await d.save()
            out = dict(d.data or {})
            return out

    async def delete(self, doc_id: str, rev: str | None = None) -> None:
        with self._call("delete", f"document {doc_id}"):
            doc = await self.db.get(doc_id)
            if rev is not None and doc.rev != rev:
                raise Conflict(f"document {doc_id}: stale revision {rev}")
            await doc.delete()

    # -- bulk ------------------------------------------------------------------------------

    async def replicas(self) -> int:
        """How many copies of each document the database keeps (``n``; 1 on one node).

        A CouchDB 3 database says so in ``GET /db`` (``cluster.n``); pouchdb-server has no
        such field and keeps one copy. Read once: ``n`` is fixed when a database is created.
        """
        if self._replicas is None:
            with self._call("info", f"{self.name} info"):
                info = await self.db._get()
            cluster = info.get("cluster") if isinstance(info, dict) else None
            n = cluster.get("n") if isinstance(cluster, dict) else None
            self._replicas = n if isinstance(n, int) and n > 0 else 1
        return self._replicas

    @property
    def replicated(self) -> bool:
        """True once :meth:`replicas` found more than one copy per document."""
        return (self._replicas or 1) > 1

    async def write_many(self, docs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any] | AfterError]:
        """Revision-checked bulk write. Returns, by id, the written doc (new ``_rev``) or the error.

        Every write asks for ``w`` = a majority of the replicas, and each row is judged by
        :func:`after.quorum.verdict`: only a majority write is returned as a document; one
        taken by fewer replicas is an :class:`~after.errors.Uncertain` (its ``doc`` holds
        what was written), a refused one a :class:`~after.errors.Conflict`. Results are
        matched by id (pouchdb-server returns them out of order), so ``docs`` holds at most
        one write per id.
        """
        if not docs:
            return {}
        n = await self.replicas()
        extra = {"w": quorum.majority(n)} if n > 1 else {}
        # What a read adds about other leaves is not part of a revision (CouchDB refuses it).
        docs = [{k: v for k, v in d.items() if k not in _READ_ONLY} for d in docs]
        with self._call("bulk", f"{self.name}/_bulk_docs"):
            reply: Any = await self.db._bulk_docs(docs, **extra)
        rows = reply if isinstance(reply, list) else []
        if rows and all(isinstance(row, dict) and row.get("error") == "unauthorized" for row in rows):
            # pouchdb-server refuses a non-member row by row (CouchDB refuses the request);
            # our validate_doc_update throws ``forbidden``, never this: it is _security.
            raise CredentialsRefused(f"{self.name}/_bulk_docs: CouchDB refused our credentials ({rows[0].get('reason')})")
        by_id = {d["_id"]: d for d in docs}
        out: dict[str, dict[str, Any] | AfterError] = {}
        for row in rows:
            doc_id = row.get("id") if isinstance(row, dict) else None
            if not isinstance(doc_id, str) or doc_id not in by_id:
                continue
            verdict = quorum.verdict(row)
            if verdict in (quorum.Verdict.OURS, quorum.Verdict.UNCERTAIN):
                written = dict(by_id[doc_id])
                written["_rev"] = row["rev"]
                if verdict is quorum.Verdict.OURS:
                    out[doc_id] = written
                else:
                    self.uncertain_writes += 1
                    out[doc_id] = Uncertain(f"document {doc_id}: taken by fewer CouchDB replicas than the quorum (202 accepted)", doc=written)
            elif verdict is quorum.Verdict.THEIRS:
                out[doc_id] = Conflict(f"document {doc_id}: stale revision")
            elif verdict is quorum.Verdict.REFUSED:
                out[doc_id] = Forbidden(f"document {doc_id}: {row.get('reason')}")
            else:
                out[doc_id] = StoreUnavailable(f"document {doc_id}: {row.get('error')}: {row.get('reason')}")
        for doc_id in by_id:
            out.setdefault(doc_id, StoreUnavailable(f"document {doc_id}: no answer in _bulk_docs"))
        return out

    async def leaves(self, doc_id: str) -> list[dict[str, Any]]:
        """Every leaf revision of a document (``open_revs=all``), deleted ones included."""
        with self._call("get", f"document {doc_id} leaves"):
            _, reply = await self.couch._server._get(f"/{quote_id(self.name)}/{quote_id(doc_id)}", params={"open_revs": "all", "revs": "false"})
        rows = reply if isinstance(reply, list) else []
        return [row["ok"] for row in rows if isinstance(row, dict) and isinstance(row.get("ok"), dict)]

    async def resolve(self, docs: Iterable[Mapping[str, Any]], *, now: datetime, by: str, history_limit: int) -> dict[str, dict[str, Any]]:
        """Settle the conflicting leaves of ``docs`` (those with ``_conflicts``) by :func:`after.quorum.resolve`.

        Each losing leaf is deleted by a tombstone on its own revision, written with the
        write quorum: a tombstone competes with any other edit of that leaf (a worker
        accepting a claim on it), so a certain tombstone means nobody acts on that leaf.
        Returns, by id, the settled document (the winner, or its rewrite) of every task
        whose losers are all certainly gone; the others are tried again when next seen.
        """
        plans: list[tuple[str, quorum.Resolution]] = []
        settled: dict[str, dict[str, Any]] = {}
        for doc in docs:
            if not doc.get("_conflicts"):
                continue
            found = await self.leaves(doc["_id"])
            res = quorum.resolve(found, now, by=by, history_limit=history_limit)
            if res is not None:
                plans.append((doc["_id"], res))
            elif len(alive := [leaf for leaf in found if not leaf.get("_deleted")]) == 1:
                settled[doc["_id"]] = alive[0]  # settled meanwhile (by another daemon)
        self.conflicts_resolved += len(settled)
        failed: set[str] = set()
        # At most one write per document and request (results are matched by id): round k
        # deletes the k-th loser of every document; the rewrite of the winner goes last.
        rounds = max((len(r.losers) for _, r in plans), default=0)
        for k in range(rounds):
            batch = [
                {"_id": i, "_rev": r.losers[k]["_rev"], "_deleted": True, "type": "task", "worker": r.winner.get("worker")}
                for i, r in plans
                if k < len(r.losers) and i not in failed
            ]
            for doc_id, result in (await self.write_many(batch)).items():
                if not isinstance(result, dict):
                    failed.add(doc_id)
        rewrites = [dict(r.rewrite) for i, r in plans if i not in failed]
        written = await self.write_many(rewrites) if rewrites else {}
        for doc_id, _ in plans:
            if doc_id in failed:
                continue
            out = written.get(doc_id)
            if isinstance(out, dict):
                settled[doc_id] = out
                self.conflicts_resolved += 1
        if failed:
            log.info("conflicts of %d task(s) not settled yet (a losing leaf moved on); tried again when next seen", len(failed))
        return settled

    async def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(ids)
        if not keys:
            return {}
        with self._call("get_many", f"{self.name}/_all_docs"):
            view = self.db.all_docs
            reply = await view._post(keys, include_docs=True, conflicts=True)
        return {row["id"]: row["doc"] for row in reply.get("rows", []) if row.get("doc")}

    async def tombstones(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The deletion records (tombstones) of those of ``ids`` that were deleted: what a
        deletion wrote (a purge: the status it ended with, ``was``). One request, then one
        per deleted id (rare: read for dependencies found missing)."""
        keys = list(ids)
        if not keys:
            return {}
        with self._call("get_many", f"{self.name}/_all_docs"):
            reply = await self.db.all_docs._post(keys)
        out: dict[str, dict[str, Any]] = {}
        for row in reply.get("rows", []):
            value = row.get("value") if isinstance(row, dict) else None
            if isinstance(value, dict) and value.get("deleted") and isinstance(value.get("rev"), str):
                with self._call("get", f"{self.name}/{row['id']}"):
                    _, doc = await self.couch._server._get(f"/{quote_id(self.name)}/{quote_id(row['id'])}", params={"rev": value["rev"]})
                if isinstance(doc, dict):
                    out[row["id"]] = doc
        return out

    async def by_prefix(self, prefix: str, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Documents whose id starts with ``prefix`` (one ``_all_docs`` range)."""
        params = {"startkey": json.dumps(prefix), "endkey": json.dumps(prefix + "\ufff0"), "include_docs": "true", "limit": limit}
        with self._call("get_many", f"{self.name}/_all_docs"):
            _, reply = await self.couch._server._get(f"/{quote_id(self.name)}/_all_docs", params=params)
        rows = reply.get("rows", []) if isinstance(reply, dict) else []
        return [row["doc"] for row in rows if isinstance(row, dict) and isinstance(row.get("doc"), dict)]

    # -- scheduling verbs ---------------------------------------------------------------

    async def agenda(self, until: datetime, *, since: datetime | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
        """Tasks whose agenda time (due date, lease end, or now for a cancel) is <= ``until``.

        With ``since``, only those after it (the rolling window's new part).
        """
        params: dict[str, Any] = {
            # CouchDB requires JSON-encoded keys; pouchdb-server tolerates both.
            "endkey": json.dumps(int(until.timestamp() * 1000)),
            "include_docs": True,
            "conflicts": True,
            "limit": limit,
        }
        if since is not None:
            params["startkey"] = json.dumps(int(since.timestamp() * 1000) + 1)
        with design_view(self.name, "agenda"), self._call("agenda", f"{self.name} agenda view"):
            reply = await self.db.view(DESIGN, "agenda")._get(**params)
            return [row["doc"] for row in reply.get("rows", []) if row.get("doc")]

    async def claim(
        self,
        tasks: Sequence[Mapping[str, Any]],
        *,
        daemon: str,
        now: datetime,
        lease_seconds: float,
        history_limit: int,
    ) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
        """Claim due tasks for ``daemon``: status ``schedule`` and a lease until now + lease.

        Each task is written with the revision passed in, so if another daemon (or a
        client) changed it since, the write is a conflict and the task is not ours.
        Returns (claims that are certainly ours, with their new revision; ids lost to a
        conflict; claims taken by fewer replicas than the quorum). Only the first are
        dispatched: an uncertain claim may have lost to a competitor that holds the
        majority; it stays a leaf that :func:`after.quorum.resolve` ranks last, or, alone,
        waits for its lease to end.
        """
        until = timing.fmt(timing.from_ts(now.timestamp() + lease_seconds))
        docs = []
        for task in tasks:
            doc = dict(task)
            doc["lease"] = {"id": uuid.uuid4().hex, "daemon": daemon, "until": until}
            model.set_status(doc, model.SCHEDULE, daemon, now, limit=history_limit)
            docs.append(doc)
        results = await self.write_many(docs)
        claimed: list[dict[str, Any]] = []
        lost: list[str] = []
        uncertain: list[dict[str, Any]] = []
        for doc in docs:
            res = results[doc["_id"]]
            if isinstance(res, dict):
                claimed.append(res)
            elif isinstance(res, Uncertain):
                uncertain.append(res.doc)
            else:
                lost.append(doc["_id"])
        return claimed, lost, uncertain

    async def update_seq(self) -> Any:
        """The feed position now; start following :meth:`changes` from here."""
        with self._call("changes", f"{self.name}/_changes"):
            reply = await self.db._get()
        return reply.get("update_seq", 0)

    async def changes(self, since: Any, *, timeout: float = 20.0, limit: int = 2000, feed: str = "longpoll") -> tuple[list[dict[str, Any]], Any]:
        """Changes after ``since`` (documents included), waiting up to ``timeout`` for one.

        A longpoll request bounded by us: pouchdb-server ignores ``timeout`` on
        longpoll, CouchDB honours it; either way we never wait longer than asked.
        ``feed="normal"`` answers at once with what there is (catching up, e.g. replaying
        the events a ``/events`` client missed) and never waits.
        ``seq`` is opaque (an integer on pouchdb, a string on CouchDB).
        """
        if feed not in ("longpoll", "normal"):
            raise ValueError(f"feed: expected 'longpoll' or 'normal', got {feed!r}")
        params = {
            "feed": feed,
            "since": since if isinstance(since, str | int) else json.dumps(since),
            "include_docs": True,
            "conflicts": True,
            "timeout": int(timeout * 1000),
            "limit": limit,
        }
        results: list[dict[str, Any]] = []
        last = since
        try:
            async with asyncio.timeout(timeout + 2):  # under the session's 30 s total
                with self._call("changes", f"{self.name}/_changes"):
                    async for event in self.db.changes(**params):
                        results.append(event.json)
                        last = event.json.get("seq", last)
        except TimeoutError:
            pass
        return results, last

    async def changes_page(self, since: Any, *, limit: int) -> tuple[list[dict[str, Any]], Any, int | None]:
        """One page of the feed after ``since``, at once (documents and conflicts included):
        (changes, the position after them, how many are left or None when not said).

        For catching up (:mod:`after.catchup`): unlike :meth:`changes` it never waits, and it
        passes on CouchDB's ``pending`` (the embedded server does not give it).
        """
        params = {
            "feed": "normal",
            "since": since if isinstance(since, str | int) else json.dumps(since),
            "include_docs": "true",
            "conflicts": "true",
            "limit": limit,
        }
        with self._call("changes", f"{self.name}/_changes"):
            _, reply = await self.couch._server._get(f"/{quote_id(self.name)}/_changes", params=params)
            rows = reply["results"]
            if not isinstance(rows, list):
                raise MalformedAnswer(f"{self.name}/_changes: unexpected answer from CouchDB (no results)")
            pending = reply.get("pending")
            return rows, reply.get("last_seq", since), pending if isinstance(pending, int) else None

    # -- local documents (never replicated, never in the feed or the views) ---------------

    async def get_local(self, name: str) -> dict[str, Any]:
        """``_local/<name>`` (:class:`~after.errors.NotFound` when there is none)."""
        with self._call("get", f"{self.name}/_local/{name}"):
            _, reply = await self.couch._server._get(f"/{quote_id(self.name)}/_local/{quote_id(name)}")
            return dict(reply)

    async def put_local(self, name: str, body: Mapping[str, Any]) -> None:
        """Write ``_local/<name>`` (a :class:`~after.errors.Conflict` if it exists and ``body``
        carries no current ``_rev``)."""
        with self._call("put", f"{self.name}/_local/{name}"):
            await self.couch._server._put(f"/{quote_id(self.name)}/_local/{quote_id(name)}", data=dict(body))

    # -- listing and housekeeping --------------------------------------------------------

    async def view(self, name: str, **params: Any) -> dict[str, Any]:
        for key in ("key", "startkey", "endkey"):
            if key in params:
                params[key] = json.dumps(params[key])
        with design_view(self.name, name), self._call("view", f"{self.name} view {name}"):
            reply: dict[str, Any] = await self.db.view(DESIGN, name)._get(**params)
            if not isinstance(reply, dict) or not isinstance(reply.get("rows", []), list):
                raise MalformedAnswer(f"{self.name} view {name}: unexpected answer from CouchDB (no rows)")
        return reply

    async def view_docs(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """The documents of view ``name``'s rows (``include_docs``), deleted ones left out."""
        reply = await self.view(name, include_docs=True, **params)
        return [row["doc"] for row in reply.get("rows", []) if row.get("doc")]

    async def conflicted(self, *, limit: int = 500) -> list[dict[str, Any]]:
        """Tasks that have conflicting leaves (each with its ``_conflicts``)."""
        return await self.view_docs("conflicts", conflicts=True, limit=limit)

    async def strays(self, *, limit: int = 500) -> list[dict[str, Any]]:
        """Documents that look like tasks but are not valid ones in a way no other view shows
        (an id ``task:…`` without ``type``, an unknown status): see ``design.py``."""
        return await self.view_docs("strays", limit=limit)

    async def count_by_status(self) -> dict[str, int]:
        reply = await self.view("by_status", group_level=1, reduce=True)
        return {row["key"][0]: row["value"] for row in reply.get("rows", [])}

    async def finished_before(self, cutoff_ms: int, *, view: str = "finished", limit: int = 500) -> list[dict[str, Any]]:
        """Finished tasks whose key (last update, or expiry for ``expiring``) is <= ``cutoff_ms``."""
        return await self.view_docs(view, endkey=cutoff_ms, limit=limit)

    async def compact(self) -> dict[str, Any]:
        """Start compaction of this database (needs database admin: the worker role is)."""
        with self._call("compact", f"{self.name}/_compact"):
            _, reply = await self.couch._server._post(f"/{quote_id(self.name)}/_compact", data={})
        return dict(reply) if isinstance(reply, dict) else {"ok": True}

    async def purge(self, docs: Sequence[Mapping[str, Any]]) -> int:
        """Delete documents in one bulk request (a tombstone each, replicated as deletions)."""
        # ``was``: the status it ended with, so that a task waiting on a purged one can tell
        # a finished dependency from a deleted one (after.deps).
        tombstones = [{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True, "was": d.get("status")} for d in docs]
        results = await self.write_many(tombstones)
        return sum(1 for r in results.values() if isinstance(r, dict))


def quote_id(doc_id: str) -> str:
    return quote(doc_id, safe="")
