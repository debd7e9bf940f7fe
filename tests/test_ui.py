"""The browser admin UI at /ui, end to end: a real daemon, real workers, real CouchDB, and
Debian's headless Chromium driven by Playwright.

Playwright's own browser download is never used: the browser is the system's Chromium
(`make browser`, a prerequisite of `make test`, installs Debian's package when it can). The
tests skip, saying why, only when no Chromium binary is found. Screenshots of every view go
to ``test-output/ui/`` (the README's come from there: see tests/ui/NOTES.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Daemon, iso_in, tid
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

#: Where the browser is looked for, unless AFTER_TEST_CHROMIUM names it: Debian's packages
#: (the headless shell first: it starts faster than the full browser).
CANDIDATES = ("chromium-headless-shell", "chromium", "/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium")
#: The flags of the issue: headless, and nothing that reaches out to the network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "test-output" / "ui"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def find_chromium() -> str | None:
    """AFTER_TEST_CHROMIUM when set (and only it), else the first of CANDIDATES on the PATH."""
    env = os.environ.get("AFTER_TEST_CHROMIUM")
    for name in [env] if env else CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no Chromium binary (looked for {os.environ.get('AFTER_TEST_CHROMIUM') or ', '.join(CANDIDATES)}); "
    "`make browser` installs Debian's chromium, but only as root with apt-get",
)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium, for as long as the block runs: start it after the daemon, close it before.

    Per test, not per module: while Playwright's synchronous API is active it keeps an
    event loop marked running in this thread, and the database fixtures' ``asyncio.run``
    refuses to run beside it.
    """
    assert CHROMIUM is not None
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def browser(daemon: Daemon) -> Iterator[Browser]:
    """Chromium on the default daemon (see :func:`chromium`)."""
    with chromium() as b:
        yield b


class UI:
    """One browser context (one browser session) on one daemon's /ui."""

    def __init__(self, browser: Browser, daemon: Daemon) -> None:
        self.daemon = daemon
        self.context = browser.new_context(viewport=DESKTOP, device_scale_factor=1, color_scheme="light", reduced_motion="reduce")
        self.context.set_default_timeout(10_000)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.urls: list[str] = []
        self.page.on("request", self._record)
        #: The console's errors, failed requests included ("Failed to load resource: ... 400").
        self.console_errors: list[str] = []
        self.page.on("console", lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None)
        #: (method, path) of every request to the daemon's API (not the page's own files).
        self.calls: list[tuple[str, str]] = []
        self.page.on("request", lambda r: self.calls.append((r.method, r.url.removeprefix(self.daemon.base))) if r.resource_type == "fetch" else None)

    def _record(self, request: Request) -> None:
        self.urls.append(request.url)

    def open(self, fragment: str = "") -> None:
        self.page.goto(self.daemon.base + "/ui/" + fragment)

    def sign_in(self) -> None:
        self.open()
        expect(self.page.locator("#token-input")).to_be_focused()
        self.page.keyboard.type(self.daemon.token)
        self.page.keyboard.press("Enter")
        expect(self.page.locator("#view")).to_have_attribute("data-view", "overview")
        self.live()

    def live(self) -> None:
        expect(self.page.locator("#sse-status")).to_have_attribute("data-state", "open")

    def go(self, view: str) -> None:
        """Follow a nav link with the keyboard."""
        self.page.locator(f"#nav-{view}").focus()
        self.page.keyboard.press("Enter")
        expect(self.page.locator("#view")).to_have_attribute("data-view", view)

    def confirm(self) -> None:
        dialog = self.page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        self.page.locator("#confirm-ok").click()
        expect(dialog).to_be_hidden()

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in pictures
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    def fits_width(self) -> None:
        """Nothing sticks out sideways: the page scrolls vertically only (tables scroll in their box)."""
        width = self.page.viewport_size["width"] if self.page.viewport_size else 0
        assert self.page.evaluate("document.documentElement.scrollWidth") == width

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"uncaught errors in the page: {self.errors}"
        # Nothing is fetched from anywhere but the daemon, and the token is never in a URL.
        elsewhere = [u for u in self.urls if not u.startswith((self.daemon.base + "/", "data:", "about:"))]
        assert not elsewhere, f"the UI fetched from elsewhere: {elsewhere}"
        assert self.urls and not [u for u in self.urls if self.daemon.token in u]


