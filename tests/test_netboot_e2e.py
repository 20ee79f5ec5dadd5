"""End to end network boot with real firmware: QEMU VMs boot from Octoprov's ProxyDHCP, TFTP
and API, answering beside a site DHCP server that gives addresses only, and the Linux they load
reports back through the status callback, which moves the bare-metal task on.

Legacy BIOS takes the direct path (QEMU's NIC ROM is iPXE: the script URL at once); UEFI with
the NIC ROM removed takes the chainload path real machines take (OVMF's PXE client, ipxe.efi by
TFTP, then the script over HTTP). The lab is in tests/netlab.py, the booted Linux in
tests/tinylinux.py. Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from tests import netlab, tinylinux
from tests.live import free_port, octoprov
from tests.processes import start_octoprov, stop_group

API = "/api/v1/provisioning"
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

    def start_pxe(self, **settings: str) -> None:
        """(Re)start `octoprov pxe` in the boot namespace with extra settings."""
        if self.pxe is not None:
            self.lab.stop(self.pxe)
        env = {**self.env, **{f"OCTOPROV_{k.upper()}": v for k, v in settings.items()}}
        self.pxe = self.lab.start(self.lab.boot, [sys.executable, "-m", "octoprov.cli", "pxe"], "pxe.out",
                                  env=env)
        self.lab.wait_listening(self.lab.boot, "u", {67, 69, 4011}, process=self.pxe)

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


def _unusable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"network-boot lab unusable in CI: {reason}")
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


@pytest.fixture(scope="module")
def netboot(tmp_path_factory):
    reason = netlab.unusable_reason()
    if reason:
        _unusable(reason)
    image = tinylinux.build()
    workdir = tmp_path_factory.mktemp("netboot")
    data_dir = workdir / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPROV_")}
    # Embedded defaults (SQLite database and broker) in one folder: every process, in whichever
    # namespace, shares the state through the file system.
    env.update(OCTOPROV_DATA_DIR=str(data_dir), OCTOPROV_SECRET_KEY=Fernet.generate_key().decode(),
               OCTOPROV_PUBLIC_URL=PUBLIC_URL, OCTOPROV_BOOT_SERVER_ADDRESS=netlab.BOOT_ADDRESS,
               OCTOPROV_TFTP_HOST=netlab.BOOT_ADDRESS, OCTOPROV_PROXYDHCP_INTERFACE=netlab.BOOT_VETH,
               OCTOPROV_API_WORKERS="1", OCTOPROV_STEP_RETRY_BASE_S="1")
    octoprov("db", "upgrade", env=env)
    images = data_dir / "images" / "tiny"
    images.mkdir(parents=True)
    shutil.copyfile(image.kernel, images / "vmlinuz")
    shutil.copyfile(image.initrd, images / "initrd.gz")
    with netlab.Lab(workdir) as lab:
        octo = Services(lab, env, data_dir)
        try:
            lab.start_site_dhcp()
            lab.start_router_advertisements()
            octo.start_pxe()
            boot_api = lab.start(lab.boot, [sys.executable, "-m", "octoprov.cli", "api", "--host",
                                            netlab.BOOT_ADDRESS, "--port", "8080"], "api-boot.out", env=env)
            port = free_port()
            octo.url = f"http://127.0.0.1:{port}"
            octo.token = octoprov("token", "create", "netboot", env=env).stdout.strip()
            operator_api = _start_root_process(octo, "api", "--host", "127.0.0.1", "--port", str(port))
            _start_root_process(octo, "worker", "--queues", "default,baremetal", "--hostname", "netboot@%h")
            _wait_http(lab, PUBLIC_URL + "/api/v1/swagger.json", boot_api)
            _wait_operator_api(octo, operator_api)
            octo.image_id = octo.call("POST", "/images", 201, json={
                "name": "Tiny Linux", "osType": "linux", "imagePath": "tiny/initrd.gz", "kernelPath": "tiny/vmlinuz",
                "initrdPath": "tiny/initrd.gz", "kernelArgs": tinylinux.KERNEL_ARGS})["id"]
            yield octo
        finally:
            for process in octo.root_processes:
                stop_group(process)


def _wait_operator_api(octo: Services, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(octo.url + "/api/v1/swagger.json", timeout=2).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the operator's API did not answer (exit status {process.poll()})")
        time.sleep(0.2)


def provision(octo: Services, name: str, mac: str, firmware: str, nic_rom: bool) -> tuple[netlab.Vm, float]:
    """Create a bare-metal task for ``mac``, power the VM on when the task asks for it, and wait for
    the booted Linux's callback to move the task to installing. Returns the VM and the boot time."""
    task_id = octo.call("POST", "/tasks", 201, json={
        "hostname": name, "targetType": "baremetal", "macAddress": mac, "os": {"imageId": octo.image_id},
        "postInstall": {"installAgent": False}})["id"]
    octo.wait_task(task_id, lambda t: t["status"] == "booting" and steps(t)["power_on"] == "done", 60)
    vm = octo.lab.boot_vm(name, mac, firmware, nic_rom)
    try:
        task = octo.wait_task(task_id, lambda t: steps(t)["installer_started"] == "done", BOOT_TIMEOUT, vm)
        elapsed = time.monotonic() - vm.started
        assert task["status"] == "installing", task
        with contextlib.suppress(subprocess.TimeoutExpired):
            vm.process.wait(timeout=30)  # /init powers off after the callback
        console = vm.console()
        assert f"{tinylinux.MARKER}: callback answered" in console, octo.diagnostics(vm)
        assert '"accepted": true' in console or '"accepted":true' in console, console[-2000:]
    finally:
        vm.stop()
    print(f"\n{name}: {firmware}{'' if nic_rom else ' without NIC ROM'}: callback {elapsed:.1f} s after QEMU start")
    return vm, elapsed


