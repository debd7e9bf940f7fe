"""Completion webhooks, the pure decisions (after/webhooks.py), with tables and a fake clock;
the config section [notify]; the task field ``notify``."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from after import config, model, webhooks
from after.errors import ConfigError, InvalidInput

NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def done_task(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": "task:a",
        "type": "task",
        "worker": "w",
        "job": {"name": "echo", "arguments": [], "kwargs": {}},
        "status": "done",
        "result": {"n": 1},
        "error": None,
        "attempts": 1,
        "started": at(-2),
        "finished": at(-1),
        "history": [{"status": "waiting", "at": at(-10), "by": "api"}, {"status": "done", "at": at(-1), "by": "worker:w"}],
        "notify": [{"url": "http://127.0.0.1:1/h", "on": ["done", "err", "canceled"]}],
    }
    doc.update(extra)
    return doc


# -- signature -------------------------------------------------------------------------------


def test_signature_known_vector() -> None:
    # RFC 4231, test case 2.
    assert webhooks.sign("Jefe", b"what do ya want for nothing?") == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert webhooks.verify("Jefe", b"what do ya want for nothing?", "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert not webhooks.verify("jefe", b"what do ya want for nothing?", "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_headers_sign_the_exact_body() -> None:
    data = webhooks.body({"b": 1, "a": [1, 2]})
    assert data == b'{"a":[1,2],"b":1}'
    head = webhooks.headers("s3cret", data, "dlv-1", 1_700_000_000)
    assert head[webhooks.SIGNATURE] == "sha256=" + hmac.new(b"s3cret", data, hashlib.sha256).hexdigest()
    assert head[webhooks.TIMESTAMP] == "1700000000"
    assert head[webhooks.DELIVERY] == "dlv-1"
    assert webhooks.SIGNATURE not in webhooks.headers("", data, "dlv-1", 0)  # no secret: unsigned


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "ok"),
        (204, "ok"),
        (None, "retry"),
        (500, "retry"),
        (503, "retry"),
        (408, "retry"),
        (429, "retry"),
        (400, "give_up"),
        (404, "give_up"),
        (301, "give_up"),
    ],
)
def test_verdict(status: int | None, verdict: str) -> None:
    assert webhooks.verdict(status) == verdict


def test_backoff_schedule() -> None:
    assert webhooks.schedule(5, base=1.0, cap=60.0) == [1.0, 2.0, 4.0, 8.0]
    assert webhooks.schedule(8, base=10.0, cap=60.0) == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0]
    assert webhooks.schedule(1, base=1.0, cap=60.0) == []
    assert webhooks.backoff(10_000, base=1.0, cap=5.0) == 5.0  # no overflow


# -- who is told of what ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "task_on", "global_on", "urls"),
    [
        ("done", ["done"], None, ["http://127.0.0.1:1/h"]),
        ("err", ["done"], None, []),
        ("err", ["done"], ["err"], ["http://127.0.0.1:2/g"]),
        ("canceled", ["done", "err"], ["err"], []),
        ("canceled", None, None, ["http://127.0.0.1:1/h"]),  # no `on`: every outcome
        ("done", ["done"], ["done"], ["http://127.0.0.1:1/h", "http://127.0.0.1:2/g"]),
    ],
)
def test_filtering(status: str, task_on: list[str] | None, global_on: list[str] | None, urls: list[str]) -> None:
    hook: dict[str, Any] = {"url": "http://127.0.0.1:1/h"}
    if task_on is not None:
        hook["on"] = task_on
    doc = done_task(status=status, notify=[hook], history=[{"status": status, "at": at(-1), "by": "worker:w"}])
    glob = [{"url": "http://127.0.0.1:2/g", "on": global_on}] if global_on else []
    got = webhooks.pending(doc, glob, now=NOW, max_age=3600)
    assert sorted(d.url for d in got) == urls
    assert all(d.outcome.status == status for d in got)


def test_one_url_named_twice_is_told_once() -> None:
    doc = done_task()
    got = webhooks.pending(doc, [{"url": "http://127.0.0.1:1/h", "on": ["done"]}], now=NOW, max_age=3600)
    assert len(got) == 1


def test_not_final_nothing_to_tell() -> None:
    for status in ("waiting", "schedule", "scheduled", "reschedule", "cancel"):
        assert webhooks.pending(done_task(status=status, history=[]), [], now=NOW, max_age=3600) == []


def test_claimed_once_then_nothing_pending() -> None:
    doc = done_task()
    due = webhooks.pending(doc, [], now=NOW, max_age=3600)
    assert len(due) == 1
    out = webhooks.claimed(doc, due, daemon="daemon:x", now=NOW, keep=20)
    (record,) = out["deliveries"]
    assert record["state"] == "sending" and record["outcome"] == "done" and record["id"] == due[0].id and record["for"] == at(-1)
    assert webhooks.pending(out, [], now=NOW, max_age=3600) == []
    # the same decision on every daemon: the same id
    assert webhooks.pending(doc, [], now=NOW + timedelta(seconds=5), max_age=3600)[0].id == due[0].id
    # Recorded: the result lands in the record, others untouched.
    rec = webhooks.recorded(out, due[0].id, {"state": "delivered", "status": 200, "attempts": 3}, keep=20)
    assert rec is not None and rec["deliveries"][0]["status"] == 200 and rec["deliveries"][0]["attempts"] == 3
    assert webhooks.recorded(out, "dlv-unknown", {"state": "delivered"}, keep=20) is None


def test_too_old_is_not_delivered() -> None:
    doc = done_task()
    assert webhooks.pending(doc, [], now=NOW + timedelta(hours=2), max_age=3600) == []


def test_a_new_outcome_after_a_reschedule_is_told_again() -> None:
    doc = webhooks.claimed(done_task(), webhooks.pending(done_task(), [], now=NOW, max_age=3600), daemon="d", now=NOW, keep=20)
    again = dict(doc, finished=at(30), history=[*doc["history"], {"status": "done", "at": at(30), "by": "worker:w"}])
    got = webhooks.pending(again, [], now=NOW + timedelta(seconds=31), max_age=3600)
    assert [d.outcome.at for d in got] == [at(30)]


def cron_task(runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": "reschedule", "cron": "* * * * *", "runs": runs, "finished": runs[-1]["finished"] if runs else None, "history": []}
    return done_task(**{**fields, **extra})


def test_cron_each_run_once_oldest_first() -> None:
    runs = [
        {"date": at(-180), "started": at(-180), "finished": at(-179), "status": "done", "error": None},
        {"date": at(-120), "status": "missed"},
        {"date": at(-60), "started": at(-60), "finished": at(-59), "status": "err", "error": {"reason": "failed"}},
    ]
    doc = cron_task(runs, notify=[{"url": "http://127.0.0.1:1/h", "on": ["done", "err"]}])
    got = webhooks.pending(doc, [], now=NOW, max_age=3600)
    assert [(d.outcome.status, d.outcome.occurrence) for d in got] == [("done", at(-180)), ("err", at(-60))]
    assert got[1].outcome.latest and got[1].outcome.result == {"n": 1} and got[0].outcome.result is None
    doc = webhooks.claimed(doc, got, daemon="d", now=NOW, keep=20)
    more = [*runs, {"date": at(0), "started": at(0), "finished": at(1), "status": "done", "error": None}]
    doc = dict(doc, runs=more, finished=at(1))
    assert [d.outcome.at for d in webhooks.pending(doc, [], now=NOW + timedelta(seconds=2), max_age=3600)] == [at(1)]


def test_cron_task_ending_done_is_one_outcome() -> None:
    runs = [{"date": at(-60), "started": at(-60), "finished": at(-59), "status": "done", "error": None}]
    doc = cron_task(runs, status="done", history=[{"status": "done", "at": at(-59), "by": "worker:w"}])
    assert len(webhooks.pending(doc, [], now=NOW, max_age=3600)) == 1
    canceled = cron_task(runs, status="canceled", history=[{"status": "canceled", "at": at(-10), "by": "worker:w"}])
    assert [d.outcome.status for d in webhooks.pending(canceled, [], now=NOW, max_age=3600)] == ["done", "canceled"]


def test_records_are_bounded_newest_kept() -> None:
    doc = done_task()
    for i in range(30):
        nxt = dict(doc, finished=at(i), history=[{"status": "done", "at": at(i), "by": "w"}])
        doc = webhooks.claimed(nxt, webhooks.pending(nxt, [], now=NOW + timedelta(seconds=i), max_age=3600), daemon="d", now=NOW, keep=5)
    assert len(doc["deliveries"]) == 5
    assert [r["for"] for r in doc["deliveries"]] == [at(i) for i in range(25, 30)]
    assert webhooks.pending(doc, [], now=NOW + timedelta(seconds=30), max_age=3600) == []


@pytest.mark.parametrize(
    ("status", "accepted_ago", "ok"),
    [("done", None, True), ("waiting", None, True), ("schedule", None, False), ("scheduled", 1.0, False), ("scheduled", 30.0, True)],
)
def test_writable(status: str, accepted_ago: float | None, ok: bool) -> None:
    history = [{"status": status, "at": at(-accepted_ago), "by": "worker:w"}] if accepted_ago is not None else []
    assert webhooks.writable({"status": status, "history": history}, NOW) is ok


def test_not_writable_until_an_early_acceptance_is_due_and_settled() -> None:
    accepted_early = {"status": "scheduled", "date": at(-5), "history": [{"status": "scheduled", "at": at(-30), "by": "worker:w"}]}
    assert not webhooks.writable(accepted_early, NOW)
    assert webhooks.writable(accepted_early, NOW + timedelta(seconds=6))


def test_payload() -> None:
    doc = done_task()
    (d,) = webhooks.pending(doc, [], now=NOW, max_age=3600)
    p = webhooks.payload(doc, d)
    assert p["task"] == "task:a" and p["worker"] == "w" and p["job"] == "echo" and p["outcome"] == "done"
    assert p["result"] == {"n": 1} and p["attempts"] == 1 and p["started"] == at(-2) and p["finished"] == at(-1)
    assert p["delivery"] == d.id and p["occurrence"] is None
    json.loads(webhooks.body(p))


# -- the task field and the config -------------------------------------------------------------------


def test_notify_field() -> None:
    base = {"worker": "w", "job": "echo", "date": "2030-01-01T00:00:00Z"}
    doc = model.new_task({**base, "notify": [{"url": "https://example.com/x"}]}, now=NOW)
    assert doc["notify"] == [{"url": "https://example.com/x", "on": ["done", "err", "canceled"]}]
    for bad, field in [
        ([{"url": "ftp://x.example"}], "notify[0].url"),
        ([{"url": "http://x.example", "on": ["boom"]}], "notify[0].on[0]"),
        ([{"url": "http://x.example", "on": []}], "notify[0].on"),
        ([{"url": "http://x.example", "secret": 1}], "notify[0].secret"),
        ([{"url": "http://x.example"}] * 11, "notify"),
        ("http://x.example", "notify"),
    ]:
        with pytest.raises(InvalidInput) as exc:
            model.new_task({**base, "notify": bad}, now=NOW)
        assert exc.value.field == field, exc.value.message
    # A direct document with a bad hook is invalid, naming the field.
    stored = {**model.new_task(base, now=NOW), "notify": [{"url": 5}]}
    assert model.problem(stored) is not None and "notify[0].url" in (model.problem(stored) or "")


def test_config_section(tmp_path: Path) -> None:
    file = tmp_path / "after.toml"
    file.write_text('[notify]\nsecret = "k"\nattempts = 3\nbackoff_base = 0.5\n[[notify.hooks]]\nurl = "https://ops.example.com/after"\non = ["err"]\n')
    s = config.load(file, env={})
    assert s.notify_secret == "k" and s.notify_attempts == 3 and s.notify_backoff_base == 0.5
    assert s.notify_hooks == [{"url": "https://ops.example.com/after", "on": ["err"]}]
    assert s.public()["notify_secret"] == "***"
    env = config.load(file, env={"AFTER_NOTIFY_HOOKS": '[{"url": "http://127.0.0.1:9/x"}]', "AFTER_NOTIFY_TIMEOUT": "2"})
    assert env.notify_hooks == [{"url": "http://127.0.0.1:9/x", "on": ["done", "err", "canceled"]}] and env.notify_timeout == 2.0
    for text, named in [
        ('[[notify.hooks]]\nurl = "mailto:x"\n', "notify.hooks[0].url"),
        ('[[notify.hooks]]\nurl = "http://x.example"\non = ["sometimes"]\n', "notify.hooks[0].on"),
        ("[notify]\nattempts = 0\n", "notify.attempts"),
        ("[notify]\ntimeout = -1\n", "notify.timeout"),
        ("[notify]\nbackoff_base = 10\nbackoff_max = 1\n", "notify.backoff_base"),
        ("[notify]\nretries = 3\n", "notify.retries"),
    ]:
        file.write_text(text)
        with pytest.raises(ConfigError) as exc:
            config.load(file, env={})
        assert named in str(exc.value)


def test_a_bad_notify_setting_stops_the_daemon_at_start_naming_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
    env.update({"AFTER_STATE_DIR": str(tmp_path), "AFTER_CONFIG": str(tmp_path / "none.toml"), "AFTER_NOTIFY_HOOKS": '[{"url": "ftp://x.example"}]'})
    (tmp_path / "none.toml").write_text("")
    res = subprocess.run([sys.executable, "-m", "after", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "notify.hooks[0].url" in res.stderr, res.stderr


def test_config_and_schema_agree_on_hooks() -> None:
    """after.config keeps its own copy (it loads before the schema): the same rules."""
    from after import schema

    assert config.URL_PATTERN == schema.URL_PATTERN and config.OUTCOMES == schema.OUTCOMES == webhooks.OUTCOMES
