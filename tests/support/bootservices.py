"""The Octoprov services of the end-to-end boot tests, on a private boot network (tests/support/netlab.py):
the machines' API, ProxyDHCP and TFTP in the boot namespace; an operator's API and a worker in
the root namespace; all on one data folder with the embedded defaults (SQLite database and
broker), so every process, in whichever namespace, shares the state through the file system.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from tests.support import ROOT, netlab, tinylinux
from tests.support.live import free_port, octoprov
from tests.support.processes import start_octoprov, stop_group

API = "/api/v1/provisioning"
SIGNED_BOOT_DIR = ROOT / ".cache" / "signed-boot" / "usr" / "lib"  # `make signed-boot`
PUBLIC_URL = f"http://{netlab.BOOT_ADDRESS}:8080"
BOOT_TIMEOUT = 150  # seconds from QEMU start to the callback; 9-48 s measured, TCG on 2 cores


@dataclass
class Services:
    """The services on a shared data folder: the machines' API, ProxyDHCP and TFTP in the boot
    namespace; an operator's API and a worker in the root namespace."""

    lab: netlab.Lab
    env: dict
    data_dir: Path
    url: str = ""
    token: str = ""
    image_id: int = 0
    pxe: subprocess.Popen | None = None
    root_processes: list[subprocess.Popen] = field(default_factory=list)

    def call(self, method: str, path: str, expect: int, **kwargs) -> dict:
        response = requests.request(method, self.url + API + path, timeout=30,
                                    headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    def start_pxe(self, *args: str, **settings: str) -> None:
        """(Re)start `octoprov pxe` in the boot namespace with extra arguments (``--no-tftp``) and settings."""
        if self.pxe is not None:
            self.lab.stop(self.pxe)
        env = {**self.env, **{f"OCTOPROV_{k.upper()}": v for k, v in settings.items()}}
        self.pxe = self.lab.start(self.lab.boot, [sys.executable, "-m", "cli", "pxe", *args], "pxe.out",
                                  env=env)
        self.lab.wait_listening(self.lab.boot, "u", {67, 4011} if "--no-tftp" in args else {67, 69, 4011},
                                process=self.pxe)

    def log(self, name: str) -> str:
        path = self.data_dir / "log" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def task(self, task_id: int) -> dict:
        return self.call("GET", f"/tasks/{task_id}", 200)

    def wait_task(self, task_id: int, done: Callable[[dict], bool], timeout: float,
                  vm: netlab.Vm | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if done(task):
                return task
            if time.monotonic() > deadline:
                pytest.fail(f"task {task_id} is {task['status']} at {task['currentStep']} after {timeout} s\n"
                            + self.diagnostics(vm))
            time.sleep(0.5)

    def diagnostics(self, vm: netlab.Vm | None) -> str:
        parts = [("serial console", vm.console() if vm else ""), ("dnsmasq", self.lab.log("dnsmasq.log")),
                 ("pxe.log", self.log("pxe.log")), ("access.log", self.log("access.log"))]
        return "\n".join(f"--- {title} (end) ---\n{text[-3000:]}" for title, text in parts)


def steps(task: dict) -> dict[str, str]:
    return {step["name"]: step["status"] for step in task["steps"]}


def unusable(reason: str, what: str = "network-boot lab"):
    """Skip the test for ``reason``; fail it in CI, where everything it needs must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} unusable in CI: {reason}")
    pytest.skip(reason)


def _wait_http(lab: netlab.Lab, url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until the API answers from the site namespace, i.e. where the VMs are, across the bridge."""
    deadline = time.monotonic() + timeout
    while lab.run(lab.site, "curl", "-sf", "-o", "/dev/null", "--max-time", "2", url, check=False).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer (octoprov api: {process.poll()})")
        time.sleep(0.3)


def _start_root_process(octo: Services, *args: str) -> subprocess.Popen:
    process = start_octoprov(*args, env=octo.env)
    octo.root_processes.append(process)
    return process


def _wait_operator_api(octo: Services, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(octo.url + "/api/v1/swagger.json", timeout=2).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the operator's API did not answer (exit status {process.poll()})")
        time.sleep(0.2)


def tiny_image(data_dir: Path, kernel_args: str = tinylinux.KERNEL_ARGS) -> dict:
    """The tiny Linux copied into ``data_dir``'s images folder (built first if needed), and the body that
    registers it (``POST /images``): both labs, one site's or several (tests/support/multisite.py), boot it."""
    image = tinylinux.build()
    images = data_dir / "images" / "tiny"
    images.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.kernel, images / "vmlinuz")
    shutil.copyfile(image.initrd, images / "initrd.gz")
    return {"name": "Tiny Linux", "osType": "linux", "imagePath": "tiny/initrd.gz", "kernelPath": "tiny/vmlinuz",
            "initrdPath": "tiny/initrd.gz", "kernelArgs": kernel_args}


@contextlib.contextmanager
def boot_services(workdir: Path, queues: str, kernel_args: str = tinylinux.KERNEL_ARGS,
                  site_next_server: str | None = None) -> Iterator[Services]:
    """The lab and the services, with the tiny Linux registered as image ``image_id`` (booted with
    ``kernel_args``) and a worker for ``queues``; ``site_next_server`` goes into the site DHCP server's
    answers (siaddr). Skips (fails in CI) where the lab cannot run."""
    reason = netlab.unusable_reason()
    if reason:
        unusable(reason)
    tinylinux.build()
    data_dir = workdir / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPROV_")}
    env.update(OCTOPROV_DATA_DIR=str(data_dir), OCTOPROV_SECRET_KEY=Fernet.generate_key().decode(),
               OCTOPROV_PUBLIC_URL=PUBLIC_URL, OCTOPROV_BOOT_SERVER_ADDRESS=netlab.BOOT_ADDRESS,
               OCTOPROV_TFTP_HOST=netlab.BOOT_ADDRESS, OCTOPROV_PROXYDHCP_INTERFACE=netlab.BOOT_VETH,
               OCTOPROV_API_WORKERS="1", OCTOPROV_STEP_RETRY_BASE_S="1",
               OCTOPROV_SIGNED_BOOT_DIR=str(SIGNED_BOOT_DIR))
    octoprov("db", "upgrade", env=env)
    image = tiny_image(data_dir, kernel_args)
    with netlab.Lab(workdir) as lab:
        octo = Services(lab, env, data_dir)
        try:
            lab.start_site_dhcp(site_next_server)
            lab.start_router_advertisements()
            octo.start_pxe()
            boot_api = lab.start(lab.boot, [sys.executable, "-m", "cli", "api", "--host",
                                            netlab.BOOT_ADDRESS, "--port", "8080"], "api-boot.out", env=env)
            port = free_port()
            octo.url = f"http://127.0.0.1:{port}"
            env["OCTOPROV_MEDIA_URL"] = octo.url  # where BMCs (in the root namespace) fetch boot ISOs
            octo.token = octoprov("token", "create", "e2e", env=env).stdout.strip()
            operator_api = _start_root_process(octo, "api", "--host", "127.0.0.1", "--port", str(port))
            _start_root_process(octo, "worker", "--queues", queues, "--hostname", f"e2e-{os.getpid()}@%h")
            _wait_http(lab, PUBLIC_URL + "/api/v1/swagger.json", boot_api)
            _wait_operator_api(octo, operator_api)
            octo.image_id = octo.call("POST", "/images", 201, json=image)["id"]
            yield octo
        finally:
            for process in octo.root_processes:
                stop_group(process)
