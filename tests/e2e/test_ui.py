"""The web UI in a real browser (Debian's Chromium through Playwright) against a real API server and
Celery worker on the embedded defaults: sign-in, the new task form, a task followed live to its end,
cancel, field errors, the library pages, layout at 1280 and 375 px, keyboard use."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.support import redfish_bmc
from tests.support.live import octoprov
from tests.support.ui_browser import chromium_path, save_screenshot, start_ui_stack, unavailable

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the test extras install it
    sync_playwright = None

PAGES = ["/ui/", "/ui/tasks/new", "/ui/tasks/1", "/ui/images", "/ui/drivers", "/ui/templates", "/ui/hypervisors",
         "/ui/machines", "/ui/nodes", "/ui/packages", "/ui/groups"]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    chromium_path()
    running = start_ui_stack(tmp_path_factory.mktemp("ui") / "var")
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


def new_page(browser, stack, width=1280, height=800, signed_in=True, live=True):
    """``live`` False: the pages poll instead of streaming (an open stream never lets the network go idle)."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=stack.url)
    if signed_in:
        context.add_init_script(f"sessionStorage.setItem('octoprov.token', {json.dumps(stack.api.token)})")
    if not live:
        context.add_init_script("sessionStorage.setItem('octoprov.live', 'off')")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("console", lambda msg: page.problems.append(msg.text) if msg.type == "error" and not msg.text.startswith(
        "Failed to load resource") else None)  # the browser's own line for each 4xx the tests provoke
    return page


@pytest.fixture
def page(browser, stack):
    page = new_page(browser, stack)
    yield page
    assert page.problems == [], page.problems  # no script errors, no CSP violations
    page.context.close()


def open_form(page):
    page.goto("/ui/tasks/new")
    page.wait_for_selector("#task-form[data-ready]")


def choose_node(page, stack, node_id):
    page.check("input[name=targetType][value=fake]")
    page.select_option("select[name=hypervisorNodeId]", str(node_id))
    expect(page.locator("select[name='vm.network.vswitch'] option[value=fake-switch]")).to_have_count(1)


def task_count(stack) -> int:
    return stack.call("GET", "/tasks?perPage=1", 200).json()["total"]


# -- sign-in -------------------------------------------------------------------------------------


def test_sign_in_with_the_keyboard_and_sign_out(browser, stack):
    page = new_page(browser, stack, signed_in=False)
    page.goto("/")
    page.wait_for_url(re.compile(r"/ui/signin\?next=%2Fui%2F$"))
    expect(page.locator("#token")).to_be_focused()
    page.keyboard.type("opv_not-a-token")
    page.keyboard.press("Enter")
    expect(page.locator("#token-error")).to_have_text("This token is not valid.")
    page.fill("#token", stack.api.token)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/$"))
    expect(page.locator("[data-count=images] .count")).to_have_text(re.compile(r"^\d+$"))
    assert stack.api.token not in page.content()
    page.click("#signout")
    page.wait_for_url(re.compile(r"/ui/signin$"))
    page.goto("/ui/images")
    page.wait_for_url(re.compile(r"/ui/signin\?next=%2Fui%2Fimages$"))
    assert page.problems == [], page.problems
    page.context.close()


# -- the acceptance flows -----------------------------------------------------------------------


