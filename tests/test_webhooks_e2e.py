"""Completion webhooks end to end: real daemons, real workers, a real HTTP receiver on loopback
(an aiohttp server in a thread of the test) that checks every signature."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import CLIENT_PASSWORD, CLIENT_USER, Couch, Daemon, iso_in, tid, wait_until

from after import timing, webhooks
from after.scheduler import connect

SECRET = "test-secret-0123"
#: Quick retries, so a test does not wait for the production backoff.
FAST = {"AFTER_NOTIFY_SECRET": SECRET, "AFTER_NOTIFY_BACKOFF_BASE": "0.2", "AFTER_NOTIFY_BACKOFF_MAX": "1"}


class Receiver:
    """An HTTP receiver: records each request (path, headers, body, signature valid?);
    ``fail[path] = n`` answers 500 to the first n requests of ``path``; the paths in ``hang``
    never answer."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.requests: list[dict[str, Any]] = []
        self.fail: dict[str, int] = {}
        self.hang = {"/hang"}
        self.lock = threading.Lock()
        self.port = 0
        ready = threading.Event()

        async def serve() -> None:
            from aiohttp import web

            self.released = asyncio.Event()

            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        assert ready.wait(30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        data = await request.read()
        signature = request.headers.get(webhooks.SIGNATURE, "")
        entry = {
            "path": request.path,
            "headers": dict(request.headers),
            "body": json.loads(data),
            "signed": webhooks.verify(SECRET, data, signature),
            "time": time.time(),
        }
        with self.lock:
            self.requests.append(entry)
            left = self.fail.get(request.path, 0)
            if left:
                self.fail[request.path] = left - 1
        if request.path in self.hang:
            await self.released.wait()
        if not entry["signed"]:
            return web.json_response({"error": "bad signature"}, status=401)
        if left:
            return web.json_response({"error": "try later"}, status=500)
        return web.json_response({"ok": True})

    def on(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        async def stop() -> None:
            self.released.set()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def deliveries_settled(d: Daemon, task_id: str, count: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        records = d.task(task_id).get("deliveries") or []
        return len(records) >= count and all(r.get("state") != "sending" for r in records)

    return check


def test_retried_until_delivered_and_recorded(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """The receiver fails (500) the first two deliveries: the third succeeds, and the task
    records one delivery, attempts 3, status 200; every request was signed, with one id."""
    d = start_daemon(**FAST)
    d.start_worker("hooks")
    receiver.fail["/flaky"] = 2
    hook = {"url": receiver.url("/flaky"), "on": ["done"]}
    task = d.create({"worker": "hooks", "date": iso_in(0), "job": {"name": "echo", "arguments": [7]}, "notify": [hook]})
    d.wait_status(task["id"], "done", timeout=60)
    wait_until(deliveries_settled(d, task["id"]), 60, "the delivery recorded")
    (record,) = d.task(task["id"])["deliveries"]
    assert record["state"] == "delivered" and record["attempts"] == 3 and record["status"] == 200, record
    assert record["url"] == receiver.url("/flaky") and record["outcome"] == "done" and record["error"] is None
    got = receiver.on("/flaky")
    assert len(got) == 3 and all(r["signed"] for r in got)
    assert {r["headers"][webhooks.DELIVERY] for r in got} == {record["id"]}
    body = got[-1]["body"]
    assert body["task"] == task["id"] and body["outcome"] == "done" and body["worker"] == "hooks" and body["job"] == "echo"
    assert body["result"] == {"args": [7], "kwargs": {}} and body["attempts"] == 1 and body["delivery"] == record["id"]
    assert body["started"] and body["finished"]
    assert int(got[-1]["headers"][webhooks.TIMESTAMP]) > 0
    # After the retries: the metric counts it once.
    status, text = d.api("GET", "/metrics")
    assert status == 200 and 'after_webhook_deliveries_total{outcome="delivered"} 1.0' in text


def test_global_err_hook(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """``[[notify.hooks]]`` on ``err``: told of a failing task, not of one that succeeds."""
    hooks = json.dumps([{"url": receiver.url("/ops"), "on": ["err"]}])
    d = start_daemon(AFTER_NOTIFY_HOOKS=hooks, **FAST)
    d.start_worker("hooks")
    ok = d.create({"worker": "hooks", "date": iso_in(0), "job": "echo"})
    bad = d.create({"worker": "hooks", "date": iso_in(0), "job": {"name": "fail", "kwargs": {"message": "disk full"}}})
    d.wait_status(ok["id"], "done", timeout=60)
    d.wait_status(bad["id"], "err", timeout=60)
    wait_until(deliveries_settled(d, bad["id"]), 60, "the err delivery recorded")
    (got,) = receiver.on("/ops")
    assert got["signed"] and got["body"]["task"] == bad["id"] and got["body"]["outcome"] == "err"
    assert got["body"]["error"]["reason"] == "exception" and "disk full" in got["body"]["error"]["message"]
    time.sleep(2)  # the done task's change has long been seen: nothing comes of it
    assert len(receiver.on("/ops")) == 1 and not d.task(ok["id"]).get("deliveries")


def test_hanging_receiver_blocks_nothing(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """Deliveries to a receiver that never answers fill every sender; tasks still start on time."""
    d = start_daemon(AFTER_NOTIFY_TIMEOUT="120", AFTER_NOTIFY_SENDERS="2", **FAST)
    d.start_worker("hooks")
    hanging = [d.create({"worker": "hooks", "date": iso_in(0), "job": "echo", "notify": [{"url": receiver.url("/hang")}]}) for _ in range(4)]
    for t in hanging:
        d.wait_status(t["id"], "done", timeout=60)
    wait_until(lambda: len(receiver.on("/hang")) >= 2, 60, "the senders hanging on the receiver")
    later = [d.create({"worker": "hooks", "date": iso_in(4 + i), "job": "echo", "notify": [{"url": receiver.url("/fine")}]}) for i in range(3)]
    for t in later:
        doc = d.wait_status(t["id"], "done", timeout=60)
        lag = (timing.parse_date(doc["started"]) - timing.parse_date(doc["date"])).total_seconds()
        assert lag < 10.0, f"started {lag:.3f}s late with the senders hanging (they wait up to 120 s)"
    assert len(receiver.on("/hang")) == 2  # still hanging: nothing else was sent to it
    assert all(r.get("state") == "sending" for t in hanging[:1] for r in d.task(t["id"]).get("deliveries") or [])


def test_two_daemons_deliver_each_outcome_once(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """Two daemons run the same worker name and both see every outcome: each is POSTed once."""
    d0 = start_daemon("d0", **FAST)
    d1 = start_daemon("d1", **FAST)
    for d in (d0, d1):
        d.start_worker("hooks")
    tasks = [d0.create({"worker": "hooks", "date": iso_in(1), "job": "echo", "notify": [{"url": receiver.url("/once")}]}) for _ in range(8)]
    for t in tasks:
        d0.wait_status(t["id"], "done", timeout=60)
        wait_until(deliveries_settled(d0, t["id"]), 60, "the delivery recorded")
    time.sleep(2)
    got = receiver.on("/once")
    assert Counter(r["body"]["task"] for r in got) == Counter({t["id"]: 1 for t in tasks})
    assert all(len(d0.task(t["id"])["deliveries"]) == 1 for t in tasks)


def test_cron_runs_each_delivered(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """A cron task: every run's outcome is delivered once, with its occurrence."""
    d = start_daemon(**FAST)
    d.start_worker("hooks")
    task = d.create({"worker": "hooks", "cron": "*/5 * * * * *", "job": "echo", "notify": [{"url": receiver.url("/cron"), "on": ["done"]}]})
    wait_until(lambda: len(receiver.on("/cron")) >= 3, 90, "three runs delivered")
    d.api("POST", f"/tasks/{tid(task['id'])}/cancel")
    d.wait_status(task["id"], "canceled", timeout=60)
    time.sleep(3)
    got = receiver.on("/cron")
    occurrences = [r["body"]["occurrence"] for r in got]
    assert len(occurrences) == len(set(occurrences)), occurrences
    assert all(r["body"]["outcome"] == "done" and r["signed"] for r in got)
    wait_until(deliveries_settled(d, task["id"], len(got)), 60, "every run's delivery recorded")
    records = d.task(task["id"])["deliveries"]
    assert [r["occurrence"] for r in records] == occurrences and all(r["state"] == "delivered" for r in records)


def test_delivery_in_flight_resumes_after_restart(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """A delivery still waiting for its receiver when the daemon stops is kept in the state
    directory and sent again, with the same delivery id, by the restarted daemon."""
    receiver.hang.add("/later")
    d = start_daemon("d0", AFTER_NOTIFY_TIMEOUT="120", **FAST)
    d.start_worker("hooks")
    task = d.create({"worker": "hooks", "date": iso_in(0), "job": "echo", "notify": [{"url": receiver.url("/later")}]})
    d.wait_status(task["id"], "done", timeout=60)
    wait_until(lambda: len(receiver.on("/later")) == 1, 60, "the delivery sent (and hanging)")
    assert d.stop() == 0
    saved = json.loads((d.state / "webhooks.json").read_text())
    assert [j["task"] for j in saved["deliveries"]] == [task["id"]]
    receiver.hang.discard("/later")
    again = start_daemon("d0", port=int(d.base.rsplit(":", 1)[1]), state=d.state, AFTER_NOTIFY_TIMEOUT="120", **FAST)
    wait_until(deliveries_settled(again, task["id"]), 60, "the resumed delivery recorded")
    (record,) = again.task(task["id"])["deliveries"]
    assert record["state"] == "delivered" and record["status"] == 200
    got = receiver.on("/later")
    assert len(got) == 2 and {r["headers"][webhooks.DELIVERY] for r in got} == {record["id"]}
    wait_until(lambda: json.loads((d.state / "webhooks.json").read_text())["deliveries"] == [], 30, "the checkpoint emptied")


def test_cli_add_notify_and_show(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """``after task add --notify URL --notify-on done``; ``after task show`` has the deliveries."""
    d = start_daemon(**FAST)
    d.start_worker("hooks")
    url = receiver.url("/cli")
    task_id = d.cli("task", "add", "hooks", "echo", "x", "--notify", url, "--notify", receiver.url("/cli2"), "--notify-on", "done,err").stdout.strip()
    stored = d.task(task_id)
    assert stored["notify"] == [{"url": url, "on": ["done", "err"]}, {"url": receiver.url("/cli2"), "on": ["done", "err"]}]
    d.wait_status(task_id, "done", timeout=60)
    wait_until(deliveries_settled(d, task_id, 2), 60, "both deliveries recorded")
    shown = json.loads(d.cli("task", "show", task_id).stdout)
    assert sorted((r["url"], r["state"], r["status"]) for r in shown["deliveries"]) == [(url, "delivered", 200), (receiver.url("/cli2"), "delivered", 200)]
    bad = d.cli("task", "add", "hooks", "echo", "--notify", url, "--notify-on", "done,sometimes", check=False)
    assert bad.returncode == 2 and "--notify-on" in bad.stderr and "sometimes" in bad.stderr
    bad = d.cli("task", "add", "hooks", "echo", "--notify", "ftp://x.example/h", check=False)
    assert bad.returncode == 1 and "notify[0].url" in bad.stderr


async def test_python_module_notify(start_daemon: Callable[..., Daemon], receiver: Receiver, couch: Couch, dbname: str) -> None:
    """``after.schedule(..., notify=[...])`` from a program; the daemon delivers it."""
    d = start_daemon(**FAST)
    d.start_worker("hooks")
    async with connect(couch.url_for(), database=dbname) as after:
        task = await after.schedule("hooks", "echo", args=[1], notify=[{"url": receiver.url("/py"), "on": ["done"]}])
        done = await after.wait(task["_id"], timeout=60)
        assert done["status"] == "done"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(r.get("state") == "delivered" for r in (await after.get(task["_id"])).get("deliveries") or []):
            await asyncio.sleep(0.2)
        (record,) = (await after.get(task["_id"]))["deliveries"]
    assert record["state"] == "delivered" and record["status"] == 200
    assert [r["body"]["task"] for r in receiver.on("/py")] == [task["_id"]]


def test_outcome_written_during_shutdown_is_delivered_after_restart(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """A job still running at SIGTERM finishes during the shutdown, after the daemon's feed
    stopped; the restarted daemon reads the feed from where it left off and delivers it."""
    d = start_daemon("d0", **FAST)
    d.start_worker("hooks")
    task = d.create({"worker": "hooks", "date": iso_in(0), "job": {"name": "hang", "kwargs": {"seconds": 3}}, "notify": [{"url": receiver.url("/drain")}]})
    d.wait_status(task["id"], "scheduled", timeout=60)
    assert d.stop() == 0
    assert receiver.on("/drain") == []
    again = start_daemon("d0", port=int(d.base.rsplit(":", 1)[1]), state=d.state, **FAST)
    assert again.task(task["id"])["status"] == "done"
    wait_until(deliveries_settled(again, task["id"]), 60, "the delivery recorded after the restart")
    (got,) = receiver.on("/drain")
    assert got["body"]["task"] == task["id"] and got["body"]["outcome"] == "done" and got["signed"]


async def test_direct_documents(start_daemon: Callable[..., Daemon], receiver: Receiver, couch: Couch, dbname: str) -> None:
    """A task written straight into CouchDB with ``notify`` is delivered; one whose ``notify``
    is malformed ends ``err`` (invalid) naming the field, and nothing stops."""
    d = start_daemon(**FAST)
    d.start_worker("hooks")
    base = {"type": "task", "status": "waiting", "worker": "hooks", "job": "echo", "date": iso_in(0)}
    async with couch.store(dbname, user=CLIENT_USER, password=CLIENT_PASSWORD) as store:
        await store.put({**base, "_id": "task:direct-hooked", "notify": [{"url": receiver.url("/direct"), "on": ["done"]}]})
        await store.put({**base, "_id": "task:direct-bad", "notify": [{"url": "gopher://x.example", "on": ["done"]}]})
    bad = d.wait_status("task:direct-bad", "err", timeout=60)
    assert bad["error"]["reason"] == "invalid" and bad["error"]["field"] == "notify[0].url", bad["error"]
    d.wait_status("task:direct-hooked", "done", timeout=60)
    wait_until(deliveries_settled(d, "task:direct-hooked"), 60, "the direct task's delivery recorded")
    (got,) = receiver.on("/direct")
    assert got["body"]["task"] == "task:direct-hooked" and got["signed"]


def test_canceled_outcome(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    """A waiting task canceled (acknowledged by the scheduler) tells hooks on ``canceled`` only."""
    d = start_daemon(**FAST)
    hooks = [{"url": receiver.url("/canceled"), "on": ["canceled"]}, {"url": receiver.url("/done"), "on": ["done"]}]
    task = d.create({"worker": "hooks", "date": iso_in(3600), "job": "echo", "notify": hooks})
    status, _ = d.api("POST", f"/tasks/{tid(task['id'])}/cancel")
    assert status == 200
    d.wait_status(task["id"], "canceled", timeout=60)
    wait_until(deliveries_settled(d, task["id"]), 60, "the canceled delivery recorded")
    (got,) = receiver.on("/canceled")
    assert got["body"]["outcome"] == "canceled" and got["body"]["result"] is None and got["signed"]
    assert receiver.on("/done") == []
