"""The UI's webhook deliveries table (after/ui/hooks.js) on a task's detail: a real daemon
delivering to a real receiver, shown in headless Chromium (the pattern of tests/test_ui.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import Daemon, iso_in, tid, wait_until
from playwright.sync_api import expect
from test_ui import CHROMIUM, UI, chromium
from test_webhooks_e2e import FAST, Receiver, deliveries_settled

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (see tests/test_ui.py)")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_task_detail_shows_its_deliveries(start_daemon: Callable[..., Daemon], receiver: Receiver) -> None:
    d = start_daemon(**FAST)
    d.start_worker("hooks")
    receiver.fail["/ui-flaky"] = 1
    hooks = [{"url": receiver.url("/ui-flaky"), "on": ["done"]}, {"url": "http://127.0.0.1:9/refused", "on": ["done"]}]
    task = d.create({"worker": "hooks", "date": iso_in(0), "job": "echo", "notify": hooks})
    d.wait_status(task["id"], "done", timeout=60)
    wait_until(deliveries_settled(d, task["id"], 2), 90, "both deliveries recorded")
    plain = d.create({"worker": "hooks", "date": iso_in(0), "job": "echo"})
    d.wait_status(plain["id"], "done", timeout=60)
    with chromium() as browser:
        ui = UI(browser, d)
        try:
            ui.sign_in()
            ui.page.goto(d.base + "/ui/#/task/" + tid(task["id"]))
            table = ui.page.locator("[data-testid=task-deliveries]")
            expect(table).to_be_visible()
            rows = table.locator("[data-testid=delivery-row]")
            expect(rows).to_have_count(2)
            ok = table.locator("[data-testid=delivery-row][data-state=delivered]")
            expect(ok).to_contain_text(receiver.url("/ui-flaky"))
            expect(ok.locator("[data-testid=delivery-status]")).to_have_text("200")
            expect(ok.locator("[data-testid=delivery-attempts]")).to_have_text("2")
            failed = table.locator("[data-testid=delivery-row][data-state=failed]")
            expect(failed).to_contain_text("127.0.0.1:9/refused")
            expect(failed.locator("[data-testid=delivery-status]")).to_have_text("—")
            ui.shot("task-deliveries")
            # A task without deliveries has no such section.
            ui.page.goto(d.base + "/ui/#/task/" + tid(plain["id"]))
            expect(ui.page.locator("#task-status")).to_have_attribute("data-status", "done")
            expect(ui.page.locator("[data-testid=task-deliveries]")).to_have_count(0)
        finally:
            ui.close()