def test_create_a_task_through_the_form_and_watch_it_complete(page, stack, tmp_path):
    before = task_count(stack)
    open_form(page)
    page.fill("input[name=hostname]", "UI-WEB-01")
    choose_node(page, stack, stack.node["id"])
    page.fill("input[name='vm.cpu']", "2")
    page.fill("input[name='vm.memoryGb']", "8")
    add = page.locator("[data-add-disk]").first
    add.focus()
    page.keyboard.press("Enter")  # a second disk, by keyboard: the buttons are buttons
    expect(page.locator("input[name='vm.disks[1].sizeGb']")).to_be_focused()
    page.keyboard.press("Enter")  # Enter in a field does not send this form: a task is a costly thing to create
    add.focus()
    page.keyboard.press("Enter")  # a third disk
    rows = page.locator("#t-disks tbody tr")
    expect(rows).to_have_count(3)
    page.fill("input[name='vm.disks[1].sizeGb']", "200")
    page.fill("input[name='vm.disks[2].sizeGb']", "50")
    page.select_option("select[name='vm.disks[2].purpose']", "log")
    page.select_option("select[name='vm.disks[2].type']", "fixed")
    rows.nth(1).get_by_role("button", name="Remove disk 2").click()  # the middle one: the rest are renumbered
    expect(rows).to_have_count(2)
    expect(page.locator("input[name='vm.disks[1].sizeGb']")).to_have_value("50")
    page.select_option("select[name='vm.network.vswitch']", "fake-switch")
    page.fill("input[name='vm.network.vlan']", "100")
    page.select_option("select[name='os.imageId']", str(stack.image_id))
    page.fill("input[name='os.adminPassword']", "Ui-Secret-Pa55!")
    page.check("input[name='network.mode'][value=static]")
    page.fill("input[name='network.ip']", "192.0.2.50")
    page.fill("input[name='network.subnet']", "255.255.255.0")
    page.fill("input[name='network.gateway']", "192.0.2.1")
    page.fill("input[name='network.dns']", "192.0.2.10, 192.0.2.11")
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, "new-task.png", tmp_path)

    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/tasks/\d+$"))
    task_id = int(page.url.rsplit("/", 1)[1])
    assert task_count(stack) == before + 1
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    status = page.locator("#status")
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = status.get_attribute("data-status")
        if current and (not seen or seen[-1] != current):
            seen.append(current)
        if current == "completed":
            break
        time.sleep(0.1)
    assert seen[-1] == "completed", seen
    assert len(seen) >= 3, f"the page should have shown the run's states as they came: {seen}"
    assert page.evaluate("window.sameDocument") is True
    steps = page.locator("#steps li")
    assert steps.count() >= 8
    expect(page.locator("#steps li:not(.done)")).to_have_count(0)
    expect(page.locator("#steps li .i-done")).to_have_count(steps.count())
    expect(page.locator("#progress-text")).to_have_text("100%")
    expect(page.locator("#logs li").last).to_contain_text("Task completed")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#machine-card")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, "task-detail.png", tmp_path)

    config = stack.call("GET", f"/tasks/{task_id}", 200).json()["config"]
    assert config["vm"]["disks"] == [{"sizeGb": 100, "purpose": "os", "type": "dynamic"},
                                     {"sizeGb": 50, "purpose": "log", "type": "fixed"}]
    assert config["vm"]["network"] == {"vswitch": "fake-switch", "vlan": 100}
    assert config["vm"]["cpu"] == 2 and config["vm"]["memoryGb"] == 8
    assert config["network"] == {"mode": "static", "ip": "192.0.2.50", "subnet": "255.255.255.0",
                                 "gateway": "192.0.2.1", "dns": ["192.0.2.10", "192.0.2.11"]}
    page.locator("details.card summary").click()
    expect(page.locator("#config")).to_contain_text('"adminPassword": "********"')
    assert "Ui-Secret-Pa55!" not in page.content()


