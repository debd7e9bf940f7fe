"""Dependencies end to end: a real daemon, real worker processes, the embedded CouchDB.

The order is read from the jobs' own records (a file, one line per start and end), never
inferred from statuses; each test has its own database, port and state directory.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import WORKER_PASSWORD, WORKER_USER, Couch, Daemon, http, iso_in, tid, wait_until
from test_remote_clients import Remote, connected, remote  # noqa: F401  (the remote worker fixture)

from after.jobs import TaskContext
from after.scheduler import connect


def runs_of(path: Path) -> dict[str, dict[str, float]]:
    """task id -> {"start": t, "end": t} from a depjobs record file."""
    out: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        task_id, what, at = line.split()
        out.setdefault(task_id, {})[what] = float(at)
    return out


def step(path: Path, worker: str, task_id: str, *, after: list[str] | None = None, value: Any = None, isolated: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": task_id,
        "worker": worker,
        "date": iso_in(0),
        "job": {"name": "step_isolated" if isolated else "step", "arguments": [str(path)], "kwargs": {"value": value}},
        **extra,
    }
    if after is not None:
        body["after"] = after
    return body


def test_a_diamond_runs_in_order_and_the_last_sees_both_results(daemon: Daemon, tmp_path: Path) -> None:
    """a -> b, a -> c, b + c -> d: b and c start after a ended, d after both; d's job sees
    b's and c's results (b runs in a job process, the others inline)."""
    daemon.start_worker("dw", jobs=["depjobs"])
    rec = tmp_path / "runs.txt"
    # d first in the array: the order of creation is not the order of running.
    reply = daemon.create(
        [
            step(rec, "dw", "d", after=["b", "task:c"], value="d"),
            step(rec, "dw", "b", after=["a"], value="b", isolated=True),
            step(rec, "dw", "c", after=["a"], value="c"),
            step(rec, "dw", "a", value="a"),
        ]
    )
    assert reply["ids"] == ["task:d", "task:b", "task:c", "task:a"]
    d = daemon.wait_status("task:d", {"done", "err"}, timeout=90)
    assert d["status"] == "done", d
    runs = runs_of(rec)
    assert set(runs) == {"task:a", "task:b", "task:c", "task:d"}
    assert runs["task:b"]["start"] >= runs["task:a"]["end"] and runs["task:c"]["start"] >= runs["task:a"]["end"]
    assert runs["task:d"]["start"] >= max(runs["task:b"]["end"], runs["task:c"]["end"])
    a_result = {"value": "a", "seen": {}, "statuses": {}}
    assert d["result"]["seen"] == {
        "task:b": {"value": "b", "seen": {"task:a": a_result}, "statuses": {"task:a": "done"}},
        "task:c": {"value": "c", "seen": {"task:a": a_result}, "statuses": {"task:a": "done"}},
    }
    assert d["dependencies"]["task:b"]["status"] == "done"
    assert d["after"] == ["task:b", "task:c"] and d["after_failed"] == "err"
    # shown by the CLI too
    shown = daemon.cli("task", "show", "task:d").stdout
    assert "task:b" in shown and "task:c" in shown


def test_a_failing_dependency_ends_the_dependent_err_unless_it_runs_anyway(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("dw", jobs=["depjobs"])
    rec = tmp_path / "runs.txt"
    daemon.create(
        [
            {"id": "f", "worker": "dw", "date": iso_in(0), "job": "boom"},
            step(rec, "dw", "g", after=["f"], value="g"),
            step(rec, "dw", "h", after=["f"], value="h", after_failed="run"),
            step(rec, "dw", "i", after=["g"], value="i"),  # g ends err, so i does too
        ]
    )
    g = daemon.wait_status("task:g", {"done", "err"}, timeout=90)
    assert g["status"] == "err" and g["error"]["reason"] == "dependency" and g["error"]["task"] == "task:f", g["error"]
    assert "task:f" in g["error"]["message"]
    h = daemon.wait_status("task:h", {"done", "err"}, timeout=90)
    assert h["status"] == "done", h
    assert h["result"]["statuses"] == {"task:f": "err"}
    i = daemon.wait_status("task:i", {"done", "err"}, timeout=90)
    assert i["status"] == "err" and i["error"]["task"] == "task:g", i["error"]
    assert set(runs_of(rec)) == {"task:h"}


def test_unknown_ids_and_cycles_are_refused_422_naming_them(daemon: Daemon) -> None:
    status, body = daemon.api("POST", "/tasks", {"worker": "dw", "date": iso_in(60), "job": "noop", "after": ["task:nope", "other"]})
    assert status == 422 and body["field"] == "after", body
    assert "task:nope" in body["message"] and "task:other" in body["message"]
    status, body = daemon.api(
        "POST",
        "/tasks",
        [
            {"id": "x", "worker": "dw", "date": iso_in(60), "job": "noop"},
            {"id": "y", "worker": "dw", "date": iso_in(60), "job": "noop", "after": ["z"]},
            {"id": "z", "worker": "dw", "date": iso_in(60), "job": "noop", "after": ["x", "y"]},
        ],
    )
    assert status == 422 and body["field"] in ("[1].after", "[2].after"), body
    assert "cycle" in body["message"] and "task:y" in body["message"] and "task:z" in body["message"]
    status, body = daemon.api("POST", "/tasks", {"id": "self", "worker": "dw", "date": iso_in(60), "job": "noop", "after": ["self"]})
    assert status == 422 and "cycle" in body["message"], body
    # a wrong shape is a bad request (400), naming the field
    status, body = daemon.api("POST", "/tasks", {"worker": "dw", "date": iso_in(60), "job": "noop", "after": "task:x"})
    assert status == 400 and body["field"] == "after", body
    status, body = daemon.api("POST", "/tasks", {"worker": "dw", "date": iso_in(60), "job": "noop", "after": ["a"] * 101})
    assert status == 400 and body["field"] == "after", body
    status, body = daemon.api("POST", "/tasks", {"worker": "dw", "date": iso_in(60), "job": "noop", "after": ["x"], "after_failed": "maybe"})
    assert status == 400 and body["field"] == "after_failed", body
    assert daemon.api("GET", "/tasks")[1]["tasks"] == []  # nothing was stored
    res = daemon.cli("task", "add", "dw", "noop", "--date", iso_in(60), "--after", "task:nope", check=False)
    assert res.returncode != 0 and "task:nope" in res.stderr, (res.stdout, res.stderr)


def test_a_deleted_dependency_ends_the_dependent_err_naming_it(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("dw", jobs=["depjobs"])
    rec = tmp_path / "runs.txt"
    daemon.create({"id": "later", "worker": "dw", "date": iso_in(3600), "job": "noop"})
    # through the CLI: --after (repeatable) and --after-failed
    made = daemon.cli("task", "add", "dw", "step", str(rec), "--id", "dep", "--after", "later", "--after", "later", "--after-failed", "run").stdout
    assert made.strip() == "task:dep"
    doc = daemon.task("task:dep")
    assert doc["after"] == ["task:later"] and doc["after_failed"] == "run"
    wait_until(lambda: daemon.task("task:dep").get("waiting_on") == ["task:later"], 60, "the dependent to show what it waits on")
    assert '"waiting_on"' in daemon.cli("task", "show", "dep").stdout
    assert daemon.api("DELETE", "/tasks/" + tid("task:later"))[0] == 200
    dep = daemon.wait_status("task:dep", {"done", "err"}, timeout=60)
    assert dep["status"] == "err" and dep["error"]["reason"] == "dependency" and dep["error"]["task"] == "task:later", dep["error"]
    assert "does not exist" in dep["error"]["message"]
    assert not rec.exists()


def test_direct_documents_with_bad_or_unknown_after_end_err(daemon: Daemon, couch: Couch, dbname: str) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{WORKER_USER}:{WORKER_PASSWORD}".encode()).decode(), "Accept": "application/json"}
    base = {"type": "task", "worker": "dw", "date": iso_in(0), "job": {"name": "noop"}, "status": "waiting"}
    daemon.start_worker("dw", jobs=["depjobs"])
    assert http(couch.url, "PUT", f"/{dbname}/" + tid("task:bad"), {**base, "after": "task:x"}, headers=auth)[0] == 201
    assert http(couch.url, "PUT", f"/{dbname}/" + tid("task:orphan"), {**base, "after": ["task:never"]}, headers=auth)[0] == 201
    assert http(couch.url, "PUT", f"/{dbname}/" + tid("task:p"), {**base, "after": ["task:q"]}, headers=auth)[0] == 201
    assert http(couch.url, "PUT", f"/{dbname}/" + tid("task:q"), {**base, "after": ["task:p"]}, headers=auth)[0] == 201
    bad = daemon.wait_status("task:bad", "err", timeout=60)
    assert bad["error"]["reason"] == "invalid" and bad["error"]["field"] == "after", bad["error"]
    orphan = daemon.wait_status("task:orphan", "err", timeout=60)
    assert orphan["error"]["reason"] == "dependency" and orphan["error"]["task"] == "task:never", orphan["error"]
    p = daemon.wait_status("task:p", "err", timeout=60)
    q = daemon.wait_status("task:q", "err", timeout=60)
    assert "cycle" in p["error"]["message"] or "cycle" in q["error"]["message"], (p["error"], q["error"])
    # and the daemon goes on
    daemon.create({"id": "fine", "worker": "dw", "date": iso_in(0), "job": "noop"})
    assert daemon.wait_status("task:fine", {"done", "err"}, timeout=60)["status"] == "done"


async def test_the_python_module_runs_a_chain_with_dependencies(couch: Couch, dbname: str) -> None:
    seen: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    async def link(ctx: TaskContext, n: int) -> int:
        order.append(ctx.id)
        seen[ctx.id] = ctx.dependencies
        return n * 10

    async with connect(couch.url_for(), database=dbname, run={"w": {"link": link}}) as after:
        first = await after.schedule("w", "link", args=[1], id="one")
        second = await after.schedule("w", "link", args=[2], id="two", after=["one"])
        third = await after.schedule("w", "link", args=[3], id="three", after=["one", "two"], after_failed="run")
        done = await after.wait(third["_id"], timeout=90)
        assert done["status"] == "done", done
        assert order == [first["_id"], second["_id"], third["_id"]]
        assert seen[third["_id"]] == {"task:one": {"status": "done", "result": 10, "error": None}, "task:two": {"status": "done", "result": 20, "error": None}}
        assert seen[first["_id"]] == {}
        try:
            await after.schedule("w", "link", args=[4], after=["task:missing"])
        except Exception as exc:
            assert "task:missing" in str(exc)
        else:
            raise AssertionError("an unknown dependency was accepted")


def test_a_remote_job_sees_its_dependencies(daemon: Daemon, remote: Callable[..., Remote]) -> None:  # noqa: F811
    """The worker protocol's delivery carries the dependencies' outcomes: ``after.client``'s ``ctx.dependencies``."""
    w = remote(daemon, "far", args=("--jobs", "remotedepjobs"))
    connected(daemon, "far", w)
    daemon.create(
        [
            {"id": "up", "worker": "far", "date": iso_in(0), "job": {"name": "dependencies", "kwargs": {"value": 41}}},
            {"id": "down", "worker": "far", "date": iso_in(0), "job": {"name": "dependencies", "kwargs": {"value": 42}}, "after": ["up"]},
        ]
    )
    down = daemon.wait_status("task:down", {"done", "err"}, timeout=90)
    assert down["status"] == "done", down.get("error")
    seen = down["result"]["dependencies"]
    assert seen == {"task:up": {"status": "done", "result": {"value": 41, "dependencies": {}}, "error": None}}, seen


