"""The pipeline end to end: real API server, Redis broker, Celery workers and the fake target."""

from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from octoprov.targets.fake import events
from tests.support.stack import flush_redis, start_stack


def full(stack, **post_install) -> dict:
    """A request that has every kind of step: offline join, agent, a package and a script."""
    return {"domain": {"join": True, "name": "yourdom.local", "method": "offline"},
            "postInstall": {"installAgent": True,
                            "runPackages": [{"packageId": stack.package_id, "parameters": {"instanceName": "SQL"}}],
                            "runScripts": [{"name": "Configure-Firewall.ps1"}], **post_install}}
WORK_STEPS = ["create_vm", "prepare_domain_join", "render_answers", "register_mac", "power_on", "install_agent",
              "package_0", "script_0", "finish"]
WAIT_STEPS = ["installer_started", "os_install", "first_boot", "domain_join"]
EVENT_OF = {"installer_started": "installer_started", "os_install": "os_installed", "first_boot": "first_boot",
            "domain_join": "domain_joined"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_server, redis_url):
    flush_redis(redis_url)
    running = start_stack(tmp_path_factory.mktemp("stack"), postgres_server, redis_url)
    running.start_worker(concurrency=4)
    running.image_id = running.image()
    running.package_id = running.call("POST", "/packages", 201, json={
        "name": "SQL Server", "osType": "windows", "script": "param($instanceName) Write-Output $instanceName",
        "parametersSchema": {"type": "object", "properties": {"instanceName": {"type": "string"}}}}).json()["id"]
    yield running
    running.stop()


def machines_of(stack, task_id: int) -> int:
    """How many fake machines of this task exist now (created minus destroyed)."""
    actions = [e["action"] for e in events(stack.data_dir) if e["task"] == task_id]
    return actions.count("create") - actions.count("destroy")


def test_one_fake_task_completes(stack):
    node = stack.fake_node("FAKE-ONE")
    task = stack.task(node, stack.image_id, **full(stack))
    assert [s["name"] for s in task["steps"]] == [*WORK_STEPS[:5], *WAIT_STEPS, *WORK_STEPS[5:]]
    assert {s["status"] for s in task["steps"]} == {"pending"}
    done = stack.wait_for(task["id"], {"completed", "failed"}, timeout=90)
    assert done["status"] == "completed", done
    assert done["progressPercent"] == 100 and done["currentStep"] is None
    for step in done["steps"]:
        assert step["status"] == "done" and step["startedAt"] and step["finishedAt"], step
    logs = stack.call("GET", f"/tasks/{task['id']}/logs", 200).json()
    assert {s["name"] for s in done["steps"]} <= {entry["step"] for entry in logs}
    assert machines_of(stack, task["id"]) == 1


def test_fifty_tasks_all_complete(stack):
    node = stack.fake_node("FAKE-FIFTY")
    ids = [stack.task(node, stack.image_id, hostname=f"WEB-{i:02d}")["id"] for i in range(50)]
    for task_id in ids:
        done = stack.wait_for(task_id, {"completed", "failed", "cancelled"}, timeout=300)
        assert done["status"] == "completed", done
        assert all(s["status"] == "done" and s["startedAt"] and s["finishedAt"] for s in done["steps"])
        logged = {entry["step"] for entry in stack.call("GET", f"/tasks/{task_id}/logs", 200).json()}
        assert {s["name"] for s in done["steps"]} <= logged
        assert machines_of(stack, task_id) == 1