def test_cancel_a_running_task(page, stack):
    node = stack.fake_node("WAITS", delayS=0.1, callbacks=False)  # the machine never reports: the task waits
    task = stack.task(node["id"], stack.image_id, "UI-CANCEL")
    page.goto(f"/ui/tasks/{task['id']}")
    expect(page.locator("#status")).to_have_attribute("data-status", "booting", timeout=TIMEOUT_MS)
    expect(page.locator("#steps li.running")).to_contain_text("WinPE loaded")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel task").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#status")).to_contain_text("Cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    assert stack.call("GET", f"/tasks/{task['id']}", 200).json()["status"] == "cancelled"


def test_retry_a_failed_task(page, stack):
    node = stack.fake_node("FLAKY", delayS=0.1, failAt="install_agent")
    task = stack.task(node["id"], stack.image_id, "UI-RETRY")
    page.goto(f"/ui/tasks/{task['id']}")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-status", "failed", timeout=TIMEOUT_MS)
    expect(page.locator("#error")).to_contain_text("Install agent")
    expect(page.locator("#steps li.failed")).to_contain_text("Install agent")
    stack.call("PUT", f"/hypervisors/{node['id']}", 200, json={  # the fault is gone
        "name": "FLAKY", "kind": "fake", "endpoint": "fake://lab", "fake": {"delayS": 0.1, "callbackDelayS": 0.1}})
    page.get_by_role("button", name="Retry").click()
    expect(status).to_have_attribute("data-status", "completed", timeout=TIMEOUT_MS)
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#steps li:not(.done)")).to_have_count(0)


def test_an_invalid_host_name_is_shown_beside_its_field_and_nothing_is_lost(page, stack):
    before = task_count(stack)
    open_form(page)
    page.fill("input[name=hostname]", "bad_name!")
    choose_node(page, stack, stack.node["id"])
    page.fill("input[name='vm.cpu']", "8")
    page.fill("input[name='vm.memoryGb']", "32")
    page.click("[data-add-disk]")
    page.fill("input[name='vm.disks[1].sizeGb']", "0")  # a second mistake, deep in the table
    page.select_option("select[name='os.imageId']", str(stack.image_id))
    page.select_option("select[name='os.timezone']", "UTC")
    page.check("input[name='network.mode'][value=static]")
    page.fill("input[name='network.ip']", "192.0.2.60")
    page.fill("input[name='network.subnet']", "255.255.255.0")
    page.check("input[name='domain.join']")
    page.fill("input[name='domain.name']", "yourdom.local")
    page.click("button[type=submit]")

    summary = page.locator(".error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    hostname = page.locator("input[name=hostname]")
    expect(hostname).to_have_attribute("aria-invalid", "true")
    error = hostname.locator("xpath=..").locator(".field-error")
    expect(error).to_contain_text("may contain only letters, digits and hyphens")
    assert error.get_attribute("id") in hostname.get_attribute("aria-describedby").split()
    disk = page.locator("input[name='vm.disks[1].sizeGb']")
    expect(disk).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#t-disks .field-error")).to_have_text(
        "Disk 2 size in GB: Input should be greater than or equal to 1")  # which row, in words
    expect(summary.locator("li")).to_have_count(2)

    assert page.url.endswith("/ui/tasks/new") and task_count(stack) == before
    expect(hostname).to_have_value("bad_name!")
    expect(page.locator("input[name='vm.cpu']")).to_have_value("8")
    expect(page.locator("input[name='vm.memoryGb']")).to_have_value("32")
    expect(page.locator("#t-disks tbody tr")).to_have_count(2)
    expect(page.locator("select[name=hypervisorNodeId]")).to_have_value(str(stack.node["id"]))
    expect(page.locator("select[name='os.timezone']")).to_have_value("UTC")
    expect(page.locator("input[name='network.mode'][value=static]")).to_be_checked()
    expect(page.locator("input[name='network.ip']")).to_have_value("192.0.2.60")
    expect(page.locator("input[name='domain.name']")).to_have_value("yourdom.local")

    page.fill("input[name=hostname]", "UI-FIXED")
    page.fill("input[name='vm.disks[1].sizeGb']", "20")
    page.click("#t-check")  # a dry run: valid now, and still nothing created
    expect(page.locator("#task-form .form-status")).to_contain_text("Valid")
    expect(summary).to_be_hidden()
    expect(hostname).not_to_have_attribute("aria-invalid", "true")
    assert task_count(stack) == before


# -- dashboard ----------------------------------------------------------------------------------


def test_dashboard_shows_active_and_recent_tasks_with_filters(page, stack, tmp_path):
    failing = stack.fake_node("BROKEN", delayS=0.1, failAt="power_on")
    waiting = stack.fake_node("SLOW", delayS=0.1, callbacks=False)
    failed = stack.task(failing["id"], stack.image_id, "UI-FAILS")
    active = stack.task(waiting["id"], stack.image_id, "UI-ACTIVE")
    deadline = time.monotonic() + 120
    while stack.call("GET", f"/tasks/{failed['id']}", 200).json()["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    page.goto("/ui/")
    active_list = page.locator("#active")
    expect(active_list.get_by_role("link", name="UI-ACTIVE")).to_be_visible(timeout=TIMEOUT_MS)
    expect(active_list.get_by_role("link", name="UI-FAILS")).to_have_count(0)
    recent = page.locator("#recent")
    expect(recent.get_by_role("link", name="UI-FAILS")).to_be_visible()
    expect(recent.locator(".task-row", has_text="UI-FAILS")).to_contain_text("Failed: Start VM")
    expect(page.locator("[data-count=images] .count")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.locator("[data-count=hypervisors] .count")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(recent.locator(".task-row").first).to_be_visible()
    save_screenshot(page, "dashboard.png", tmp_path)

    page.select_option("#filter-status", "failed")
    expect(recent.locator(".task-row").first).to_contain_text("UI-FAILS")
    for row in recent.locator(".task-row").all():
        expect(row.locator(".icon")).to_have_class(re.compile("i-failed"))
    assert "status=failed" in page.url
    page.select_option("#filter-status", "")
    page.select_option("#filter-target", "hyperv")
    expect(recent).to_contain_text("No tasks match.")
    expect(active_list).to_contain_text("Nothing is running.")
    page.select_option("#filter-target", "fake")
    page.fill("#filter-hostname", "UI-ACT")
    expect(recent.locator(".task-row")).to_have_count(1)
    page.get_by_role("link", name="UI-ACTIVE").first.click()
    page.wait_for_url(re.compile(rf"/ui/tasks/{active['id']}$"))
    stack.call("DELETE", f"/tasks/{active['id']}", 200)


# -- library pages ------------------------------------------------------------------------------


def test_images_register_scan_and_delete(page, stack):
    (stack.api.data_dir / "images" / "ubuntu.iso").write_bytes(b"iso")
    page.goto("/ui/images")
    form = page.locator("#image-form")
    form.locator("input[name=name]").fill("Ubuntu 24.04")
    form.locator("select[name=osType]").select_option("linux")
    form.locator("input[name=imagePath]").fill("missing.iso")
    form.get_by_role("button", name="Register image").click()
    expect(form.locator("input[name=imagePath]")).to_have_attribute("aria-invalid", "true")
    expect(form.locator("input[name=name]")).to_have_value("Ubuntu 24.04")
    form.locator("input[name=imagePath]").fill("ubuntu.iso")
    form.get_by_role("button", name="Register image").click()
    row = page.locator("#list tr", has_text="Ubuntu 24.04")
    expect(row).to_contain_text("ubuntu.iso")
    expect(row).to_contain_text("3 B")

    upload = page.locator("#upload-form")
    page.set_input_files("#u-file", files=[{"name": "tiny.wim", "mimeType": "application/octet-stream",
                                            "buffer": b"x" * 2048}])
    upload.locator("input[name=name]").fill("Uploaded WIM")
    upload.get_by_role("button", name="Upload").click()
    expect(upload.locator(".form-status")).to_contain_text("Uploaded WIM uploaded (2.0 KB)")
    expect(page.locator("#list tr", has_text="Uploaded WIM")).to_contain_text("tiny.wim")
    assert (stack.api.data_dir / "images" / "tiny.wim").stat().st_size == 2048

    windows = page.locator("#list tr", has_text="Windows Server 2025")
    windows.get_by_role("button", name="Scan editions Windows Server 2025").click()
    expect(page.locator("#toast")).to_contain_text("Could not scan Windows Server 2025")  # "wim" is no WIM

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete Ubuntu 24.04").click()
    expect(page.locator("#list tr", has_text="Ubuntu 24.04")).to_have_count(0)


def test_driver_packs_add_and_delete(page, stack):
    folder = stack.api.data_dir / "drivers" / "dell-r750"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "netkvm.inf").write_text("[Version]\n")
    page.goto("/ui/drivers")
    form = page.locator("#driver-form")
    form.locator("input[name=name]").fill("Dell PowerEdge R750")
    form.locator("input[name=vendor]").fill("Dell")
    form.locator("input[name=modelPattern]").fill("R750(")
    form.locator("input[name=driverPath]").fill("dell-r750")
    form.get_by_role("button", name="Add driver pack").click()
    expect(form.locator("input[name=modelPattern]")).to_have_attribute("aria-invalid", "true")
    form.locator("input[name=modelPattern]").fill("R750")
    form.get_by_role("button", name="Add driver pack").click()
    row = page.locator("#list tr", has_text="Dell PowerEdge R750")
    expect(row).to_contain_text("Dell / R750")
    row.get_by_role("button", name=".inf files Dell PowerEdge R750").click()
    expect(page.locator("#list tr.detail")).to_contain_text("netkvm.inf")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete Dell PowerEdge R750").click()
    expect(page.locator("#list tr", has_text="Dell PowerEdge R750")).to_have_count(0)


def test_templates_create_edit_prefill_and_delete(page, stack):
    page.goto("/ui/templates")
    form = page.locator("#template-form")
    expect(form.locator(f"select[name=imageId] option[value='{stack.image_id}']")).to_have_count(1)
    form.locator("input[name=name]").fill("SQL Server Standard")
    form.locator("input[name=defaultCpu]").fill("6")
    form.locator("select[name=imageId]").select_option(str(stack.image_id))
    form.locator("[data-add-disk]").click()
    form.locator("[data-add-disk]").click()
    form.locator("input[name='defaultDisks[1].sizeGb']").fill("250")
    form.get_by_role("button", name="Create template").click()
    row = page.locator("#list tr", has_text="SQL Server Standard")
    expect(row).to_contain_text("6 CPU · 16 GB · 2 disk(s)")
    expect(row).to_contain_text("Windows Server 2025")

    row.get_by_role("button", name="Edit SQL Server Standard").click()
    expect(form.locator("input[name=defaultCpu]")).to_have_value("6")
    expect(form.locator("#p-disks tbody tr")).to_have_count(2)
    form.locator("input[name=defaultMemoryGb]").fill("24")
    form.locator("input[name=description]").fill("For database servers")
    form.get_by_role("button", name="Save changes").click()
    expect(row).to_contain_text("6 CPU · 24 GB · 2 disk(s)")
    expect(row).to_contain_text("For database servers")
    template_id = int(row.get_attribute("data-id"))

    open_form(page)
    page.select_option("select[name=templateId]", str(template_id))
    expect(page.locator("input[name='vm.memoryGb']")).to_have_value("24")
    expect(page.locator("input[name='vm.cpu']")).to_have_value("6")
    expect(page.locator("input[name='vm.disks[1].sizeGb']")).to_have_value("250")
    page.fill("input[name='vm.cpu']", "12")  # still editable
    expect(page.locator("input[name='vm.cpu']")).to_have_value("12")

    page.goto("/ui/templates")
    page.once("dialog", lambda dialog: dialog.accept())
    row = page.locator("#list tr", has_text="SQL Server Standard")
    row.get_by_role("button", name="Delete SQL Server Standard").click()
    expect(page.locator("#list tr", has_text="SQL Server Standard")).to_have_count(0)


def test_hypervisor_nodes_register_and_test_connection(page, stack):
    page.goto("/ui/hypervisors")
    form = page.locator("#node-form")
    form.locator("input[name=name]").fill("LAB-UI")
    form.locator("select[name=kind]").select_option("fake")
    expect(form.locator("input[name=password]")).to_be_hidden()
    form.locator("input[name=endpoint]").fill("http://not-fake")
    form.get_by_role("button", name="Register node").click()
    expect(form.locator("input[name=endpoint]")).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".field-error")).to_contain_text("fake://")
    form.locator("input[name=endpoint]").fill("fake://ui")
    form.get_by_role("button", name="Register node").click()
    row = page.locator("#list tr", has_text="LAB-UI")
    expect(row).to_contain_text("fake://ui")
    row.get_by_role("button", name="Test connection LAB-UI").click()
    detail = page.locator("#list tr.detail")
    expect(detail).to_contain_text("Connected in")
    expect(detail).to_contain_text("fake-switch")
    expect(detail).to_contain_text("fake-pool")

    form.locator("input[name=name]").fill("LAB-UI")  # the same name again: the API's 409 lands beside it
    form.locator("select[name=kind]").select_option("fake")
    form.locator("input[name=endpoint]").fill("fake://again")
    form.get_by_role("button", name="Register node").click()
    expect(form.locator("input[name=name]")).to_have_attribute("aria-invalid", "true")


