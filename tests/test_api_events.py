"""``GET /events``: server-sent events of task changes from the CouchDB ``_changes`` feed,
filtered by worker and task, resumable with ``Last-Event-ID`` (missed events first, each once)."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from typing import Any

from conftest import Daemon, tid


class EventStream:
    """A minimal server-sent events client over http.client (what a browser's EventSource does)."""

    def __init__(self, base: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.last_id: str | None = None

    def next(self) -> tuple[str, dict[str, Any]]:
        """The next event (id, data); comments and keep-alives are skipped."""
        fields: dict[str, str] = {}
        while True:
            line = self.resp.readline().decode()
            if line == "":
                raise EOFError("stream ended")
            line = line.rstrip("\n")
            if line == "":
                if "data" in fields:
                    self.last_id = fields.get("id")
                    assert fields.get("event") == "task", fields
                    return fields["id"], json.loads(fields["data"])
                fields = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value

    def until(self, done: Any, timeout: float = 20) -> list[dict[str, Any]]:
        """Events until ``done(event)`` is true (that one included)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, ev = self.next()
            out.append(ev)
            if done(ev):
                return out
        raise AssertionError(f"no matching event within {timeout}s; got {out}")

    def close(self) -> None:
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_events_stream_filter_and_resume(daemon: Daemon) -> None:
    daemon.start_worker("ev")
    with contextlib.ExitStack() as streams:
        mine = streams.enter_context(EventStream(daemon.base, "/events?worker=ev"))
        assert mine.resp.status == 200
        assert mine.resp.getheader("Content-Type") == "text/event-stream"
        everything = streams.enter_context(EventStream(daemon.base, "/events"))

        other = daemon.create({"worker": "other", "date": "2036-01-01", "job": "noop"})["id"]
        task = daemon.create({"worker": "ev", "date": time.time(), "job": "noop"})["id"]
        seen = mine.until(lambda ev: ev["id"] == task and ev["status"] == "done")
        assert {ev["worker"] for ev in seen} == {"ev"}  # the other worker's task is not in this stream
        statuses = [ev["status"] for ev in seen if ev["id"] == task]
        assert statuses[0] == "waiting" and statuses[-1] == "done"
        assert [s for s in ("waiting", "schedule", "scheduled", "done") if s in statuses] == ["waiting", "schedule", "scheduled", "done"]
        done_event = seen[-1]
        assert done_event["job"] == "noop" and done_event["rev"] and done_event["date"]
        # Unfiltered, both tasks are there.
        ids = {ev["id"] for ev in everything.until(lambda ev: ev["id"] == task and ev["status"] == "done")}
        assert {task, other} <= ids

        # Disconnect after the first event of a new task; it runs meanwhile; resume from there.
        second = daemon.create({"worker": "ev", "date": time.time() + 1, "job": "noop"})["id"]
        first_id, first = mine.next()
        assert (first["id"], first["status"]) == (second, "waiting")
        mine.close()
        daemon.wait_status(second, "done")
        # What was missed comes first: each task changed since, once, as it is now (the
        # CouchDB feed keeps the latest revision of each document).
        resumed = streams.enter_context(EventStream(daemon.base, f"/events?task={tid(second)}", headers={"Last-Event-ID": first_id}))
        missed = resumed.until(lambda ev: ev["status"] == "done", timeout=10)
        assert [(ev["id"], ev["status"]) for ev in missed] == [(second, "done")]
        # Then the live changes of that task, each once; a deletion is an event too.
        assert daemon.api("POST", f"/tasks/{tid(second)}/reschedule", {"date": "2036-02-01"})[0] == 200
        assert daemon.api("DELETE", f"/tasks/{tid(second)}")[0] == 200
        live = resumed.until(lambda ev: ev["status"] == "deleted", timeout=10)
        assert [ev["status"] for ev in live] == ["reschedule", "deleted"]

        # `since` does what Last-Event-ID does, for clients that cannot send headers; a
        # deletion keeps its worker, so that worker's watchers see it.
        again = streams.enter_context(EventStream(daemon.base, f"/events?worker=ev&since={first_id}"))
        assert [(ev["id"], ev["status"]) for ev in again.until(lambda ev: ev["status"] == "deleted", timeout=10)] == [(second, "deleted")]


def test_bad_last_event_id_is_a_json_400(daemon: Daemon) -> None:
    status, body = daemon.api("GET", "/events", headers={"Last-Event-ID": "12; DROP"})
    assert status == 400
    assert body["error"] == "invalid" and body["field"] == "Last-Event-ID"