def test_two_daemons_run_a_chain_and_a_diamond_each_task_once_in_order(start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """Both daemons run worker ``dw``: each tracks the dependencies itself, the claims
    decide who runs what, and every task runs once, after what it waits for."""
    one, two = start_daemon("d1"), start_daemon("d2")
    one.start_worker("dw", jobs=["depjobs"])
    two.start_worker("dw", jobs=["depjobs"])

    def both_seen() -> bool:  # each daemon knows the other runs dw (its heartbeat): claims are shared
        return all(len([w for w in d.api("GET", "/workers")[1]["workers"] if w.get("name") == "dw"]) == 2 for d in (one, two))

    wait_until(both_seen, 60, "each daemon to see the other's worker dw")
    rec = tmp_path / "runs.txt"
    chain = [step(rec, "dw", f"c{i:02d}", after=[f"c{i - 1:02d}"] if i else None, value=i) for i in range(30)]
    diamond = [
        step(rec, "dw", "top", value="top"),
        *(step(rec, "dw", f"mid{i}", after=["top"], value=i) for i in range(5)),
        step(rec, "dw", "bottom", after=[f"mid{i}" for i in range(5)], value="bottom"),
    ]
    one.create(chain[::-1] + diamond)
    last = two.wait_status("task:c29", {"done", "err"}, timeout=120)
    bottom = two.wait_status("task:bottom", {"done", "err"}, timeout=120)
    assert last["status"] == "done" and bottom["status"] == "done", (last.get("error"), bottom.get("error"))
    lines = rec.read_text().splitlines()
    starts = [line.split()[0] for line in lines if line.split()[1] == "start"]
    assert len(starts) == len(set(starts)) == 37, starts  # each once
    runs = runs_of(rec)
    for i in range(1, 30):
        assert runs[f"task:c{i:02d}"]["start"] >= runs[f"task:c{i - 1:02d}"]["end"], i
    assert runs["task:bottom"]["start"] >= max(runs[f"task:mid{i}"]["end"] for i in range(5))
    assert set(bottom["result"]["seen"]) == {f"task:mid{i}" for i in range(5)}
    # The claims are shared out between the daemons (by task id), so both took part.
    claimers = {e["by"] for i in range(30) for e in one.task(f"task:c{i:02d}")["history"] if e["status"] == "schedule"}
    assert len(claimers) == 2, claimers


def test_a_purged_dependency_counts_as_what_it_ended_as(start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """A dependency purged after its retention, before its dependent comes due: its
    tombstone says it was done, so the dependent runs (its result is gone with it). A
    task can even be created after one purged; a deleted one is unknown (422)."""
    d = start_daemon("d0", AFTER_SCHEDULER_PURGE_INTERVAL="1")
    d.start_worker("dw", jobs=["depjobs"])
    rec = tmp_path / "runs.txt"
    d.create([step(rec, "dw", "early", value="gone", retention=0), step(rec, "dw", "late", after=["early"]) | {"date": iso_in(3600)}])
    wait_until(lambda: d.api("GET", "/tasks/task:early")[0] == 404, 60, "the done dependency to be purged")
    assert d.task("task:late")["waiting_on"] == []
    assert d.api("POST", "/tasks/task:late/reschedule", {"date": iso_in(0)})[0] == 200
    late = d.wait_status("task:late", {"done", "err"}, timeout=60)
    assert late["status"] == "done", late.get("error")
    assert late.get("dependencies") == {"task:early": {"status": "done", "result": None, "error": None}}, late.get("error")
    assert d.api("POST", "/tasks", step(rec, "dw", "after-purge", after=["early"]))[0] == 201
    assert d.wait_status("task:after-purge", {"done", "err"}, timeout=60)["status"] == "done"
    d.create({"id": "removed", "worker": "dw", "date": iso_in(3600), "job": "noop"})
    assert d.api("DELETE", "/tasks/task:removed")[0] == 200
    status, body = d.api("POST", "/tasks", step(rec, "dw", "too-late", after=["removed"]))
    assert status == 422 and "task:removed" in body["message"], body