def test_bare_metal_machines_register_edit_and_show_their_hardware(page, stack, browser):
    page.goto("/ui/machines")
    form = page.locator("#machine-form")
    form.locator("input[name=name]").fill("R740-01")
    form.locator("input[name=macAddresses]").fill("52:54:00:e2:e0:01, not-a-mac")
    form.locator("input[name=username]").fill("root")
    form.get_by_role("button", name="Register machine").click()
    mac_error = form.locator(".field-error")
    expect(mac_error).to_contain_text("macAddresses[1]")  # the API's 400 lands beside the MACs, naming the bad one
    expect(form.locator("input[name=macAddresses]")).to_have_attribute("aria-invalid", "true")
    form.locator("input[name=macAddresses]").fill("52:54:00:e2:e0:01 52-54-00-e2-e0-02")
    form.locator("input[name='bmc.address']").fill("https://127.0.0.1:8443")
    form.locator("input[name=password]").fill("bmc-secret-e2e")
    form.get_by_role("button", name="Register machine").click()
    row = page.locator("#list tr", has_text="R740-01")
    expect(row).to_contain_text("52:54:00:e2:e0:02")
    expect(row).to_contain_text("https://127.0.0.1:8443")
    expect(row).to_contain_text("credentials stored (encrypted)")
    expect(row).to_contain_text("not reported yet")
    assert "bmc-secret-e2e" not in page.content()
    machine = next(m for m in stack.call("GET", "/machines", 200).json()["items"] if m["name"] == "R740-01")
    assert machine["bmc"]["verifyCertificate"] is True and machine["username"] == "root" and machine["hasCredentials"]

    # the machine's firmware reports its hardware when it boots from Octoprov for a task (as iPXE asks)
    folder = stack.api.data_dir / "images" / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vmlinuz", "initrd.gz", "root.img"):
        (folder / name).write_bytes(name.encode() * 100)
    image = stack.call("POST", "/images", 201, json={
        "name": "Tiny Linux UI", "osType": "linux", "imagePath": "tiny/root.img", "kernelPath": "tiny/vmlinuz",
        "initrdPath": "tiny/initrd.gz"}).json()
    task = stack.call("POST", "/tasks", 201, json={
        "hostname": "r740-01", "targetType": "baremetal", "macAddress": "52:54:00:e2:e0:01",
        "os": {"imageId": image["id"]}}).json()
    boot = requests.get(stack.url + "/api/v1/provisioning/pxe/boot?mac=52-54-00-e2-e0-01&manufacturer=Contoso"
                        "&product=PowerServer%20R740&uuid=8b1c2d3e-0000-4000-8000-0000000000e2&platform=efi&arch=x86_64",
                        headers={"User-Agent": "iPXE/1.21.1+ (g988d2)"}, timeout=30)
    assert boot.status_code == 200
    stack.call("DELETE", f"/tasks/{task['id']}", 200)
    page.reload()
    row = page.locator("#list tr", has_text="R740-01")
    expect(row).to_contain_text("Contoso PowerServer R740")
    row.get_by_role("button", name="Hardware R740-01").click()
    detail = page.locator("#list tr.detail")
    expect(detail.locator("dt", has_text="System UUID")).to_be_visible()
    expect(detail).to_contain_text("8b1c2d3e-0000-4000-8000-0000000000e2")

    # editing keeps the stored password when the field is left empty, and can take the BMC away
    row.get_by_role("button", name="Edit R740-01").click()
    expect(form.locator("input[name='bmc.address']")).to_have_value("https://127.0.0.1:8443")
    expect(form.locator("input[name=password]")).to_have_value("")
    form.locator("input[name=macAddresses]").fill("52:54:00:e2:e0:01")
    form.get_by_role("button", name="Save changes").click()
    expect(row).not_to_contain_text("52:54:00:e2:e0:02")
    assert stack.call("GET", f"/machines/{machine['id']}", 200).json()["hasCredentials"] is True
    row.get_by_role("button", name="Edit R740-01").click()
    form.locator("input[name='bmc.address']").fill("")
    form.locator("input[name=username]").fill("")
    form.get_by_role("button", name="Save changes").click()
    expect(row).to_contain_text("none: powered on by hand")

    # a viewer sees the machines and their hardware, and no form or Edit/Delete
    viewer_token = octoprov("token", "create", "ui-viewer", "--role", "viewer", env=stack.api.env).stdout.strip()
    viewer = browser.new_context(base_url=stack.url)
    try:
        viewer.add_init_script(f"sessionStorage.setItem('octoprov.token', {json.dumps(viewer_token)})")
        seen = viewer.new_page()
        seen.goto("/ui/machines")
        row = seen.locator("#list tr", has_text="R740-01")
        row.get_by_role("button", name="Hardware R740-01").click()
        expect(seen.locator("#list tr.detail")).to_contain_text("Contoso")
        expect(row.get_by_role("button", name="Edit R740-01")).to_be_hidden()
        expect(row.get_by_role("button", name="Delete R740-01")).to_be_hidden()
        expect(seen.locator("#machine-form")).to_be_hidden()
    finally:
        viewer.close()


