"""Jitter and excluded dates end to end: a real daemon on a real port, real worker processes,
the embedded CouchDB; through REST, the CLI, the Python module and documents written
straight into CouchDB. Waits are on conditions with generous deadlines; the only timing
margin is on the late side (a loaded machine starts a run late, never early)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import CLIENT_PASSWORD, CLIENT_USER, Couch, Daemon, tid, wait_until

from after import calendar, timing
from after.jobs import TaskContext
from after.scheduler import connect


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def today_and_tomorrow() -> tuple[str, datetime]:
    """An exclusion of today and tomorrow (UTC: a test running at midnight still has a day
    excluded), and the first instant after it."""
    today = datetime.now(UTC).date()
    after = today + timedelta(days=2)
    return f"{today.isoformat()}/{(today + timedelta(days=1)).isoformat()}", datetime(after.year, after.month, after.day, tzinfo=UTC)


def test_an_excluded_day_does_not_fire_while_the_same_cron_does(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    span, first_free = today_and_tomorrow()
    skipped, control = tmp_path / "skipped", tmp_path / "control"
    excluded = daemon.create({"id": "off", "worker": "w", "cron": "* * * * * *", "exclude": [span], "job": {"name": "count", "arguments": [str(skipped)]}})
    ran = daemon.create({"id": "on", "worker": "w", "cron": "* * * * * *", "job": {"name": "count", "arguments": [str(control)]}})
    # The same cron without the exclusion runs three times: the excluded one had three chances.
    wait_until(lambda: len(lines(control)) >= 3, 60, "three runs of the task without exclusions")
    assert not skipped.exists()
    doc = daemon.task(excluded["id"])
    assert doc["status"] == "waiting" and not doc["runs"]
    assert timing.parse_date(doc["date"]) == first_free and doc["occurrence"] == doc["date"]
    assert doc["exclude"] == [span]
    assert doc["next_occurrences"][0] == timing.fmt(first_free) and doc["next_runs"] == doc["next_occurrences"]
    assert all(timing.parse_date(d) >= first_free for d in doc["next_runs"])
    for task_id in (ran["id"], excluded["id"]):
        assert daemon.api("POST", f"/tasks/{tid(task_id)}/cancel")[0] == 200


def test_jitter_fires_at_nominal_plus_its_offset(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    reply = daemon.create({"id": "spread", "worker": "w", "cron": "*/5 * * * * *", "jitter": 4, "job": {"name": "count", "arguments": [str(out)]}})
    first = daemon.task(reply["id"])
    nominal = timing.parse_date(first["occurrence"])
    assert nominal.second % 5 == 0 and nominal.microsecond == 0
    assert timing.parse_date(first["date"]) == nominal + timedelta(seconds=calendar.offset("task:spread", nominal, 4))
    for date, occ in zip(first["next_runs"], first["next_occurrences"], strict=True):
        assert timing.parse_date(date) - timing.parse_date(occ) == timedelta(seconds=calendar.offset("task:spread", timing.parse_date(occ), 4))

    def runs() -> list[dict[str, Any]]:
        return [r for r in daemon.task(reply["id"])["runs"] if r.get("started")]

    wait_until(lambda: len(runs()) >= 3, 90, "three jittered runs")
    done = runs()
    offsets = []
    for run in done:
        occ = timing.parse_date(run["occurrence"])
        due = timing.parse_date(run["date"])
        started = timing.parse_date(run["started"])
        offsets.append((due - occ).total_seconds())
        assert due - occ == timedelta(seconds=calendar.offset("task:spread", occ, 4)), run
        assert started >= due - timedelta(milliseconds=1), run  # never before its jittered time
        assert started <= due + timedelta(seconds=60), run  # late only as much as a loaded machine makes it
    assert len(set(offsets)) > 1, offsets  # spread per occurrence, not one delay
    assert len({r["occurrence"] for r in done}) == len(done)  # one run per occurrence
    assert daemon.api("POST", f"/tasks/{tid(reply['id'])}/cancel")[0] == 200


def test_a_direct_document_runs_once_then_skips_its_excluded_days(daemon: Daemon, couch: Couch, dbname: str, tmp_path: Path) -> None:
    daemon.start_worker("w")
    out = tmp_path / "runs"
    span, first_free = today_and_tomorrow()
    now = timing.fmt(datetime.now(UTC))
    base = {"type": "task", "worker": "w", "status": "waiting", "date": now, "cron": "* * * * * *", "job": {"name": "count", "arguments": [str(out)]}}
    good = {**base, "_id": "task:direct-cal", "exclude": [span], "jitter": 30}
    bad = {**base, "_id": "task:direct-bad", "exclude": ["2026-02-30"]}

    async def write() -> None:
        async with couch.store(dbname, user=CLIENT_USER, password=CLIENT_PASSWORD) as store:
            await store.put(good)
            await store.put(bad)

    asyncio.run(write())
    err = daemon.wait_status("task:direct-bad", "err", timeout=60)
    assert err["error"]["reason"] == "invalid" and err["error"]["field"] == "exclude[0]", err["error"]
    # Its given date runs (a client's first date is kept); the next occurrence is after the exclusion, jittered.
    wait_until(lambda: daemon.task("task:direct-cal")["status"] == "reschedule" and len(lines(out)) == 1, 60, "the first run of the direct document")
    doc = daemon.task("task:direct-cal")
    assert doc["runs"][0]["status"] == "done"
    assert doc["occurrence"] == timing.fmt(first_free)
    assert timing.parse_date(doc["date"]) == first_free + timedelta(seconds=calendar.offset("task:direct-cal", first_free, 30))
    assert len(lines(out)) == 1


def test_cli_adds_and_shows_jitter_and_exclusions(daemon: Daemon) -> None:
    res = daemon.cli(
        "task", "add", "w", "noop", "--id", "cli-cal", "--cron", "0 9 * * *", "--timezone", "Europe/Lisbon",
        "--jitter", "90", "--exclude", "2030-12-25", "--exclude", "2030-12-31/2031-01-01",
    )  # fmt: skip
    assert res.stdout.strip() == "task:cli-cal"
    shown = json.loads(daemon.cli("task", "show", "cli-cal").stdout)
    assert shown["jitter"] == 90 and shown["exclude"] == ["2030-12-25", "2030-12-31/2031-01-01"]
    assert len(shown["next_runs"]) == len(shown["next_occurrences"]) == 5
    bad = daemon.cli("task", "add", "w", "noop", "--cron", "0 9 * * *", "--exclude", "2030-12-31/2030-12-01", check=False)
    assert bad.returncode == 1 and "exclude[0]" in bad.stderr and "ends before it starts" in bad.stderr and "422" in bad.stderr
    oneshot = daemon.cli("task", "add", "w", "noop", "--jitter", "5", check=False)
    assert oneshot.returncode == 1 and "jitter: only meaningful with cron" in oneshot.stderr
    # over REST: the error names the field, nothing is stored
    status, body = daemon.api("POST", "/tasks", {"id": "never", "worker": "w", "job": "noop", "cron": "0 9 * * *", "exclude": ["2000-01-01/2999-12-31"]})
    assert status == 422 and body["field"] == "exclude" and "no run" in body["message"], body
    nine = {"worker": "w", "job": "noop", "cron": "0 9 * * *"}
    status, body = daemon.api("POST", "/tasks", [nine, {**nine, "exclude": [7]}])
    assert status == 400 and body["field"] == "[1].exclude[0]", body
    assert daemon.api("GET", "/tasks/task:never")[0] == 404


async def test_python_module_schedules_with_jitter_and_exclusions(couch: Couch, dbname: str) -> None:
    async with connect(couch.url_for(), database=dbname) as after:
        doc = await after.schedule("w", "noop", cron="30 2 * * *", timezone="America/New_York", jitter=600, exclude=["2031-03-09"])
        stored = await after.get(doc["_id"])
    occ = timing.parse_date(stored["occurrence"])
    assert occ.astimezone(timing.zone("America/New_York")).date().isoformat() != "2031-03-09"
    assert timing.parse_date(stored["date"]) == occ + timedelta(seconds=calendar.offset(doc["_id"], occ, 600))
    assert stored["jitter"] == 600 and stored["exclude"] == ["2031-03-09"]


async def test_a_jittered_job_sees_its_nominal_occurrence(couch: Couch, dbname: str) -> None:
    seen: list[tuple[datetime | None, float]] = []

    async def occ(ctx: TaskContext) -> None:
        seen.append((ctx.occurrence, time.time()))

    async with connect(couch.url_for(), database=dbname, run={"cal": {"occ": occ}}) as after:
        doc = await after.schedule("cal", "occ", cron="*/2 * * * * *", jitter=1.5)
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await after.cancel(doc["_id"])
    assert len(seen) >= 2
    for occurrence, at in seen:
        assert occurrence is not None and occurrence.second % 2 == 0 and occurrence.microsecond == 0
        assert at >= occurrence.timestamp() + calendar.offset(doc["_id"], occurrence, 1.5) - 0.002


def test_a_missed_jittered_occurrence_is_recorded_and_the_next_is_placed(daemon: Daemon, couch: Couch, dbname: str) -> None:
    """misfire ``skip``: an occurrence found too late is recorded ``missed`` with its nominal
    time, and the task moves to the next occurrence after now, jittered, not on an excluded day."""
    daemon.start_worker("w")
    now = datetime.now(UTC)
    yesterday = (now - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    tomorrow = (now + timedelta(days=1)).date().isoformat()
    doc: dict[str, Any] = {
        "_id": "task:missed-cal", "type": "task", "worker": "w", "status": "waiting", "job": "noop",
        "cron": "0 9 * * *", "jitter": 600, "exclude": [tomorrow], "misfire": {"policy": "skip", "grace": 1},
    }  # fmt: skip
    doc.update(calendar.place(doc, yesterday).fields())

    async def write() -> None:
        async with couch.store(dbname, user=CLIENT_USER, password=CLIENT_PASSWORD) as store:
            await store.put(dict(doc))

    asyncio.run(write())
    wait_until(lambda: daemon.task("task:missed-cal")["status"] == "reschedule", 60, "the missed occurrence")
    got = daemon.task("task:missed-cal")
    assert got["runs"] == [{"date": doc["date"], "status": "missed", "occurrence": timing.fmt(yesterday)}]
    expected = calendar.next_nominal(doc, timing.parse_date(got["history"][-1]["at"]))  # after the scheduler's now
    assert timing.parse_date(got["occurrence"]) == expected and expected.date().isoformat() != tomorrow
    assert got["date"] == calendar.place(doc, expected).fields()["date"]
