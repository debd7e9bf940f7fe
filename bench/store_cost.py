"""Where the write rate of After's database goes: ``_bulk_docs`` into variants of it.

Run: ``.venv/bin/python -m bench.store_cost URL [--docs N] [--rounds R] [--only a,b] [--pid P]``
(``URL`` with admin credentials; it creates databases named ``storecost-*`` and deletes
them). Each variant gets a fresh database per round, a warm-up batch, then ``--docs``
task-shaped documents in batches of 500, one request at a time (as After's BulkWriter
writes), by a user with the worker role (as the daemons and workers write). Variants are
interleaved round by round, so a noisy neighbour slows all of them alike; the figure is
the median round, and the ratio to the plain database of the same run. With ``--pid``
(the server's process id, on this machine) it also reports the server's CPU per 1,000
writes, beam and couchjs together, which a busy machine sways less than wall time;
``--settle`` includes the time until the indexes caught up, ``--updates 3`` writes
each document three more times (a task's claim, ``scheduled`` and ``done``).

The variants (:func:`variants`): ``plain`` (no design document); ``current`` (After's
``_design/after``); ``-no-ken`` (the same with ``"autoupdate": false``: CouchDB's
background indexer leaves it alone, a query indexes); ``vdu-only`` / ``views-only``
(half of it each); ``vdu-return-at-once`` (a validation function with an empty body:
the floor of any JavaScript validation); ``mango-3`` (three Erlang-native ``json``
indexes instead of JavaScript views).

Not part of ``make bench``: a tool to decide the design, kept so the figures in
docs/benchmarks.md ("Store cost on CouchDB") can be measured again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from after import design, model, timing
from after.store import split_credentials

#: A user with the worker role, created in ``_users`` for the run and deleted after it.
USER = "storecost_worker"
PASSWORD = "storecost"
#: The statuses of a task's revisions after its creation, as After writes them.
STEPS = (model.SCHEDULE, model.SCHEDULED, model.DONE)


def task_doc(template: dict[str, Any], due: float) -> dict[str, Any]:
    """A copy of ``template`` with its own id, due date and arguments (as bench.after_side's)."""
    d = dict(template)
    d["_id"] = f"task:{uuid.uuid4().hex}"
    d["date"] = timing.fmt(timing.from_ts(due))
    d["job"] = {"name": "stamp", "arguments": ["/tmp/records", due], "kwargs": {}}
    return d


def template() -> dict[str, Any]:
    """A task document as ``POST /tasks`` stores it (built by After's own code)."""
    now = datetime.now(UTC)
    return model.new_task({"worker": "w", "date": now.timestamp(), "job": {"name": "stamp", "arguments": []}}, now=now, by="bench")


def _current() -> dict[str, Any]:
    return design.design_document()


def _with(ddoc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(ddoc)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def variants() -> dict[str, Callable[[], list[dict[str, Any]]]]:
    """Name -> the design documents of that variant (none: a plain database)."""
    cur = _current
    return {
        "plain": lambda: [],
        "current": lambda: [cur()],
        "current-no-ken": lambda: [_with(cur(), autoupdate=False)],
        "vdu-only": lambda: [_with(cur(), views=None)],
        "vdu-return-at-once": lambda: [{"_id": "_design/after", "validate_doc_update": "function (n, o, u, s) { return; }"}],
        "views-only": lambda: [_with(cur(), validate_doc_update=None)],
        "views-only-no-ken": lambda: [_with(cur(), validate_doc_update=None, autoupdate=False)],
        "mango-3": lambda: [
            {
                "_id": "_design/after-mango",
                "language": "query",
                "views": {
                    f"i{i}": {
                        "map": {"fields": {f: "asc" for f in fields}, "partial_filter_selector": {}},
                        "reduce": "_count",
                        "options": {"def": {"fields": list(fields)}},
                    }
                    for i, fields in enumerate((("type", "status", "date"), ("type", "date"), ("type", "updated")))
                },
            }
        ],
        "vdu-only-mango-3": lambda: [_with(cur(), views=None), *variants()["mango-3"]()],
    }


def server_cpu(pid: int | None) -> float:
    """CPU seconds used so far by ``pid`` and its children that are still alive (CouchDB's
    beam and its couchjs processes), from /proc: less swayed by a busy machine than wall time."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Client:
    def __init__(self, url: str) -> None:
        self.base, user, password = split_credentials(url)
        self.admin = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), "Content-Type": "application/json"}
        self.worker = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), "Content-Type": "application/json"}
        self.s = aiohttp.ClientSession(headers={"Accept": "application/json"}, timeout=aiohttp.ClientTimeout(total=600))

    async def req(self, method: str, path: str, body: Any = None, *, admin: bool = True) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        async with self.s.request(method, self.base + path, data=data, headers=self.admin if admin else self.worker) as r:
            return r.status, await r.json(content_type=None)


async def ensure_user(c: Client) -> None:
    await c.req("PUT", "/_users")
    doc_id = f"org.couchdb.user:{USER}"
    st, cur = await c.req("GET", f"/_users/{doc_id}")
    body = {"_id": doc_id, "name": USER, "type": "user", "roles": [model.WORKER_ROLE], "password": PASSWORD}
    if st == 200:
        body["_rev"] = cur["_rev"]
    await c.req("PUT", f"/_users/{doc_id}", body)


async def drop_user(c: Client) -> None:
    doc_id = f"org.couchdb.user:{USER}"
    st, cur = await c.req("GET", f"/_users/{doc_id}")
    if st == 200:
        await c.req("DELETE", f"/_users/{doc_id}?rev={cur['_rev']}")


async def one_round(c: Client, name: str, ddocs: list[dict[str, Any]], tmpl: dict[str, Any], args: argparse.Namespace) -> tuple[float, float]:
    """One variant's round on a fresh database: (writes/s, server CPU ms per 1,000 writes)."""
    n, in_flight, pid, settle, updates = args.docs, args.in_flight, args.pid, args.settle, args.updates
    db = f"storecost-{name}-{uuid.uuid4().hex[:6]}"
    st, reply = await c.req("PUT", f"/{db}")
    if st >= 300:
        raise RuntimeError(f"PUT /{db}: {st} {reply}")
    try:
        await c.req("PUT", f"/{db}/_security", {"admins": {"roles": [model.WORKER_ROLE]}, "members": {"roles": [model.WORKER_ROLE]}})
        for dd in ddocs:
            st, reply = await c.req("PUT", f"/{db}/{dd['_id']}", dd)
            if st >= 300:
                raise RuntimeError(f"design {dd['_id']}: {st} {reply}")
        await c.req("POST", f"/{db}/_bulk_docs", {"docs": [task_doc(tmpl, time.time()) for _ in range(100)]}, admin=False)
        docs = [task_doc(tmpl, time.time() + 86400) for _ in range(n)]
        chunks = [docs[i : i + 500] for i in range(0, n, 500)]

        async def writer() -> None:
            while chunks:
                chunk = chunks.pop()
                for k in range(1 + updates):  # a task's life: created, then claimed, accepted, done
                    st, rows = await c.req("POST", f"/{db}/_bulk_docs", {"docs": chunk}, admin=False)
                    bad = [r for r in rows if "error" in r] if isinstance(rows, list) else rows
                    if st >= 300 or bad:
                        raise RuntimeError(f"{name}: _bulk_docs {st}: {str(bad)[:300]}")
                    revs = {r["id"]: r["rev"] for r in rows}
                    chunk = [{**d, "_rev": revs[d["_id"]], "status": STEPS[k % len(STEPS)]} for d in chunk]

        t0, cpu0 = time.perf_counter(), server_cpu(pid)
        await asyncio.gather(*(writer() for _ in range(in_flight)))
        if settle:  # until every index has caught up: the write's whole cost, indexing included
            for dd in ddocs:
                for view in list(dd.get("views") or {})[:1]:
                    st, reply = await c.req("GET", f"/{db}/{dd['_id']}/_view/{view}?limit=1&reduce=false")
                    if st >= 300:
                        raise RuntimeError(f"{name}: view {view}: {st} {reply}")
        writes = n * (1 + updates)
        return writes / (time.perf_counter() - t0), (server_cpu(pid) - cpu0) * 1000 / writes * 1000
    finally:
        await c.req("DELETE", f"/{db}")


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--only", default="")
    ap.add_argument("--in-flight", type=int, default=1, help="_bulk_docs requests at a time (After's BulkWriter: 1)")
    ap.add_argument("--pid", type=int, help="the server's process id: also report its CPU ms per 1,000 documents (beam + couchjs)")
    ap.add_argument("--settle", action="store_true", help="include the time until every view index has caught up")
    ap.add_argument("--updates", type=int, default=0, help="revisions after each creation (After writes 3: schedule, scheduled, done)")
    ap.add_argument("--small", action="store_true", help="minimal task documents (type, status, date) instead of POST /tasks-shaped ones")
    args = ap.parse_args(argv)
    table = variants()
    names = [n for n in args.only.split(",") if n] or list(table)
    c = Client(args.url)
    tmpl = {"type": "task", "status": "waiting"} if args.small else template()
    rates: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    try:
        await ensure_user(c)
        for r in range(args.rounds):
            for name in names:
                rate, cpu = await one_round(c, name, table[name](), tmpl, args)
                rates[name].append(rate)
                cpus[name].append(cpu)
            print(f"round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f}" for n in names), file=sys.stderr)
    finally:
        await drop_user(c)
        await c.s.close()
    plain = statistics.median(rates["plain"]) if "plain" in rates else None
    print(f"{'variant':24} {'median writes/s':>14} {'of plain':>9} {'server CPU ms/1k writes':>22}  rounds")
    for name in names:
        med = statistics.median(rates[name])
        rel = f"{med / plain:.0%}" if plain else "-"
        cpu_ms = f"{statistics.median(cpus[name]):.0f}" if args.pid else "-"
        print(f"{name:24} {med:14.0f} {rel:>9} {cpu_ms:>22}  {' '.join(f'{x:.0f}' for x in rates[name])}")
    print(f"doc bytes: {len(json.dumps(task_doc(tmpl, time.time())))}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