def test_a_machine_is_inspected_through_its_bmc_and_an_offered_card_added(page, stack, tmp_path):
    """sushy-tools' Redfish emulator over libvirt's test driver: the UI stack's worker reads it."""
    with redfish_bmc.emulator(tmp_path / "bmc", libvirt_uri="test:///default") as bmc:
        page.goto("/ui/machines")
        form = page.locator("#machine-form")
        form.locator("input[name=name]").fill("EMU-01")
        form.locator("input[name=macAddresses]").fill("52:54:00:e2:e0:10")
        form.locator("input[name='bmc.address']").fill(bmc.url)
        form.locator("input[name='bmc.systemId']").fill("test")
        form.locator("input[name=username]").fill(bmc.username)
        form.locator("input[name=password]").fill(bmc.password)
        form.get_by_role("button", name="Register machine").click()
        row = page.locator("#list tr", has_text="EMU-01")
        expect(row).to_be_visible()
        deadline = time.monotonic() + 60
        machine = next(m for m in stack.call("GET", "/machines", 200).json()["items"] if m["name"] == "EMU-01")
        while (machine["inspection"] or {}).get("state") not in ("done", "failed"):
            assert time.monotonic() < deadline, machine
            time.sleep(0.5)
            machine = stack.call("GET", f"/machines/{machine['id']}", 200).json()
        assert machine["inspection"]["state"] == "done", machine["inspection"]
        row.get_by_role("button", name="Inspect EMU-01").click()  # again, from the page: it waits for the BMC
        expect(row).to_contain_text("Sushy Emulator")
        expect(row).to_contain_text("2 CPU · 8.0 GB")
        expect(row).to_contain_text("1 card(s) not registered")
        row.get_by_role("button", name="Hardware EMU-01").click()
        detail = page.locator("#list tr.detail")
        expect(detail.locator("dt", has_text="BIOS version")).to_be_visible()
        expect(detail).to_contain_text("aa:bb:cc:dd:ee:ff")
        detail.get_by_role("button", name="Add aa:bb:cc:dd:ee:ff to EMU-01").click()
        expect(page.locator("#list tr", has_text="EMU-01")).to_contain_text("aa:bb:cc:dd:ee:ff")
        added = stack.call("GET", f"/machines/{machine['id']}", 200).json()
        assert added["macAddresses"] == ["52:54:00:e2:e0:10", "aa:bb:cc:dd:ee:ff"] and added["offeredMacs"] == []
        assert added["hasCredentials"] is True  # the stored BMC password was kept