def test_bios_boots_the_task_image_through_ipxe_directly(netboot):
    vm, _ = provision(netboot, "tiny-bios", "52:54:00:6f:70:01", "bios", nic_rom=True)
    console = vm.console()
    # QEMU's ROM is iPXE: ProxyDHCP gave it the script URL at once, no TFTP chainload.
    assert "iPXE" in console
    assert f"{PUBLIC_URL}{API}/pxe/chain.ipxe?mac=52:54:00:6f:70:01" in netboot.log("pxe.log")
    assert "Octoprov: installing tiny-bios" in console


def test_uefi_chainloads_ipxe_from_firmware_pxe(netboot):
    mac = "52:54:00:6f:70:02"
    vm, _ = provision(netboot, "tiny-uefi", mac, "uefi", nic_rom=False)
    pxe_log = netboot.log("pxe.log")
    # OVMF's own PXE client got ipxe.efi (the ACK on port 4011, then TFTP), and that iPXE then
    # got the script URL.
    assert f"ACK {mac} " in pxe_log and "file 'ipxe.efi'" in pxe_log, pxe_log[-3000:]
    assert "TFTP 'ipxe.efi'" in pxe_log, pxe_log[-3000:]
    assert f"{PUBLIC_URL}{API}/pxe/chain.ipxe?mac={mac}" in pxe_log
    assert "tiny-uefi" in vm.console()


def test_machine_without_task_gets_the_local_boot_script(netboot):
    mac = "52:54:00:6f:70:03"
    netboot.start_pxe(boot_unknown_machines="true")  # else ProxyDHCP stays silent for unknown MACs
    try:
        vm = netboot.lab.boot_vm("no-task", mac, "bios")
        try:
            deadline = time.monotonic() + BOOT_TIMEOUT
            while "No provisioning task for this MAC" not in vm.console():
                if time.monotonic() > deadline:
                    pytest.fail(f"no local-boot script after {BOOT_TIMEOUT} s\n" + netboot.diagnostics(vm))
                time.sleep(0.5)
            print(f"\nno-task: local-boot script {time.monotonic() - vm.started:.1f} s after QEMU start")
        finally:
            vm.stop()
    finally:
        netboot.start_pxe()
    assert f"GET {API}/pxe/boot?mac={mac.replace(':', '-')}" in netboot.log("access.log")
