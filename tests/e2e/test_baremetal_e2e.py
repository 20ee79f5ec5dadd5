"""End to end for bare metal with a BMC: sushy-tools' Redfish emulator fronts a QEMU machine defined
in the lab's libvirtd (its persistent boot order: the empty local disk). A bare-metal task for the
machine's MAC powers it on through Redfish into a one-time network boot; it boots through Octoprov
into the tiny Linux, whose callbacks complete the task. A second task, cancelled while the machine
boots, powers it off through Redfish.

Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.support import libvirtlab, netlab, redfish_bmc, tinylinux
from tests.support.bootservices import BOOT_TIMEOUT, boot_services, steps, unusable

MAC = "52:54:00:6f:70:b1"
EVENTS = "installer_started,os_installed,first_boot"


def machine_xml(name: str, serial: str) -> str:
    """A diskless server that boots from its (empty) disk unless told otherwise, on the lab's bridge."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <interface type='bridge'><mac address='{MAC}'/><source bridge='{netlab.BRIDGE}'/><model type='virtio'/></interface>
    <serial type='file'><source path='{serial}'/></serial>
  </devices>
</domain>"""


@pytest.fixture(scope="module")
def baremetal(tmp_path_factory):
    reason = netlab.unusable_reason() or libvirtlab.unusable_reason()
    if reason:
        unusable(reason)
    workdir = tmp_path_factory.mktemp("baremetal")
    kernel_args = f"{tinylinux.KERNEL_ARGS} octoprov.events={EVENTS}"
    with boot_services(workdir, "default,baremetal", kernel_args) as octo, \
            libvirtlab.Libvirtd(octo.lab, f"opv{os.getpid()}") as daemon:
        path = workdir / "server.xml"
        octo.serial = workdir / "server.serial.log"
        path.write_text(machine_xml("bm-server", str(octo.serial)))
        daemon.virsh("define", str(path))
        with redfish_bmc.emulator(workdir / "bmc", libvirt_uri=libvirtlab.URI) as bmc:
            octo.machine = octo.call("POST", "/machines", 201, json={
                "name": "bm-server", "macAddresses": [MAC], "bmc": {"address": bmc.url},
                "username": bmc.username, "password": bmc.password})
            octo.daemon = daemon
            yield octo


def task_body(octo, hostname: str) -> dict:
    return {"hostname": hostname, "targetType": "baremetal", "macAddress": MAC, "os": {"imageId": octo.image_id},
            "postInstall": {"installAgent": False}}


def messages(octo, task_id: int) -> list[str]:
    logs = octo.call("GET", f"/tasks/{task_id}/logs", 200)
    return [entry["message"] for entry in (logs["items"] if isinstance(logs, dict) else logs)]


def test_the_bmc_powers_the_machine_on_into_a_network_boot_and_the_task_completes(baremetal):
    started = time.monotonic()
    task_id = baremetal.call("POST", "/tasks", 201, json=task_body(baremetal, "bm-one"))["id"]
    task = baremetal.wait_task(task_id, lambda t: t["status"] in ("completed", "failed"), BOOT_TIMEOUT + 60)
    assert task["status"] == "completed", (task, messages(baremetal, task_id))
    assert set(steps(task).values()) == {"done"}, steps(task)
    logged = messages(baremetal, task_id)
    assert any("Powered on through the BMC into a one-time network boot" in m for m in logged), logged
    assert any("tiny linux: first_boot" in m for m in logged), logged
    assert f"chain.ipxe?mac={MAC}" in baremetal.log("pxe.log"), baremetal.log("pxe.log")[-2000:]
    print(f"\nbm-one: POST /tasks to completed in {time.monotonic() - started:.1f} s (TCG)")


def test_cancelling_powers_the_machine_off_through_the_bmc(baremetal):
    daemon = baremetal.daemon
    deadline = time.monotonic() + 60
    while daemon.virsh("domstate", "bm-server").strip() != "shut off":  # the first test's machine powers off
        assert time.monotonic() < deadline, baremetal.serial.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    task_id = baremetal.call("POST", "/tasks", 201, json=task_body(baremetal, "bm-two"))["id"]
    baremetal.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 60)
    assert daemon.virsh("domstate", "bm-server").strip() == "running"
    baremetal.call("DELETE", f"/tasks/{task_id}", 200)
    deadline = time.monotonic() + 60
    while not any("Rollback: Powered off through the BMC" in m for m in messages(baremetal, task_id)):
        assert time.monotonic() < deadline, messages(baremetal, task_id)
        time.sleep(0.5)
    assert daemon.virsh("domstate", "bm-server").strip() == "shut off"