def test_an_ipmi_machine_is_registered_without_the_redfish_settings(page, stack):
    page.goto("/ui/machines")
    form = page.locator("#machine-form")
    expect(form.locator("input[name='bmc.systemId']")).to_be_visible()  # Redfish, the default
    form.locator("select[name='bmc.protocol']").select_option("ipmi")
    expect(form.locator("input[name='bmc.systemId']")).to_be_hidden()
    expect(form.locator("input[name='bmc.verifyCertificate']")).to_be_hidden()
    for name, value in {"name": "R640-IPMI", "macAddresses": "52:54:00:e2:e0:31", "bmc.address": "ipmi://127.0.0.1:6230",
                        "username": "admin", "password": "ipmi-secret-e2e"}.items():
        form.locator(f"input[name='{name}']").fill(value)
    form.get_by_role("button", name="Register machine").click()
    row = page.locator("#list tr", has_text="R640-IPMI")
    expect(row).to_contain_text("ipmi://127.0.0.1:6230")
    expect(row).to_contain_text("credentials stored (encrypted)")
    machine = next(m for m in stack.call("GET", "/machines", 200).json()["items"] if m["name"] == "R640-IPMI")
    assert machine["kind"] == "ipmi" and machine["bmc"] == {"address": "ipmi://127.0.0.1:6230", "protocol": "ipmi"}
    row.get_by_role("button", name="Edit R640-IPMI").click()
    expect(form.locator("select[name='bmc.protocol']")).to_have_value("ipmi")
    expect(form.locator("input[name='bmc.systemId']")).to_be_hidden()
    stack.call("DELETE", f"/machines/{machine['id']}", 204)