@pytest.fixture
def ui(daemon: Daemon, browser: Browser) -> Iterator[UI]:
    u = UI(browser, daemon)
    yield u
    u.close()


def row(ui: UI, task_id: str) -> Any:
    return ui.page.locator(f'tr[data-testid=task-row][data-task-id="{task_id}"]')


def test_sign_in_keeps_the_token_for_the_session_only(ui: UI, daemon: Daemon, browser: Browser) -> None:
    page = ui.page
    page.goto(daemon.base + "/ui")  # no trailing slash: redirected
    assert page.url == daemon.base + "/ui/"
    expect(page.locator("#token-input")).to_be_focused()
    # A wrong token is refused with the API's message, though reads need no token here.
    page.keyboard.type("not-the-token")
    page.keyboard.press("Enter")
    expect(page.locator("#login-error")).to_contain_text("wrong credentials")
    expect(page.locator("#app")).to_be_hidden()
    ui.console_errors.clear()
    ui.calls.clear()
    page.locator("#token-input").fill(daemon.token)
    page.locator("#token-submit").click()
    expect(page.locator("#view")).to_have_attribute("data-view", "overview")
    ui.live()
    # The token is checked with a read that answers 200 (GET /): no write, and no failed
    # request in the console for the right token.
    assert ui.calls[0] == ("GET", "/"), ui.calls
    assert not [c for c in ui.calls if c[0] != "GET"], ui.calls
    assert not ui.console_errors, ui.console_errors
    assert page.evaluate("sessionStorage.getItem('after.token')") == daemon.token
    assert page.evaluate("localStorage.length") == 0
    assert daemon.token not in page.url
    # Kept across reloads of this browser session...
    page.reload()
    expect(page.locator("#view")).to_have_attribute("data-view", "overview")
    expect(page.locator("#login")).to_be_hidden()
    # ...but another session asks again.
    other = UI(browser, daemon)
    try:
        other.open()
        expect(other.page.locator("#token-input")).to_be_visible()
    finally:
        other.close()
    # A token that stops working brings the form back, with the reason, at the first
    # request that carries it (a wrong token is refused on reads too).
    page.evaluate("sessionStorage.setItem('after.token', 'stale')")
    page.goto(daemon.base + "/ui/#/workers")
    expect(page.locator("#login-error")).to_contain_text("wrong credentials")
    assert page.evaluate("sessionStorage.getItem('after.token')") is None
    # Sign out forgets it.
    ui.sign_in()
    page.locator("#logout").click()
    expect(page.locator("#token-input")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('after.token')") is None


def test_task_created_through_the_api_appears_and_turns_done_live(ui: UI, daemon: Daemon) -> None:
    daemon.start_worker("mailer")
    page = ui.page
    ui.sign_in()
    ui.go("tasks")
    page.evaluate("window.__noReload = 1")
    # Due in an hour: it shows as waiting however long the page takes (a busy machine);
    # then it is rescheduled to now, and the same row turns done without a reload.
    reply = daemon.create({"worker": "mailer", "date": iso_in(3600), "job": {"name": "report", "kwargs": {"steps": 3}}})
    task_id = reply["id"]
    tr = row(ui, task_id)
    expect(tr).to_be_visible(timeout=15_000)
    expect(tr.locator("[data-testid=task-status-cell]")).to_have_attribute("data-status", "waiting")
    status, body = daemon.api("POST", f"/tasks/{tid(task_id)}/reschedule", {"date": time.time()})
    assert status == 200, body
    expect(tr.locator("[data-testid=task-status-cell]")).to_have_attribute("data-status", "done", timeout=60_000)
    assert page.evaluate("window.__noReload") == 1, "the page was reloaded"
    assert daemon.task(task_id)["status"] == "done"

    # A filtered list takes in only matching tasks, live too.
    page.locator("#filter-status").select_option("err")
    page.locator("#filter-apply").click()
    expect(page.locator("[data-testid=tasks-empty]")).to_be_visible()
    assert "status=err" in page.url
    waiting = daemon.create({"worker": "mailer", "date": iso_in(3600), "job": "echo"})["id"]
    failing = daemon.create({"worker": "mailer", "date": time.time(), "job": {"name": "fail", "kwargs": {"message": "smtp refused"}}})["id"]
    expect(row(ui, failing)).to_be_visible(timeout=15_000)
    expect(row(ui, waiting)).to_have_count(0)
    page.locator("#filter-reset").click()
    expect(row(ui, waiting)).to_be_visible()

    # Search by id opens the task; it shows the error with its traceback and the history.
    page.locator("#task-search").fill(failing.removeprefix("task:"))
    page.keyboard.press("Enter")
    expect(page.locator("#view")).to_have_attribute("data-view", "task")
    expect(page.locator("#task-status")).to_have_attribute("data-status", "err")
    expect(page.locator("[data-testid=task-error]")).to_contain_text("smtp refused")
    expect(page.locator("[data-testid=task-traceback]")).to_contain_text("Traceback")
    expect(page.locator("#task-history li[data-status=err]")).to_have_count(1)
    expect(page.locator("#task-cancel")).to_be_disabled()

    # Paging: three pages of one.
    page.goto(daemon.base + "/ui/#/tasks?limit=25")
    for i in range(30):
        daemon.create({"worker": "batch", "date": iso_in(7200 + i), "job": "echo"})
    page.locator("#tasks-refresh").click()
    expect(page.locator("#tasks-next")).to_be_enabled()
    page.locator("#tasks-next").click()
    expect(page.locator("#tasks-page")).to_have_text("Page 2")
    expect(page.locator("#tasks-next")).to_be_disabled()
    page.locator("#tasks-prev").click()
    expect(page.locator("#tasks-page")).to_have_text("Page 1")


def test_cancel_reschedule_rerun_delete_from_the_ui(ui: UI, daemon: Daemon) -> None:
    daemon.start_worker("reports")
    page = ui.page
    running = daemon.create({"worker": "reports", "date": time.time(), "job": "hang"})["id"]
    daemon.wait_status(running, "scheduled")
    ui.sign_in()
    ui.go("tasks")
    row(ui, running).locator("[data-testid=task-link]").click()
    expect(page.locator("#task-status")).to_have_attribute("data-status", "scheduled")
    # Esc on the confirmation changes nothing.
    page.locator("#task-cancel").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert daemon.task(running)["status"] == "scheduled"
    page.locator("#task-cancel").click()
    ui.confirm()
    expect(page.locator("#task-status")).to_have_attribute("data-status", "canceled", timeout=15_000)
    expect(page.locator("#task-cancel")).to_be_disabled()
    assert daemon.task(running)["status"] == "canceled"

    # Rerun a finished task now: it runs again (here: hangs again), then cancel that too.
    page.locator("#task-rerun").click()
    ui.confirm()
    expect(page.locator("#task-status")).to_have_attribute("data-status", "scheduled", timeout=15_000)
    history = [(h["status"], h["by"]) for h in daemon.task(running)["history"]]
    assert ("reschedule", "api") in history and history[-1][0] == "scheduled", history
    page.locator("#task-cancel").click()
    ui.confirm()
    expect(page.locator("#task-status")).to_have_attribute("data-status", "canceled", timeout=15_000)

    # Reschedule to a date picked in the form, then delete.
    page.locator("#reschedule-date").fill("2031-05-04T03:02")
    page.locator("#task-reschedule").click()
    expect(page.locator("#task-status")).to_have_attribute("data-status", "reschedule")
    doc = daemon.task(running)
    assert doc["status"] == "reschedule" and doc["date"].startswith("2031-05-0")
    page.locator("#task-delete").click()
    ui.confirm()
    expect(page.locator("#view")).to_have_attribute("data-view", "tasks")
    assert daemon.api("GET", f"/tasks/{tid(running)}")[0] == 404

    # A cron task that failed: its error, traceback, next occurrences and history.
    cron = daemon.create(
        {
            "worker": "reports",
            "date": time.time(),
            "cron": "0 */6 * * *",
            "job": {"name": "fail", "kwargs": {"message": "warehouse API answered 503 Service Unavailable"}},
            "retry": 0,
        }
    )["id"]
    daemon.wait_status(cron, "reschedule")
    page.goto(daemon.base + "/ui/#/task/" + tid(cron))
    page.reload()  # a fresh page for the picture: no toasts left from the actions above
    expect(page.locator("#task-status")).to_have_attribute("data-status", "reschedule")
    expect(page.locator("[data-testid=task-next-runs] li")).to_have_count(5)
    expect(page.locator("[data-testid=task-traceback]")).to_contain_text("RuntimeError")
    expect(page.locator("#task-history li")).to_have_count(len(daemon.task(cron)["history"]))
    expect(page.locator("[data-testid=task-runs] tbody tr")).to_have_count(1)
    ui.shot("task")
    ui.shot("task-full", full_page=True)


def test_workers_view_log_tail_and_stop_from_the_ui(ui: UI, daemon: Daemon) -> None:
    daemon.start_worker("mailer", concurrency=2)
    daemon.start_worker("reports")
    page = ui.page
    ui.sign_in()
    ui.go("workers")
    mailer = page.locator('tr[data-testid=worker-row][data-worker="mailer"]')
    expect(mailer).to_have_attribute("data-state", "running")
    expect(mailer.locator("[data-col=pid]")).to_have_text(str(daemon.api("GET", "/workers/mailer")[1]["pid"]))
    expect(mailer.locator("[data-col=host]")).to_contain_text("(this daemon)")  # others' workers are listed too, read only
    # The log tail follows the worker's log.
    mailer.locator("[data-testid=worker-log-toggle]").click()
    log = page.locator("#worker-log")
    expect(log).to_contain_text("worker mailer started")
    task = daemon.create({"worker": "mailer", "date": time.time(), "job": {"name": "chatter", "kwargs": {"lines": 5, "width": 20}}})["id"]
    expect(log).to_contain_text(f"chatter {task} line 000004", timeout=10_000)
    expect(mailer.locator("[data-col=tasks_run]")).to_have_text("1", timeout=10_000)
    # A remote worker running a task, for the picture: listed apart, with no buttons.
    sender, lease, task = remote_with_a_task(daemon, "sender", host="web-3", concurrency=8)
    remote = page.locator('tr[data-testid=remote-worker-row][data-worker="sender"]')
    expect(remote.locator("[data-col=concurrency]")).to_have_text("1 / 8", timeout=10_000)
    ui.shot("workers")
    finished = daemon.api("POST", f"/workers/sender/tasks/{tid(task)}/finish", {"lease": lease, "status": "done"})
    assert finished[0] == 200 and daemon.api("POST", "/workers/sender/disconnect", {"session": sender})[0] == 200
    expect(remote).to_have_count(0)

    # Stop from the UI.
    mailer.locator("[data-testid=worker-stop]").click()
    ui.confirm()
    expect(mailer).to_have_attribute("data-running", "false", timeout=20_000)
    expect(mailer).to_have_attribute("data-state", "stopped")
    workers = {w["name"]: w for w in daemon.api("GET", "/workers")[1]["workers"]}
    assert workers["mailer"]["running"] is False and workers["reports"]["running"] is True

    # Start it again, as it was, from its row...
    expect(mailer.locator("[data-testid=worker-stop]")).to_be_hidden()
    mailer.locator("[data-testid=worker-start-again]").click()
    expect(mailer).to_have_attribute("data-running", "true", timeout=20_000)
    assert daemon.api("GET", "/workers/mailer")[1]["concurrency"] == 2
    # ...and a new one from the form, with the keyboard, at the CLI's and API's default concurrency.
    expect(page.locator("#worker-concurrency")).to_have_value("4")
    page.locator("#worker-name").fill("billing")
    page.locator("#worker-jobs").fill("testjobs")
    page.keyboard.press("Enter")
    expect(page.locator('tr[data-testid=worker-row][data-worker="billing"]')).to_have_attribute("data-running", "true", timeout=20_000)
    assert daemon.api("GET", "/workers/billing")[1]["concurrency"] == 4


def connect_remote(daemon: Daemon, name: str, **body: Any) -> str:
    """Connect a remote worker with the protocol (the admin token may make worker calls); its session."""
    status, reply = daemon.api("POST", f"/workers/{name}/connect", body)
    assert status == 201, reply
    return str(reply["session"])


def remote_with_a_task(daemon: Daemon, name: str, **body: Any) -> tuple[str, str, str]:
    """A remote worker that has accepted one task due now: (session, lease, task id)."""
    session = connect_remote(daemon, name, **body)
    task = daemon.create({"worker": name, "date": time.time(), "job": {"name": "send_report", "arguments": [2]}})["id"]
    status, polled = daemon.api("POST", f"/workers/{name}/poll", {"session": session, "wait": 15})
    assert status == 200 and [t["id"] for t in polled["tasks"]] == [task], polled
    lease = polled["tasks"][0]["lease"]
    assert daemon.api("POST", f"/workers/{name}/tasks/{tid(task)}/accept", {"lease": lease})[0] == 200
    return session, lease, task


def test_remote_workers_listed_apart_live_then_silent_never_started_or_stopped(start_daemon: Callable[..., Daemon]) -> None:
    # A session timeout of 20 s: silent for 2 heartbeats + 1 s (7.7 s) is not live; gone at 20 s.
    daemon = start_daemon(AFTER_SCHEDULER_LEASE_SECONDS="20")
    daemon.start_worker("mailer")
    session = connect_remote(daemon, "sender", host="web-3", concurrency=3, pid=4242)
    with chromium() as browser:
        ui = UI(browser, daemon)
        page = ui.page
        ui.sign_in()
        # A call just now (the browser's start may take seconds on a busy machine): live.
        assert daemon.api("POST", "/workers/sender/poll", {"session": session, "wait": 0})[0] == 200
        ui.go("workers")
        row = page.locator('tr[data-testid=remote-worker-row][data-worker="sender"]')
        expect(row).to_have_attribute("data-live", "true")
        expect(row).to_have_attribute("data-state", "running")
        expect(row.locator("[data-col=host]")).to_have_text("web-3")
        expect(row.locator("[data-col=address]")).to_have_text("127.0.0.1")
        expect(row.locator("[data-col=live]")).to_have_text("yes")
        expect(row.locator("[data-col=last_heartbeat]")).to_contain_text("ago")
        expect(row.locator("[data-col=concurrency]")).to_have_text("0 / 3")
        expect(row.locator("[data-col=daemon]")).to_have_text("this daemon")
        # It is not a process of this daemon: nothing to start, stop or tail here...
        expect(row.locator("button")).to_have_count(0)
        expect(page.locator('#workers-body tr[data-worker="sender"]')).to_have_count(0)
        # ...while the local worker keeps its buttons, in its own table.
        mailer = page.locator('#workers-body tr[data-testid=worker-row][data-worker="mailer"]')
        expect(mailer.locator("[data-testid=worker-stop]")).to_be_visible()
        expect(page.locator('#remote-workers-body tr[data-worker="mailer"]')).to_have_count(0)
        # Silent: still listed, shown not live.
        expect(row).to_have_attribute("data-live", "false", timeout=20_000)
        expect(row.locator("[data-col=live]")).to_have_text("no")
        # Disconnected (or, on a machine slow enough, its session already ended): gone.
        assert daemon.api("POST", "/workers/sender/disconnect", {"session": session})[0] in (200, 404)
        expect(row).to_have_count(0, timeout=10_000)
        expect(page.locator("[data-testid=remote-workers-empty]")).to_be_visible()
        ui.close()


#: The next few seconds and the next day of three workers (and one that is not running).
PAST = [
    ("mailer", "echo", "done"),
    ("reports", "report", "done"),
    ("maintenance", "fail", "err"),
    ("mailer", "echo", "done"),
    ("reports", "hang", "scheduled"),
    ("mailer", "echo", "done"),
    ("billing", "echo", "waiting"),
    ("reports", "report", "done"),
    ("mailer", "echo", "done"),
    ("reports", "report", "done"),
    ("mailer", "echo", "done"),
    ("mailer", "echo", "done"),
]
FUTURE = [(0.5, "mailer"), (2, "reports"), (3.2, "mailer"), (6, "maintenance"), (9.5, "reports"), (13, "mailer"), (18, "maintenance"), (22.5, "mailer")]
#: Every task of the seed: the past ones, the future ones, a cron task and a canceled one.
TOTAL = len(PAST) + len(FUTURE) + 2
UPCOMING = len(FUTURE) + 1


def seed(daemon: Daemon) -> str:
    """Seed PAST, FUTURE, a cron task and a canceled task; return the id of the running one."""
    for name in ("mailer", "reports", "maintenance"):
        daemon.start_worker(name)
    now = time.time()
    bodies: list[dict[str, Any]] = []
    for i, (worker, job, _) in enumerate(PAST):
        kwargs = {"message": "compaction refused: no space left on device"} if job == "fail" else {"steps": 1} if job == "report" else {}
        bodies.append({"worker": worker, "date": now + 0.5 + i * 0.3, "job": {"name": job, "kwargs": kwargs}})
    bodies += [{"worker": worker, "date": now + hours * 3600, "job": "report" if worker == "reports" else "echo"} for hours, worker in FUTURE]
    bodies.append({"worker": "reports", "cron": "0 */4 * * *", "job": "report"})
    bodies.append({"worker": "mailer", "date": now + 4 * 3600, "job": "echo"})
    ids = daemon.create(bodies)["ids"]
    assert daemon.api("POST", f"/tasks/{tid(ids[-1])}/cancel")[0] == 200
    for task_id, (_, _, status) in zip(ids, PAST, strict=False):
        daemon.wait_status(task_id, status, timeout=30)
    daemon.wait_status(ids[-1], "canceled")
    return ids[[p[1] for p in PAST].index("hang")]


def test_overview_and_every_view_at_desktop_and_phone_width(ui: UI, daemon: Daemon) -> None:
    running = seed(daemon)
    page = ui.page
    ui.sign_in()
    expect(page.locator("[data-testid=couchdb-state]")).to_have_text("reachable")
    for status in ("done", "err", "scheduled", "waiting", "canceled"):
        expected = sum(p[2] == status for p in PAST) + (UPCOMING if status == "waiting" else 0) + (status == "canceled")
        expect(page.locator(f"[data-testid=count-{status}] strong")).to_have_text(str(expected))
    expect(page.locator("[data-testid=count-total] strong")).to_have_text(str(TOTAL))
    expect(page.locator("[data-testid=chart-lag] circle")).not_to_have_count(0)
    expect(page.locator("[data-testid=chart-throughput] rect.bar")).not_to_have_count(0)
    expect(page.locator("[data-testid=timeline-item]")).to_have_count(UPCOMING)
    ui.fits_width()
    ui.shot("overview")
    # Counts link to the filtered list.
    page.locator("[data-testid=count-err]").click()
    expect(page.locator("#view")).to_have_attribute("data-view", "tasks")
    expect(page.locator("#filter-status")).to_have_value("err")
    expect(page.locator("[data-testid=task-row]")).to_have_count(1)
    ui.go("tasks")
    expect(page.locator("[data-testid=task-row]")).to_have_count(TOTAL)
    ui.fits_width()
    ui.shot("tasks")
    ui.go("workers")
    expect(page.locator("[data-testid=worker-row]")).to_have_count(3)
    ui.fits_width()

    page.set_viewport_size(PHONE)
    ui.go("overview")
    expect(page.locator("[data-testid=timeline-item]")).to_have_count(UPCOMING)
    ui.fits_width()
    ui.shot("phone-overview")
    ui.go("tasks")
    expect(page.locator("[data-testid=task-row]")).to_have_count(TOTAL)
    ui.fits_width()
    ui.shot("phone-tasks")
    ui.go("workers")
    expect(page.locator("[data-testid=worker-row]")).to_have_count(3)
    ui.fits_width()
    page.goto(daemon.base + "/ui/#/task/" + tid(running))
    expect(page.locator("#task-status")).to_have_attribute("data-status", "scheduled")
    ui.fits_width()
    ui.shot("phone-task")
    # Do not leave it hanging: the daemon would wait for it when it stops.
    assert daemon.api("POST", f"/tasks/{tid(running)}/cancel")[0] == 200
    expect(page.locator("#task-status")).to_have_attribute("data-status", "canceled", timeout=15_000)