def test_a_failure_at_each_step_fails_the_task_and_rolls_back(stack):
    tasks = {}
    for step in WORK_STEPS + WAIT_STEPS:
        node = stack.fake_node(f"FAIL-{step}", failAt=step)
        tasks[step] = stack.task(node, stack.image_id, hostname=f"F-{len(tasks):02d}",
                                 **full(stack, onFailure="rollback"))["id"]
    for step, task_id in tasks.items():
        failed = stack.wait_for(task_id, {"completed", "failed"}, timeout=120)
        assert failed["status"] == "failed", (step, failed)
        title = next(s["title"] for s in failed["steps"] if s["name"] == step)
        assert failed["errorMessage"].startswith(title), failed["errorMessage"]
        assert next(s for s in failed["steps"] if s["name"] == step)["status"] == "failed"
        deadline = time.monotonic() + 60
        while machines_of(stack, task_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert machines_of(stack, task_id) == 0, f"rollback after a failure at {step} left the machine"
        mine = [e["action"] for e in events(stack.data_dir) if e["task"] == task_id]
        if "computer_account" in mine:
            assert "remove_computer_account" in mine
        assert "cleanup_boot" in mine


def test_a_post_install_failure_keeps_the_installed_machine_by_default(stack):
    node = stack.fake_node("FAIL-KEEP", failAt="script_0")
    task_id = stack.task(node, stack.image_id, hostname="F-KEEP", **full(stack))["id"]
    failed = stack.wait_for(task_id, {"completed", "failed"}, timeout=120)
    assert failed["status"] == "failed" and failed["errorMessage"].startswith("Post-install: script")
    time.sleep(2)  # a rollback would have started by now
    assert machines_of(stack, task_id) == 1
    assert "cleanup_boot" not in [e["action"] for e in events(stack.data_dir) if e["task"] == task_id]


@pytest.mark.parametrize("step", ["create_vm", "power_on", "package_0"])
def test_transient_failures_are_retried(stack, step):
    node = stack.fake_node(f"FLAKY-{step}", failAt=step, failTimes=2)
    task = stack.task(node, stack.image_id, hostname=f"FLAKY-{step[:3].upper()}", **full(stack))
    done = stack.wait_for(task["id"], {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed", done
    fails = [e for e in events(stack.data_dir) if e["task"] == task["id"] and e["action"] == "fail"]
    assert len(fails) == 2 and not any(e["permanent"] for e in fails)
    assert machines_of(stack, task["id"]) == 1
    messages = [e["message"] for e in stack.call("GET", f"/tasks/{task['id']}/logs", 200).json()]
    assert sum("retrying" in m for m in messages) == 2 and any("attempt 3" in m for m in messages)


@pytest.mark.parametrize("wait_step", WAIT_STEPS)
def test_cancel_in_each_wait_state(stack, wait_step):
    node = stack.fake_node(f"MANUAL-{wait_step}", callbacks=False)
    task = stack.task(node, stack.image_id, hostname=f"CANCEL-{WAIT_STEPS.index(wait_step)}", **full(stack))
    stack.wait_step(task["id"], "installer_started")
    for step in WAIT_STEPS[:WAIT_STEPS.index(wait_step)]:
        answer = stack.report(task["id"], EVENT_OF[step])
        assert answer.status_code == 200 and answer.json()["accepted"], answer.text
    waiting = stack.wait_step(task["id"], wait_step)
    assert waiting["status"] == {"installer_started": "booting", "os_install": "installing",
                                 "first_boot": "installing", "domain_join": "configuring"}[wait_step]
    cancelled = stack.call("DELETE", f"/tasks/{task['id']}", 200).json()
    assert cancelled["status"] == "cancelled"
    deadline = time.monotonic() + 60
    while machines_of(stack, task["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert machines_of(stack, task["id"]) == 0
    mine = [e["action"] for e in events(stack.data_dir) if e["task"] == task["id"]]
    assert "remove_computer_account" in mine
    late = stack.report(task["id"], EVENT_OF[wait_step])  # the machine reports after all: ignored
    assert late.status_code == 200 and not late.json()["accepted"]
    assert stack.get(task["id"])["status"] == "cancelled"


def test_callbacks_need_the_tasks_token_and_come_in_order(stack):
    node = stack.fake_node("MANUAL-AUTH", callbacks=False)
    task = stack.task(node, stack.image_id, hostname="AUTH")
    stack.wait_step(task["id"], "installer_started")
    before = stack.get(task["id"])
    wrong = stack.report(task["id"], "installer_started", token="not-the-token")
    assert wrong.status_code == 403
    assert stack.report(4242, "installer_started", token="x").status_code == 404
    assert stack.get(task["id"]) == before
    early = stack.report(task["id"], "first_boot")
    assert early.status_code == 200 and early.json() == {"accepted": False, "reason": "out of order"}
    assert stack.report(task["id"], "installer_started").json()["accepted"]
    duplicate = stack.report(task["id"], "installer_started")
    assert duplicate.json() == {"accepted": False, "reason": "duplicate"}
    assert stack.get(task["id"])["status"] == "installing"
    bad = stack.report(task["id"], "rebooted")
    assert bad.status_code == 400 and "event" in bad.json()["errors"]
    logs = [e["message"] for e in stack.call("GET", f"/tasks/{task['id']}/logs", 200).json()]
    assert any("out of order" in m for m in logs) and any("duplicate" in m for m in logs)


def test_retry_restarts_from_the_failed_step(stack):
    node = stack.fake_node("RETRY", failAt="install_agent")
    task = stack.task(node, stack.image_id, hostname="RETRY", options={"keepVmOnFailure": True}, **full(stack))
    failed = stack.wait_for(task["id"], {"failed", "completed"})
    assert failed["status"] == "failed"
    assert machines_of(stack, task["id"]) == 1  # kept for debugging: no rollback
    stack.call("PUT", f"/hypervisors/{node}", 200, json={"name": "RETRY", "kind": "fake", "endpoint": "fake://lab",
                                                         "fake": {"delayS": 0, "callbackDelayS": 0.05}})
    restarted = stack.call("POST", f"/tasks/{task['id']}/retry", 200).json()
    assert restarted["status"] in ("pending", "configuring", "completed")
    done = stack.wait_for(task["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    mine = [e["action"] for e in events(stack.data_dir) if e["task"] == task["id"]]
    assert mine.count("create") == 1 and mine.count("power_on") == 1  # nothing before the failed step ran again
    assert stack.call("POST", f"/tasks/{task['id']}/retry").status_code == 409


def test_retry_after_rollback_starts_again(stack):
    node = stack.fake_node("RETRY-RB", failAt="render_answers")
    task = stack.task(node, stack.image_id, hostname="RETRY2")
    assert stack.wait_for(task["id"], {"failed", "completed"})["status"] == "failed"
    deadline = time.monotonic() + 30
    while machines_of(stack, task["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.call("PUT", f"/hypervisors/{node}", 200, json={"name": "RETRY-RB", "kind": "fake", "endpoint": "fake://lab",
                                                         "fake": {"delayS": 0, "callbackDelayS": 0.05}})
    stack.call("POST", f"/tasks/{task['id']}/retry", 200)
    assert stack.wait_for(task["id"], {"completed", "failed"})["status"] == "completed"
    mine = [e["action"] for e in events(stack.data_dir) if e["task"] == task["id"]]
    assert mine.count("create") == 2 and mine.count("destroy") == 1 and machines_of(stack, task["id"]) == 1


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_completion_webhook_is_delivered(stack):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        node = stack.fake_node("HOOKED")
        task = stack.task(node, stack.image_id, hostname="HOOKED", options={"webhooks": [url]})
        stack.wait_for(task["id"], {"completed", "failed"})
        deadline = time.monotonic() + 30
        while not _Receiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
        headers, body = _Receiver.received[0]
        assert body["taskId"] == task["id"] and body["event"] == "task.completed"
        assert headers["X-Octoprov-Event"] == "task.completed"
    finally:
        server.shutdown()


def test_a_killed_worker_does_not_create_a_second_machine(tmp_path, postgres_server, redis_url):
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url, broker_visibility_timeout_s=4, step_lease_s=4)
    try:
        worker = stack.start_worker(concurrency=2)
        image = stack.image()
        node = stack.fake_node("SLOW", delayS=2.0)
        for step in ("create_vm", "power_on"):
            task = stack.task(node, image, hostname=f"CRASH-{len(step)}")
            stack.wait_step(task["id"], step, "running", timeout=60)
            stack.kill(worker, signal.SIGKILL)
            worker = stack.start_worker(concurrency=2)
            done = stack.wait_for(task["id"], {"completed", "failed"}, timeout=180)
            assert done["status"] == "completed", done
            assert machines_of(stack, task["id"]) == 1
            mine = [e["action"] for e in events(stack.data_dir) if e["task"] == task["id"]]
            assert mine.count("create") == 1 and mine.count("power_on") == 1, mine
    finally:
        stack.stop()


def test_a_wait_past_its_deadline_fails_the_task(tmp_path, postgres_server, redis_url):
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url, deadline_installer_started_s=2, deadline_check_s=1)
    try:
        stack.start_worker(concurrency=2)
        stack.start_beat()
        node = stack.fake_node("SILENT", callbacks=False)
        task = stack.task(node, stack.image(), hostname="SILENT")
        failed = stack.wait_for(task["id"], {"failed", "completed"}, timeout=90)
        assert failed["status"] == "failed"
        assert failed["errorMessage"] == "WinPE loaded: timed out waiting for WinPE loaded after 2 s"
        deadline = time.monotonic() + 30
        while machines_of(stack, task["id"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert machines_of(stack, task["id"]) == 0
    finally:
        stack.stop()


def test_parked_tasks_hold_no_worker_slot(tmp_path, postgres_server, redis_url):
    """200 tasks waiting for their machines, 4 worker slots: a new task still starts at once."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url)
    try:
        stack.start_worker(concurrency=4)
        image = stack.image()
        silent = stack.fake_node("SILENT-200", callbacks=False)
        parked = [stack.task(silent, image, hostname=f"PARK-{i:03d}")["id"] for i in range(200)]
        deadline = time.monotonic() + 240
        while True:
            page = stack.call("GET", "/tasks", 200, params={"status": "booting", "perPage": 1}).json()
            if page["total"] == 200:
                break
            assert time.monotonic() < deadline, f"only {page['total']} of 200 tasks reached their wait state"
            time.sleep(0.5)
        node = stack.fake_node("FRESH")
        started = time.monotonic()
        task = stack.task(node, image, hostname="FRESH")
        first = stack.wait_step(task["id"], "create_vm", "done", timeout=30)
        waited = time.monotonic() - started
        assert waited < 5, f"the first step of a new task took {waited:.1f} s with 200 tasks parked"
        step = first["steps"][0]
        assert step["startedAt"] >= task["createdAt"]
        assert stack.wait_for(task["id"], {"completed", "failed"})["status"] == "completed"
        assert {stack.get(task_id)["status"] for task_id in parked[:5]} == {"booting"}
    finally:
        stack.stop()


def test_answers_that_cannot_be_made_are_reported_at_render_answers(stack):
    """A Windows task without an administrator password gets no answer file. The fake target's machines
    fetch none, so the step says so and goes on; on real targets it fails the task (tested in
    test_task_files.py)."""
    node = stack.fake_node("NO-PASSWORD")
    task = stack.task(node, stack.image_id, hostname="NO-PASS", os={"imageId": stack.image_id})
    done = stack.wait_for(task["id"], {"completed", "failed"}, timeout=120)
    step = next(s for s in done["steps"] if s["name"] == "render_answers")
    assert step["detail"].startswith("A real machine would get no answer files"), step
    assert "os.adminPassword" in step["detail"]