def test_installed_machines_list_what_tasks_installed(page, stack):
    task = stack.task(stack.node["id"], stack.image_id, "UI-NODE-01")
    deadline = time.monotonic() + 90
    while stack.call("GET", f"/tasks/{task['id']}", 200).json()["status"] != "completed":
        assert time.monotonic() < deadline, "the fake task did not complete"
        time.sleep(0.5)
    node = stack.call("GET", "/nodes?hostname=UI-NODE-01", 200).json()["items"][0]
    page.goto("/ui/nodes")
    row = page.locator("#list tr", has_text="UI-NODE-01")
    expect(row).to_contain_text("Windows Server 2025")
    for address in node["ipAddresses"] + node["macAddresses"]:
        expect(row).to_contain_text(address)
    row.get_by_role("link", name=f"task {task['id']}").click()
    page.wait_for_url(re.compile(rf"/ui/tasks/{task['id']}$"))
    page.go_back()
    row = page.locator("#list tr", has_text="UI-NODE-01")
    expect(row.get_by_role("button", name="Delete UI-NODE-01")).to_have_count(0)  # installed machines are records


def test_groups_and_packages_reach_the_task_form(page, stack):
    page.goto("/ui/groups")
    form = page.locator("#group-form")
    form.locator("input[name=name]").fill("SQL Servers")
    form.get_by_role("button", name="Create group").click()
    expect(page.locator("#list tr", has_text="SQL Servers")).to_be_visible()
    page.locator("#list tr", has_text="SQL Servers").get_by_role("button", name="Members SQL Servers").click()
    expect(page.locator("#list tr.detail")).to_contain_text("No members yet.")

    page.goto("/ui/packages")
    form = page.locator("#package-form")
    form.locator("input[name=name]").fill("SQL Server 2025")
    form.locator("textarea[name=script]").fill("param($instanceName)\nWrite-Output $instanceName")
    form.locator("textarea[name=parametersSchema]").fill("{not json")
    form.get_by_role("button", name="Create package").click()
    expect(form.locator("textarea[name=parametersSchema]")).to_have_attribute("aria-invalid", "true")
    schema = {"properties": {"instanceName": {"type": "string", "description": "SQL instance"}},
              "required": ["instanceName"]}
    form.locator("textarea[name=parametersSchema]").fill(json.dumps(schema))
    form.get_by_role("button", name="Create package").click()
    expect(page.locator("#list tr", has_text="SQL Server 2025")).to_contain_text("instanceName*")

    open_form(page)
    page.get_by_label("SQL Servers").check()
    page.select_option("#t-package-choice", label="SQL Server 2025 (windows)")
    page.get_by_role("button", name="+ Add package").click()
    expect(page.get_by_label("instanceName")).to_be_visible()
    page.fill("input[name=hostname]", "UI-SQL-01")
    choose_node(page, stack, stack.node["id"])
    page.select_option("select[name='os.imageId']", str(stack.image_id))
    page.click("#t-check")  # the package needs its parameter: the error lands at the parameter
    parameter = page.locator("input[name='postInstall.runPackages[0].parameters.instanceName']")
    expect(parameter).to_have_attribute("aria-invalid", "true")
    parameter.fill("MSSQL")
    page.click("#t-check")
    expect(page.locator("#task-form .form-status")).to_contain_text("Valid")


