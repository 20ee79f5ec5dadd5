"""What the browser tests need: a real API server and Celery worker on the embedded defaults (SQLite
database and broker, no Redis), and Debian's Chromium driven by Playwright.

Chromium comes from Debian (`make test` installs the package), never from Playwright's own download;
without it, or without the playwright module, the tests skip, or fail under CI=true."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support import ROOT
from tests.support.live import LiveApi, start_live_api
from tests.support.processes import start_octoprov, stop_group

CHROMIUM = "/usr/bin/chromium"
API = "/api/v1/provisioning"
SCREENSHOTS = ROOT / "docs" / "screenshots"


def unavailable(message: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium (make test installs it)")
    return CHROMIUM


@dataclass
class UiStack:
    """The API server and one worker, with helpers to seed the library through the API."""

    api: LiveApi
    worker: object = None
    processes: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.api.url

    def call(self, method: str, path: str, expect: int | None = None, **kwargs) -> requests.Response:
        response = requests.request(method, self.api.url + API + path, headers=self.api.headers, timeout=30, **kwargs)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def fake_node(self, name: str, **fake) -> dict:
        options = {"delayS": 0.3, "callbackDelayS": 0.3, **fake}
        return self.call("POST", "/hypervisors", 201, json={
            "name": name, "kind": "fake", "endpoint": "fake://lab", "fake": options}).json()

    def image(self, name: str = "Windows Server 2025", path: str = "ws2025.wim") -> dict:
        (self.api.data_dir / "images" / path).write_bytes(b"wim")
        return self.call("POST", "/images", 201, json={"name": name, "osType": "windows", "imagePath": path,
                                                        "osVersion": "2025"}).json()

    def task(self, node_id: int, image_id: int, hostname: str) -> dict:
        return self.call("POST", "/tasks", 201, json={
            "hostname": hostname, "targetType": "fake", "hypervisorNodeId": node_id,
            "vm": {"cpu": 2, "memoryGb": 4, "disks": [{"sizeGb": 40, "purpose": "os"}]},
            "os": {"imageId": image_id}}).json()

    def stop(self) -> None:
        for process in self.processes:
            stop_group(process)
        self.api.stop()


def start_ui_stack(data_dir: Path, extra_env: dict | None = None) -> UiStack:
    # empty: the embedded defaults (SQLite database and broker under data_dir), whatever the shell says
    api = start_live_api(data_dir, extra_env={"OCTOPROV_DATABASE_URL": "", "OCTOPROV_BROKER_URL": "",
                                              **(extra_env or {})})
    stack = UiStack(api)
    worker = start_octoprov("worker", "--queues", "default,hyperv,kvm,baremetal", "--concurrency", "2",
                            "--hostname", "ui@%h", env=api.env)
    stack.processes.append(worker)
    return stack


def save_screenshot(page, name: str, tmp_path: Path) -> Path:
    """Write the screenshot to docs/screenshots when asked (OCTOPROV_UPDATE_SCREENSHOTS=1) or when it
    is missing there, else to the test's folder: a normal run leaves the committed images alone."""
    target = SCREENSHOTS / name
    if os.environ.get("OCTOPROV_UPDATE_SCREENSHOTS") != "1" and target.exists():
        target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    return target

