"""The UI follows the live streams: with polling switched off, the dashboard and the task detail still show
a run as it happens, and the task's log survives the stream's reconnections whole, each line once.

A real API (two gunicorn processes, streams ended by the server every 2 s, so a run sees several
reconnections) and a real worker on the embedded defaults, driven in Debian's Chromium."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.e2e.test_ui import new_page, sync_playwright
from tests.support.ui_browser import chromium_path, start_ui_stack, unavailable

STREAM_S = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    chromium_path()
    running = start_ui_stack(tmp_path_factory.mktemp("ui-live") / "var", extra_env={
        "OCTOPROV_API_WORKERS": "2", "OCTOPROV_API_THREADS": "16", "OCTOPROV_EVENTS_MAX_STREAM_S": str(STREAM_S),
        "OCTOPROV_EVENTS_HEARTBEAT_S": "1"})
    running.node = running.fake_node("LAB", delayS=0.6, callbackDelayS=0.6)
    running.image_id = running.image()["id"]
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(stack):
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path())
        yield chromium
        chromium.close()


def live_page(browser, stack, *, live: bool = True):
    """A signed-in page that never polls (and, with ``live`` False, does not stream either); it records
    the API requests it makes."""
    page = new_page(browser, stack)
    page.context.add_init_script("sessionStorage.setItem('octoprov.polling', 'off')" + (
        "" if live else "; sessionStorage.setItem('octoprov.live', 'off')"))
    page.requests = []
    page.on("request", lambda r: page.requests.append((r.method, r.url.split("/api/v1/provisioning", 1)[-1],
                                                       r.headers.get("last-event-id"))) if "/api/v1/" in r.url
            else None)
    return page


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def test_task_detail_follows_the_stream_and_its_log_survives_reconnections(browser, stack):
    task = stack.task(stack.node["id"], stack.image_id, "LIVE-01")
    page = live_page(browser, stack)
    try:
        page.goto(f"/ui/tasks/{task['id']}")
        status = page.locator("#status")
        seen: list[str] = []

        def completed() -> bool:
            current = status.get_attribute("data-status")
            if current and (not seen or seen[-1] != current):
                seen.append(current)
            return current == "completed"

        wait_for(completed)
        assert len(seen) >= 3, f"the page should have shown the run's states as they came: {seen}"
        expect(page.locator("#logs li").last).to_contain_text("Task completed")
        expect(page.locator("#progress-text")).to_have_text("100%")

        stored = [entry["id"] for entry in stack.call("GET", f"/tasks/{task['id']}/logs?limit=1000", 200).json()]
        shown = [int(i) for i in page.locator("#logs li").evaluate_all("(lis) => lis.map((li) => li.dataset.logId)")]
        assert shown == stored, "every line, once, in order"

        streams = [(path, last) for method, path, last in page.requests if path.endswith("/events")]
        assert len(streams) >= 3, f"the server ends a stream every {STREAM_S} s: the page reconnected {streams}"
        assert streams[0][1] is None and all(last for _, last in streams[1:]), "each reconnection resumes"
        resumed = [int(last) for _, last in streams[1:]]
        assert resumed == sorted(resumed)
        polled = [path for _, path, _ in page.requests if path.startswith("/tasks") and not path.endswith("/events")]
        assert polled == [], f"polling is off: only the streams update the page ({polled})"
        assert page.problems == [], page.problems
    finally:
        page.context.close()


def test_the_dashboard_follows_the_stream(browser, stack):
    page = live_page(browser, stack)
    try:
        page.goto("/ui/")
        expect(page.locator("#recent")).to_have_attribute("aria-busy", "false")
        task = stack.task(stack.node["id"], stack.image_id, "LIVE-DASH-01")
        row = page.locator("#active .task-row", has_text="LIVE-DASH-01")
        expect(row).to_be_visible(timeout=30_000)  # a new task: the event reloads the lists
        done = page.locator("#recent .task-row", has_text="LIVE-DASH-01").locator(".i-done")
        expect(done).to_be_visible(timeout=120_000)  # its run, change by change, to the end
        expect(row).to_have_count(0)
        streams = [path for _, path, _ in page.requests if path.endswith("/events")]
        assert streams and all(path == "/events" for path in streams)
        assert stack.call("GET", f"/tasks/{task['id']}", 200).json()["status"] == "completed"
        assert page.problems == [], page.problems
    finally:
        page.context.close()


def test_without_stream_and_polling_nothing_updates(browser, stack):
    """The control: the same page with the stream off too stays as it was loaded, so the tests above
    saw the stream's work."""
    page = live_page(browser, stack, live=False)
    try:
        page.goto("/ui/")
        for box in ("#active", "#recent"):  # both lists loaded (in parallel) before the task exists
            expect(page.locator(box)).to_have_attribute("aria-busy", "false")
        page.wait_for_load_state("networkidle")
        stack.task(stack.node["id"], stack.image_id, "LIVE-DASH-02")
        time.sleep(3)
        expect(page.locator(".task-row", has_text="LIVE-DASH-02")).to_have_count(0)
        assert not [path for _, path, _ in page.requests if path.endswith("/events")]
    finally:
        page.context.close()
