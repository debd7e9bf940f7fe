"""The UI's overlap and backfill section (after/ui/overlap.js) on a real daemon, in Debian's
headless Chromium (the harness of tests/test_ui.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import test_ui
from conftest import Daemon, tid, wait_until
from playwright.sync_api import expect
from test_ui import UI

pytestmark = test_ui.pytestmark  # skipped, saying why, where no Chromium is found


@pytest.fixture
def ui(daemon: Daemon) -> Iterator[UI]:
    with test_ui.chromium() as browser:
        u = UI(browser, daemon)
        yield u
        u.close()


def test_backfill_from_a_cron_task_detail_and_its_runs_listed(ui: UI, daemon: Daemon, tmp_path: Path) -> None:
    daemon.start_worker("bfui", jobs=["overlapjobs"])
    notes = tmp_path / "notes"
    task_id = daemon.create({"id": "ui-bf", "worker": "bfui", "cron": "0 0 * * *", "overlap": "replace", "job": {"name": "note", "arguments": [str(notes)]}})[
        "id"
    ]
    one_shot = daemon.create({"worker": "bfui", "date": "2031-01-01", "job": "noop"})["id"]
    ui.sign_in()
    page = ui.page
    page.goto(daemon.base + "/ui/#/task/" + tid(one_shot))
    expect(page.locator("#task-status")).to_have_attribute("data-status", "waiting")
    expect(page.locator("[data-testid=backfill-form]")).to_have_count(0)  # a one-shot task has no occurrences
    page.goto(daemon.base + "/ui/#/task/" + tid(task_id))
    expect(page.locator("[data-testid=task-overlap]")).to_contain_text("replace")
    # Midday to midday: three midnights (UTC) whatever the browser's zone.
    page.locator("#backfill-from").fill("2026-01-01T12:00")
    page.locator("#backfill-to").fill("2026-01-04T12:00")
    page.locator("#backfill-submit").click()
    wait_until(lambda: len([r for r in daemon.task(task_id).get("runs") or [] if r.get("backfill")]) == 3, 120, "three backfilled runs")
    expect(page.locator("[data-testid=run-backfill]")).to_have_count(3, timeout=15_000)
    expect(page.locator("[data-testid=backfill-pending]")).to_contain_text("No backfill pending")
    ui.shot("task-backfill", full_page=True)
    # A reversed range being typed survives the live re-render of a change of the task.
    page.locator("#backfill-from").fill("2026-01-04T12:00")
    page.locator("#backfill-to").fill("2026-01-01T12:00")
    assert daemon.api("POST", f"/tasks/{tid(task_id)}/backfill", {"from": "2026-02-01", "to": "2026-02-01"})[1]["count"] == 1
    expect(page.locator("[data-testid=run-backfill]")).to_have_count(4, timeout=60_000)
    expect(page.locator("#backfill-from")).to_have_value("2026-01-04T12:00")
    # Sent: the daemon's message, and nothing pending.
    page.locator("#backfill-submit").click()
    expect(page.locator(".toast, [role=alert]").filter(has_text="before from").first).to_be_visible()
    assert daemon.task(task_id).get("backfill") == []
