"""`octoprov task watch/cancel/retry/logs` and `--output json`, run as a user would run them, against
the embedded stack (the real API server, a Celery worker, SQLite) and the fake target. `watch` runs
under a pseudo-terminal, as in a shell, or with its output piped, as in CI."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import requests

from octoprov.specs import MASK
from octoprov.targets import registry
from tests.support.live import LiveApi, octoprov, start_live_api
from tests.support.processes import start_octoprov, stop_group

API = "/api/v1/provisioning"
CLEAR_LINE = "\r\x1b[2K"
PASSWORD = "Pa55word!"


@dataclass
class Lab:
    api: LiveApi
    image_id: int

    @property
    def env(self) -> dict:
        return self.api.env

    def call(self, method: str, path: str, expect: int = 200, **kwargs):
        response = requests.request(method, self.api.url + API + path, headers=self.api.headers, timeout=30,
                                    **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    def task(self, hostname: str, **fake) -> int:
        """A fake task on a node of its own that behaves as ``fake`` says."""
        node = self.call("POST", "/hypervisors", 201, json={
            "name": f"NODE-{hostname}", "kind": "fake", "endpoint": "fake://lab",
            "fake": {"delayS": 0.05, "callbackDelayS": 0.05, **fake}})
        return self.call("POST", "/tasks", 201, json={
            "hostname": hostname, "targetType": "fake", "hypervisorNodeId": node["id"],
            "vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]},
            "os": {"imageId": self.image_id, "adminPassword": PASSWORD}})["id"]

    def status(self, task_id: int) -> str:
        return self.call("GET", f"/tasks/{task_id}")["status"]

    def wait_final(self, task_id: int) -> str:
        deadline = time.monotonic() + 120
        while (status := self.status(task_id)) not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"task {task_id} still {status}"
            time.sleep(0.2)
        return status


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cli-watch") / "var"
    # empty: the embedded defaults (SQLite database and broker under data_dir), whatever the shell says
    api = start_live_api(data_dir, extra_env={"OCTOPROV_DATABASE_URL": "", "OCTOPROV_BROKER_URL": ""})
    worker = start_octoprov("worker", "--queues", ",".join(registry.queues()), "--concurrency", "2",
                            "--hostname", "cli-watch@%h", env=api.env)
    try:
        (data_dir / "images" / "demo.wim").write_bytes(b"wim")
        image = requests.post(api.url + API + "/images", headers=api.headers, timeout=30,
                              json={"name": "Demo", "osType": "windows", "imagePath": "demo.wim"}).json()
        yield Lab(api, image["id"])
    finally:
        stop_group(worker)
        api.stop()


class Terminal:
    """An `octoprov` command whose stdin, stdout and stderr are a pseudo-terminal, as in a shell."""

    def __init__(self, *args: str, env: dict):
        self.master, slave = os.openpty()
        self.process = subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, stdin=slave, stdout=slave,
                                        stderr=slave, start_new_session=True)
        os.close(slave)
        self.output = ""

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False at the end (the command closed the terminal)."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer is gone
            return False
        self.output += chunk.decode(errors="replace")
        return bool(chunk)

    def read_until(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not shown; so far: {self.output!r}"
            assert self._read(0.5), f"ended before showing {text!r}: {self.output!r}"

    def wait(self, timeout: float = 180) -> int:
        """Read to the end and return the exit status."""
        deadline = time.monotonic() + timeout
        try:
            while self._read(0.5):
                assert time.monotonic() < deadline, f"still running; so far: {self.output!r}"
            return self.process.wait(timeout=30)
        finally:
            os.close(self.master)
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def test_watch_follows_a_task_to_completed_on_a_terminal_and_exits_0(lab):
    task_id = lab.task("WATCH-OK")
    terminal = Terminal("task", "watch", str(task_id), "--interval", "0.2", env=lab.env)
    assert terminal.wait() == 0, terminal.output
    shown = terminal.output
    steps = len(lab.call("GET", f"/tasks/{task_id}")["steps"])
    assert shown.count(CLEAR_LINE) >= 2  # the status line is redrawn in place
    assert f"[{'#' * 24}] {steps}/{steps} completed" in shown
    assert "[create] Task created" in shown and "Task completed" in shown
    assert shown.rstrip().endswith(f"task {task_id} (WATCH-OK) completed")
    assert "Traceback" not in shown and PASSWORD not in shown


def test_watch_exits_1_when_the_task_fails_and_prints_plain_lines_into_a_pipe(lab):
    task_id = lab.task("WATCH-FAIL", failAt="create_vm")
    terminal = Terminal("task", "watch", str(task_id), "--interval", "0.2", env=lab.env)
    assert terminal.wait() == 1, terminal.output
    failure = "Create VM on NODE-WATCH-FAIL: fake failure injected at create_vm"
    assert "[create_vm] Create VM on NODE-WATCH-FAIL failed: fake failure injected" in terminal.output
    assert terminal.output.rstrip().endswith(f"task {task_id} (WATCH-FAIL) failed: {failure}")

    piped = octoprov("task", "watch", str(task_id), env=lab.env, check=False)
    assert piped.returncode == 1, piped.stderr
    assert "\x1b" not in piped.stdout and "\r" not in piped.stdout
    lines = piped.stdout.splitlines()
    assert lines[0].endswith("INFO  [create] Task created")
    assert any(line.endswith("[create_vm] Create VM on NODE-WATCH-FAIL failed: fake failure injected at create_vm")
               for line in lines)
    assert lines[-1] == f"task {task_id} (WATCH-FAIL) failed: {failure}"

    # a retry restarts it; it fails again at the same step, which a plain watch follows from the start
    retried = octoprov("task", "retry", str(task_id), env=lab.env)
    assert retried.stdout.strip() == f"task {task_id} restarted (pending)"
    again = octoprov("task", "watch", str(task_id), "--tail", "1000", env=lab.env, check=False)
    assert again.returncode == 1, again.stdout
    assert "Retry requested: restarting from Create VM on NODE-WATCH-FAIL" in again.stdout
    assert lab.status(task_id) == "failed"


def test_ctrl_c_stops_watching_only_and_a_cancelled_task_exits_2(lab):
    task_id = lab.task("WATCH-CANCEL", delayS=600)  # its first step lasts until it is cancelled
    first = Terminal("task", "watch", str(task_id), "--interval", "0.2", env=lab.env)
    first.read_until("creating_vm: Create VM on NODE-WATCH-CANCEL")
    first.process.send_signal(signal.SIGINT)
    assert first.wait() == 130, first.output
    assert f"stopped watching; task {task_id} goes on" in first.output and "Traceback" not in first.output
    assert lab.status(task_id) == "creating_vm"

    second = Terminal("task", "watch", str(task_id), "--interval", "0.2", env=lab.env)
    second.read_until("creating_vm: Create VM on NODE-WATCH-CANCEL")
    cancelled = octoprov("task", "cancel", str(task_id), env=lab.env)
    assert cancelled.stdout.strip() == f"task {task_id} cancelled; the rollback runs in the background"
    assert second.wait() == 2, second.output
    assert "Task cancelled on request" in second.output
    assert second.output.rstrip().endswith(f"task {task_id} (WATCH-CANCEL) cancelled")

    again = octoprov("task", "cancel", str(task_id), env=lab.env, check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == f"Error: task {task_id} is cancelled and can no longer be cancelled"
    refused = octoprov("task", "retry", str(task_id), env=lab.env, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"Error: task {task_id} is cancelled; only a failed task can be retried"


def test_unknown_ids_are_refused_in_one_line(lab):
    watched = Terminal("task", "watch", "999999", env=lab.env)
    assert watched.wait() == 3
    assert "no task with id 999999" in watched.output and "Traceback" not in watched.output
    for command in ("cancel", "retry", "logs", "show"):
        result = octoprov("task", command, "999999", env=lab.env, check=False)
        assert result.returncode == 1, command
        assert result.stderr.strip() == "Error: no task with id 999999", (command, result.stderr)


def test_output_json_is_what_the_api_answers(lab):
    task_id = lab.task("JSON-01")
    assert lab.wait_final(task_id) == "completed"

    shown = json.loads(octoprov("task", "show", str(task_id), "--output", "json", env=lab.env).stdout)
    assert shown == lab.call("GET", f"/tasks/{task_id}")
    assert shown["config"]["os"]["adminPassword"] == MASK

    listed = json.loads(octoprov("task", "list", "--status", "completed", "--limit", "5", "-o", "json",
                                 env=lab.env).stdout)
    assert listed == lab.call("GET", "/tasks?status=completed&perPage=5")
    assert task_id in [item["id"] for item in listed["items"]]

    logged = octoprov("task", "logs", str(task_id), "--output", "json", env=lab.env).stdout.splitlines()
    assert [json.loads(line) for line in logged] == lab.call("GET", f"/tasks/{task_id}/logs")

    text = octoprov("task", "show", str(task_id), env=lab.env).stdout
    assert text.startswith(f"task {task_id}: JSON-01 (fake)\n  status    completed, 100%\n")
    assert "  1. done      Create VM on NODE-JSON-01: Created" in text
    assert PASSWORD not in text + json.dumps(shown) + json.dumps(listed)


def test_logs_limit_since_and_follow(lab):
    task_id = lab.task("LOGS-01")
    followed = octoprov("task", "logs", str(task_id), "--follow", env=lab.env)  # ends when the task does
    lines = followed.stdout.splitlines()
    assert lines[0].endswith("INFO  [create] Task created") and lines[-1].endswith("Task completed")
    assert octoprov("task", "logs", str(task_id), env=lab.env).stdout.splitlines() == lines
    assert octoprov("task", "logs", str(task_id), "--limit", "1", env=lab.env).stdout.splitlines() == lines[:1]
    assert octoprov("task", "logs", str(task_id), "--since", "2999-01-01", env=lab.env).stdout == ""
    assert octoprov("task", "logs", str(task_id), "--since", "2000-01-01T00:00:00+00:00", "--follow",
                    env=lab.env).stdout.splitlines() == lines
    bad = octoprov("task", "logs", str(task_id), "--since", "yesterday", env=lab.env, check=False)
    assert bad.returncode == 2 and "Invalid value for '--since'" in bad.stderr
