"""The UI's view of a task's dependencies (after/ui/deps.js): a real daemon and worker,
the system's headless Chromium (the fixtures and the skip are tests/test_ui.py's)."""

from __future__ import annotations

import time

from conftest import Daemon, tid
from playwright.sync_api import expect
from test_ui import UI, browser, pytestmark, ui  # noqa: F401  (fixtures and the skip when no Chromium)


def test_a_tasks_dependencies_and_what_it_waits_on_are_in_its_view(ui: UI, daemon: Daemon) -> None:  # noqa: F811
    daemon.start_worker("reports")
    page = ui.page
    daemon.create(
        [
            {"id": "first", "worker": "reports", "date": time.time(), "job": "noop"},
            {"id": "slow", "worker": "reports", "date": time.time(), "job": "hang"},
            {"id": "last", "worker": "reports", "date": time.time(), "job": "noop", "after": ["first", "slow"]},
        ]
    )
    daemon.wait_status("task:slow", "scheduled", timeout=60)
    daemon.wait_status("task:first", "done", timeout=60)
    ui.sign_in()
    ui.open("#/task/" + tid("task:last"))
    deps = page.locator("[data-testid=task-deps]")
    expect(deps.locator('li[data-dep="task:first"]')).to_have_attribute("data-state", "done")
    expect(deps.locator('li[data-dep="task:slow"]')).to_have_attribute("data-state", "waiting")
    expect(page.locator("[data-testid=task-deps-summary]")).to_contain_text("Waits on 1 of 2")
    expect(page.locator("[data-testid=task-deps-summary]")).to_contain_text("ends err")
    ui.shot("task-dependencies")
    # The one it waits on is canceled: the view turns err, naming it, live.
    assert daemon.api("POST", "/tasks/" + tid("task:slow") + "/cancel")[0] == 200
    expect(page.locator("#task-status")).to_have_attribute("data-status", "err", timeout=30_000)
    expect(page.locator("[data-testid=task-error]")).to_contain_text("task:slow")
    # A dependency's link opens its own view.
    deps.locator('li[data-dep="task:first"] a').click()
    expect(page.locator("#task-status")).to_have_attribute("data-status", "done")
