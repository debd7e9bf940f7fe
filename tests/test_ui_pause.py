"""Pause and resume in the browser UI (after/ui/pause.js): a task's page shows who paused it,
when and why, with Pause / Resume; the workers list shows a paused name, with Pause / Resume
on its row. Real daemon, real worker, Debian's headless Chromium (see tests/test_ui.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import Daemon, iso_in, tid
from playwright.sync_api import Dialog, expect
from test_ui import CHROMIUM, UI, chromium

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (see tests/test_ui.py)")


@pytest.fixture
def ui(daemon: Daemon) -> Iterator[UI]:
    with chromium() as browser:
        u = UI(browser, daemon)
        yield u
        u.close()


def answer(note: str) -> Callable[[Dialog], None]:
    def accept(dialog: Dialog) -> None:
        assert dialog.type == "prompt", dialog.type
        dialog.accept(note)

    return accept


def test_pause_and_resume_a_task_and_a_worker_name_from_the_ui(ui: UI, daemon: Daemon) -> None:
    daemon.start_worker("reports")
    page = ui.page
    task_id = daemon.create({"worker": "reports", "date": iso_in(3600), "job": "noop"})["id"]
    ui.sign_in()

    # The task's page: not paused, then paused with a note, then resumed.
    page.goto(daemon.base + "/ui/#/task/" + tid(task_id))
    section = page.locator("#task-pause-section")
    expect(section).to_have_attribute("data-paused", "false")
    page.once("dialog", answer("warehouse migration"))
    page.locator("#task-pause").click()
    expect(section).to_have_attribute("data-paused", "true")
    expect(section.locator("[data-testid=paused-note]")).to_have_text("warehouse migration")
    expect(section.locator("[data-testid=paused-by]")).to_have_text("api")
    paused = daemon.task(task_id)["paused"]
    assert paused["by"] == "api" and paused["note"] == "warehouse migration"
    ui.shot("task-paused")
    page.locator("#task-resume").click()
    expect(section).to_have_attribute("data-paused", "false")
    assert daemon.task(task_id)["paused"] is None

    # The workers list: Pause on the row (every daemon), the badge, then Resume.
    ui.go("workers")
    reports = page.locator('tr[data-testid=worker-row][data-worker="reports"]')
    expect(reports).to_have_attribute("data-paused", "false")
    expect(reports.locator("[data-testid=worker-paused]")).to_be_hidden()
    page.once("dialog", answer("smtp relay down"))
    reports.locator("[data-testid=worker-pause-toggle]").click()
    expect(reports).to_have_attribute("data-paused", "true")
    expect(reports.locator("[data-testid=worker-paused]")).to_be_visible()
    at = daemon.api("GET", "/workers/reports")[1]["paused"]["at"]
    expect(reports.locator("[data-testid=worker-paused]")).to_have_attribute("title", f"paused by api at {at}: smtp relay down")
    expect(reports.locator("[data-testid=worker-pause-toggle]")).to_have_text("Resume")
    ui.shot("workers-paused")
    reports.locator("[data-testid=worker-pause-toggle]").click()
    expect(reports).to_have_attribute("data-paused", "false")
    assert daemon.api("GET", "/workers/reports")[1]["paused"] is None

    # Paused elsewhere (the CLI): shown at the next refresh. A dismissed prompt changes nothing.
    daemon.cli("pause", "reports", "--note", "from the cli")
    page.locator("#workers-refresh").click()
    expect(reports).to_have_attribute("data-paused", "true")
    page.goto(daemon.base + "/ui/#/task/" + tid(task_id))
    page.once("dialog", lambda d: d.dismiss())
    page.locator("#task-pause").click()
    expect(page.locator("#task-pause")).to_be_enabled()
    assert daemon.task(task_id).get("paused") is None