# -- layout, accessibility, weight --------------------------------------------------------------


@pytest.mark.parametrize("width", [1280, 375])
def test_pages_fit_the_width_and_label_every_control(browser, stack, width):
    page = new_page(browser, stack, width=width, height=800, live=False)
    try:
        for path in PAGES:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at {width} px"
            unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
                .filter((c) => c.type !== 'hidden' && c.offsetParent !== null)
                .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label'))
                .map((c) => c.name || c.id)""")
            assert unlabelled == [], f"{path}: controls without a label: {unlabelled}"
            not_buttons = page.evaluate("""() => [...document.querySelectorAll('[onclick], a:not([href])')].length""")
            assert not_buttons == 0
        assert page.problems == [], page.problems
    finally:
        page.context.close()


def test_the_form_is_usable_with_the_keyboard_alone(page, stack):
    open_form(page)
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Enter")
    for _ in range(40):  # through the menu to the first field of the form
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "hostname":
            break
    expect(page.locator("input[name=hostname]")).to_be_focused()
    order = []
    for _ in range(60):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.name || document.activeElement.textContent.trim()"))
    assert order.index("templateId") < order.index("hypervisorNodeId") < order.index("vm.cpu") < order.index(
        "vm.disks[0].sizeGb") < order.index("+ Add disk") < order.index("os.imageId")
    visible = page.evaluate("""() => { const r = document.activeElement.getBoundingClientRect();
        return r.width > 0 && r.height > 0; }""")
    assert visible


def test_pages_are_light(browser, stack):
    """HTML, stylesheet and scripts of each page (what the browser decoded), without the API's answers."""
    page = new_page(browser, stack, live=False)
    try:
        for path in PAGES:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            total = page.evaluate("""() => performance.getEntries()
                .filter((e) => e.name.includes('/ui/') && e.decodedBodySize !== undefined)
                .reduce((sum, e) => sum + e.decodedBodySize, 0)""")
            assert 0 < total < 120_000, f"{path}: {total} bytes"
    finally:
        page.context.close()
