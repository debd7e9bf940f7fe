"""``/health`` and ``/metrics`` of a real daemon: healthy, then 503 with the reason while a
worker crash-loops; Prometheus series for tasks by status, fire lag, ticks, dispatched and
finished tasks per worker and job, worker restarts and store latency."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from conftest import TESTS, WORKER_PASSWORD, Couch, CuttableLink, Daemon, http, wait_until
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from test_api import running_daemon

#: Imported by a worker with ``--jobs crashjobs``: the process dies shortly after its hello.
CRASHING_MODULE = """
import os, threading
threading.Timer(0.2, lambda: os._exit(1)).start()
"""


def metrics(d: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = http(d.base, "GET", "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_by_worker_and_job(daemon: Daemon) -> None:
    with urllib.request.urlopen(daemon.base + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST  # Prometheus text exposition
    daemon.start_worker("m")
    ok = [daemon.create({"worker": "m", "date": time.time(), "job": "noop"})["id"] for _ in range(2)]
    bad = daemon.create({"worker": "m", "date": time.time(), "job": {"name": "shell", "arguments": ["exit 3"]}})["id"]
    for task_id in ok:
        daemon.wait_status(task_id, "done")
    daemon.wait_status(bad, "err")
    daemon.create({"worker": "parked", "date": "2037-01-01", "job": "noop"})
    wait_until(lambda: value(metrics(daemon), "after_tasks_finished_total", worker="m", job="shell", status="err") == 1, 30, "the err counter")
    m = metrics(daemon)
    assert value(m, "after_tasks", status="done") == 2
    assert value(m, "after_tasks", status="err") == 1
    assert value(m, "after_tasks", status="waiting") == 1
    assert value(m, "after_tasks_dispatched_total", worker="m", job="noop") == 2
    assert value(m, "after_tasks_dispatched_total", worker="m", job="shell") == 1
    assert value(m, "after_tasks_finished_total", worker="m", job="noop", status="done") == 2
    assert value(m, "after_fire_lag_seconds_count", worker="m", job="noop") == 2
    assert value(m, "after_fire_lag_seconds_bucket", worker="m", job="noop", le="+Inf") == 2
    assert value(m, "after_tick_duration_seconds_count") > 0
    assert value(m, "after_scheduler_actions_total", kind="fired") == 3
    assert value(m, "after_worker_running", worker="m") == 1
    assert value(m, "after_worker_restarts", worker="m") == 0
    assert value(m, "after_store_request_seconds_count", verb="view") > 0
    assert value(m, "after_store_request_seconds_count", verb="bulk") > 0


def test_health_reports_a_crash_looping_worker(start_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "crashjobs.py").write_text(CRASHING_MODULE)
    d = start_daemon(
        "obs",
        AFTER_WORKERS_RESTART_MAX_DELAY="0.2",
        PYTHONPATH=os.pathsep.join([str(jobs), str(TESTS / "jobs"), os.environ.get("PYTHONPATH", "")]),
    )
    assert http(d.base, "GET", "/health") == (200, {"status": "ok", "reasons": []})
    d.start_worker("crashy", jobs=["crashjobs"])

    def unhealthy() -> bool:
        status, body = http(d.base, "GET", "/health")
        return status == 503 and body["status"] == "unhealthy" and "worker crashy is crash-looping" in body["reasons"]

    wait_until(unhealthy, 40, "/health to report the crash loop")
    assert value(metrics(d), "after_worker_restarts", worker="crashy") >= 5
    # It stays reported between two crashes (not only while it waits to restart).
    for _ in range(5):
        assert unhealthy()
        time.sleep(0.1)
    assert d.api("DELETE", "/workers/crashy?timeout=1")[0] == 200
    assert http(d.base, "GET", "/health") == (200, {"status": "ok", "reasons": []})


def test_health_and_errors_when_the_store_is_unreachable(couch: Couch, tmp_path: Path, link: CuttableLink) -> None:
    with running_daemon(couch, tmp_path, AFTER_COUCHDB_URL=link.via(couch.url_for())) as d:
        assert http(d.base, "GET", "/health") == (200, {"status": "ok", "reasons": []})
        link.cut()
        status, body = http(d.base, "GET", "/health")
        assert status == 503 and body["status"] == "unhealthy"
        assert any(r.startswith("store unreachable") for r in body["reasons"]), body
        status, body = http(d.base, "GET", "/tasks")
        assert status == 503 and body["error"] == "store_unavailable" and set(body) <= {"error", "message", "field"}
        assert WORKER_PASSWORD not in body["message"]
        status, body = http(d.base, "GET", "/")
        assert status == 200 and body["couchdb"]["reachable"] is False
        assert http(d.base, "GET", "/metrics")[0] == 200  # still scrapeable; /health says why
        link.restore()
        wait_until(lambda: http(d.base, "GET", "/health")[0] == 200, 20, "/health to recover")
        assert d.api("POST", "/tasks", {"worker": "w", "date": "2040-01-01", "job": "noop"})[0] == 201
