"""Jitter and excluded dates in the browser UI (after/ui/calendar.js): its pure helpers under
Node, and the task view in Chromium against a real daemon (skipped, saying why, without a
Chromium binary: see tests/test_ui.py)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import ROOT, Daemon
from playwright.sync_api import expect
from test_ui import CHROMIUM, UI, chromium

from after import timing

CALENDAR_JS = ROOT / "after" / "ui" / "calendar.js"


def node_eval(script: str) -> object:
    node = shutil.which("node") or pytest.skip("node is not installed")
    program = f"const c = require({json.dumps(str(CALENDAR_JS))}); console.log(JSON.stringify({script}));"
    res = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_calendar_js_rows_and_run_notes() -> None:
    task = {
        "date": "2026-12-03T02:07:41.512Z",
        "occurrence": "2026-12-03T02:00:00.000Z",
        "jitter": 600,
        "exclude": ["2026-12-25", "2026-12-31/2027-01-01"],
        "timezone": "Europe/Lisbon",
        "next_runs": ["2026-12-03T02:07:41.512Z", "2026-12-04T02:00:00.000Z"],
        "next_occurrences": ["2026-12-03T02:00:00.000Z", "2026-12-04T02:00:00.000Z"],
    }
    got = node_eval(f"[c.rows({json.dumps(task)}), c.runNote({json.dumps(task)}, 0), c.runNote({json.dumps(task)}, 1), c.rows({{}})]")
    rows, note0, note1, none = got  # type: ignore[misc]
    assert rows == [
        ["Jitter", "up to 600 s after each occurrence"],
        ["Excluded days", "2026-12-25, 2026-12-31 to 2027-01-01 (Europe/Lisbon)"],
        ["Occurrence", "2026-12-03T02:00:00.000Z"],
    ]
    assert note0 == " · +461.512 s jitter" and note1 == "" and none == []


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (see tests/test_ui.py)")
def test_task_view_shows_jitter_exclusions_and_jittered_next_runs(daemon: Daemon) -> None:
    exclude = ["2030-12-25", "2030-12-31/2031-01-01"]
    body = {"id": "ui-cal", "worker": "nobody", "job": "noop", "cron": "0 2 * * *", "timezone": "Europe/Lisbon"}
    reply = daemon.create({**body, "jitter": 600, "exclude": exclude})
    doc = daemon.task(reply["id"])
    with chromium() as browser:
        ui = UI(browser, daemon)
        try:
            ui.sign_in()
            ui.open("#/task/" + reply["id"])
            page = ui.page
            expect(page.locator("#view")).to_have_attribute("data-view", "task")
            summary = page.locator("#task-summary")
            expect(summary).to_contain_text("up to 600 s after each occurrence")
            expect(summary).to_contain_text("2030-12-31 to 2031-01-01 (Europe/Lisbon)")
            runs = page.locator("[data-testid=task-next-runs] li")
            expect(runs).to_have_count(5)
            offsets = [timing.parse_date(d) - timing.parse_date(o) for d, o in zip(doc["next_runs"], doc["next_occurrences"], strict=True)]
            for i, delta in enumerate(offsets):
                if delta.total_seconds() > 0:
                    expect(runs.nth(i)).to_contain_text("s jitter")
            ui.shot("task-calendar")
        finally:
            ui.close()
