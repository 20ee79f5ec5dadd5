"""End to end for bare metal with a BMC: sushy-tools' Redfish emulator fronts a QEMU machine defined
in the lab's libvirtd (its persistent boot order: the empty local disk). A bare-metal task for the
machine's MAC powers it on through Redfish into a one-time network boot; it boots through Octoprov
into the tiny Linux, whose callbacks complete the task; once installed, the machine is set through
Redfish to boot its hard disk for good. A second task, cancelled while the machine boots, powers it off
through Redfish.

A third machine has an IPMI BMC (virtualbmc in front of its domain): a task powers it on over IPMI into a
one-time network boot and completes, and a cancelled one powers it off.

A second machine, UEFI with Secure Boot on as servers ship (the emulator's libvirt driver switches it
by the domain's loader and variable template), is registered with ``secureBoot`` and installed from an
unsigned kernel: Redfish turns Secure Boot off before the install, and on again once the installer
has powered off; the installed OS (shim, the signed GRUB and kernel on its disk) reports its first boot
with Secure Boot enforced. A cancelled task of that machine gets Secure Boot back through Redfish.

Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from octoprov.targets.libvirt.domain_xml import OVMF_CODE_SECBOOT, OVMF_VARS, OVMF_VARS_MS
from tests.support import esp, libvirtlab, netlab, redfish_bmc, tinylinux
from tests.support.bootservices import BOOT_TIMEOUT, boot_services, steps
from tests.support.virtual_bmc import virtual_bmc

MAC = "52:54:00:6f:70:b1"
SECURE_MAC = "52:54:00:6f:70:b2"
IPMI_MAC = "52:54:00:6f:70:b3"
EVENTS = "installer_started,os_installed,first_boot"
# the emulator's libvirt driver turns Secure Boot on and off by the domain's loader and variable template:
# OVMF's secure-boot build (with SMM) either way, Microsoft's keys enrolled or none
SECURE_BOOT_FIRMWARE = {
    "SUSHY_EMULATOR_BOOT_LOADER_MAP": {"UEFI": {"x86_64": OVMF_CODE_SECBOOT}, "Legacy": {"x86_64": None}},
    "SUSHY_EMULATOR_SECURE_BOOT_ENABLED_NVRAM": OVMF_VARS_MS,
    "SUSHY_EMULATOR_SECURE_BOOT_DISABLED_NVRAM": OVMF_VARS,
}


def machine_xml(name: str, serial: str, disk: str, mac: str = MAC) -> str:
    """A server that boots from its (empty) disk unless told otherwise, on the lab's bridge."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/></disk>
    <interface type='bridge'><mac address='{mac}'/><source bridge='{netlab.BRIDGE}'/><model type='virtio'/></interface>
    <serial type='file'><source path='{serial}'/></serial>
  </devices>
</domain>"""


def secure_machine_xml(name: str, serial: str, disk: str) -> str:
    """A UEFI server with Secure Boot on (Microsoft's keys) that boots from its disk unless told otherwise."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='yes' type='pflash'>{OVMF_CODE_SECBOOT}</loader>
    <nvram template='{OVMF_VARS_MS}'/><boot dev='hd'/></os>
  <features><acpi/><apic/><smm state='on'/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/></disk>
    <interface type='bridge'><mac address='{SECURE_MAC}'/><source bridge='{netlab.BRIDGE}'/>
      <model type='virtio'/></interface>
    <serial type='file'><source path='{serial}' append='on'/></serial>
  </devices>
</domain>"""


@pytest.fixture(scope="module")
def baremetal(tmp_path_factory):
    libvirtlab.require_lab()
    workdir = tmp_path_factory.mktemp("baremetal")
    kernel_args = f"{tinylinux.KERNEL_ARGS} octoprov.events={EVENTS}"
    with boot_services(workdir, "default,baremetal", kernel_args) as octo, \
            libvirtlab.Libvirtd(octo.lab, f"opv{os.getpid()}") as daemon:
        path = workdir / "server.xml"
        octo.serial = workdir / "server.serial.log"
        disk = workdir / "server-disk.raw"
        disk.write_bytes(bytes(1024 * 1024))
        path.write_text(machine_xml("bm-server", str(octo.serial), str(disk)))
        daemon.virsh("define", str(path))
        octo.secure_serial = workdir / "secure.serial.log"
        secure_disk = workdir / "secure-disk.raw"
        secure_disk.write_bytes(bytes(esp.DISK_MIB << 20))
        (workdir / "secure.xml").write_text(secure_machine_xml("bm-secure", str(octo.secure_serial),
                                                               str(secure_disk)))
        daemon.virsh("define", str(workdir / "secure.xml"))
        with redfish_bmc.emulator(workdir / "bmc", libvirt_uri=libvirtlab.URI,
                                  extra_settings=SECURE_BOOT_FIRMWARE) as bmc:
            octo.machine = octo.call("POST", "/machines", 201, json={
                "name": "bm-server", "macAddresses": [MAC], "bmc": {"address": bmc.url},
                "username": bmc.username, "password": bmc.password})
            octo.call("POST", "/machines", 201, json={
                "name": "bm-secure", "macAddresses": [SECURE_MAC], "bmc": {"address": bmc.url},
                "username": bmc.username, "password": bmc.password, "secureBoot": True})
            octo.daemon = daemon
            octo.bmc = bmc
            yield octo


def task_body(octo, hostname: str, mac: str = MAC) -> dict:
    return {"hostname": hostname, "targetType": "baremetal", "macAddress": mac, "os": {"imageId": octo.image_id},
            "postInstall": {"installAgent": False}}


def messages(octo, task_id: int) -> list[str]:
    logs = octo.call("GET", f"/tasks/{task_id}/logs", 200)
    return [entry["message"] for entry in (logs["items"] if isinstance(logs, dict) else logs)]


def redfish(octo, path: str) -> dict:
    bmc = octo.bmc
    response = requests.get(bmc.url + path, auth=(bmc.username, bmc.password), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def system_path(octo, name: str) -> str:
    """The Redfish path of the emulated system (the libvirt domain) called ``name``."""
    members = [member["@odata.id"] for member in redfish(octo, "/redfish/v1/Systems")["Members"]]
    return next(path for path in members if redfish(octo, path)["Name"] == name)


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
    # installed: the BMC boots the hard disk from now on (the emulator makes it the domain's only boot device)
    assert "Boot from disk first: Boot override set through the BMC: hard disk, persistent" in logged, logged
    boot = redfish(baremetal, system_path(baremetal, "bm-server"))["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("Hdd", "Continuous"), boot
    defined = baremetal.daemon.virsh("dumpxml", "bm-server", "--inactive")
    devices = ET.fromstring(defined).find("devices")  # noqa: S314 - libvirt's own output
    assert devices.find("disk/boot").get("order") == "1" and devices.find("interface/boot") is None
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


def secure_task_body(octo, hostname: str) -> dict:
    return {**task_body(octo, hostname), "macAddress": SECURE_MAC, "os": {"imageId": esp.unsigned_image(octo)}}


def secure_boot_state(octo) -> tuple[bool, str | None, str | None]:
    """SecureBootEnable as the BMC reports it, and the domain definition's loader ``secure`` and template."""
    enabled = redfish(octo, system_path(octo, "bm-secure") + "/SecureBoot")["SecureBootEnable"]
    defined = ET.fromstring(octo.daemon.virsh("dumpxml", "bm-secure", "--inactive"))  # noqa: S314 - libvirt's
    loader, nvram = defined.find("os/loader"), defined.find("os/nvram")
    return enabled, loader.get("secure") if loader is not None else None, \
        nvram.get("template") if nvram is not None else None


def test_secure_boot_is_off_for_the_unsigned_installer_and_on_when_the_os_first_boots(baremetal, tmp_path):
    started = time.monotonic()
    assert secure_boot_state(baremetal) == (True, "yes", OVMF_VARS_MS)  # as the server ships
    task = baremetal.call("POST", "/tasks", 201, json=secure_task_body(baremetal, "bm-sb"))
    task_id = task["id"]
    names = [step["name"] for step in task["steps"]]
    assert names[names.index("os_install"):][:3] == ["os_install", "enable_secure_boot", "first_boot"], names
    # the installed OS the "installer" writes: shim, the signed GRUB and kernel, whose first boot reports here
    esp.publish_installed_os(baremetal, task_id, tmp_path)
    baremetal.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 60)
    assert secure_boot_state(baremetal) == (False, "no", OVMF_VARS), messages(baremetal, task_id)

    task = baremetal.wait_task(task_id, lambda t: t["status"] in ("completed", "failed"), 2 * BOOT_TIMEOUT)
    elapsed = time.monotonic() - started
    logged = messages(baremetal, task_id)
    assert task["status"] == "completed", (task, logged)
    assert ("Power on machine: Powered on through the BMC into a one-time network boot, Secure Boot off for the "
            "unsigned installer (on again before the OS first boots)") in logged, logged
    assert ("Turn Secure Boot on: Secure Boot on through the BMC, boot override to the hard disk (persistent); "
            "powered on") in logged, logged
    # the acceptance line: the emulated system ends with Secure Boot enabled, through Redfish and in libvirt
    assert secure_boot_state(baremetal) == (True, "yes", OVMF_VARS_MS)
    secure = redfish(baremetal, system_path(baremetal, "bm-secure") + "/SecureBoot")
    assert secure["SecureBootCurrentBoot"] == "Enabled", secure
    boot = redfish(baremetal, system_path(baremetal, "bm-secure"))["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("Hdd", "Continuous"), boot
    assert baremetal.daemon.virsh("domstate", "bm-secure").strip() == "running"
    console = baremetal.secure_serial.read_text(errors="replace")
    installer, installed = console.split(f"{tinylinux.MARKER}: installed {esp.ESP_URL}", 1)
    assert "secureboot: Secure boot disabled" in installer, installer[-3000:]
    assert "secureboot: Secure boot enabled" in installed and "callback first_boot answered" in installed, installed
    print(f"\nbm-sb: installed with Secure Boot off, first boot with it enforced; completed in {elapsed:.1f} s (TCG)")


def test_cancelling_gives_the_machine_its_secure_boot_back(baremetal):
    task_id = baremetal.call("POST", "/tasks", 201, json=secure_task_body(baremetal, "bm-sb-cancel"))["id"]
    baremetal.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 60)
    assert secure_boot_state(baremetal) == (False, "no", OVMF_VARS)
    baremetal.call("DELETE", f"/tasks/{task_id}", 200)
    deadline = time.monotonic() + 60
    while not any(m.startswith("Rollback: Boot config removed") for m in messages(baremetal, task_id)):
        assert time.monotonic() < deadline, messages(baremetal, task_id)
        time.sleep(0.5)
    logged = messages(baremetal, task_id)
    assert "Rollback: Boot config removed with the task; Secure Boot on again through the BMC" in logged, logged
    assert "Rollback: Powered off through the BMC" in logged, logged
    assert secure_boot_state(baremetal) == (True, "yes", OVMF_VARS_MS)
    assert baremetal.daemon.virsh("domstate", "bm-secure").strip() == "shut off"


# --- a machine with an IPMI BMC ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ipmi_machine(baremetal):
    """A third server like the first, its BMC virtualbmc (IPMI) in front of its domain, registered with it."""
    workdir = baremetal.data_dir.parent
    baremetal.ipmi_serial = workdir / "ipmi.serial.log"
    disk = workdir / "ipmi-disk.raw"
    disk.write_bytes(bytes(1024 * 1024))
    (workdir / "ipmi.xml").write_text(machine_xml("bm-ipmi", str(baremetal.ipmi_serial), str(disk), IPMI_MAC))
    baremetal.daemon.virsh("define", str(workdir / "ipmi.xml"))
    with virtual_bmc(workdir / "vbmc", "bm-ipmi", libvirtlab.URI) as bmc:
        baremetal.call("POST", "/machines", 201, json={
            "name": "bm-ipmi", "macAddresses": [IPMI_MAC], "bmc": {"address": bmc.address, "protocol": "ipmi"},
            "username": bmc.username, "password": bmc.password})
        yield baremetal


def defined_boot_devices(octo, domain: str) -> list[str]:
    """The boot devices (``<os><boot dev=.../>``) the domain's next start uses, as virtualbmc sets them."""
    defined = ET.fromstring(octo.daemon.virsh("dumpxml", domain, "--inactive"))  # noqa: S314 - libvirt's output
    return [boot.get("dev") for boot in defined.findall("os/boot")]


def test_ipmi_powers_the_machine_on_into_a_network_boot_and_the_task_completes(ipmi_machine):
    octo, started = ipmi_machine, time.monotonic()
    assert defined_boot_devices(octo, "bm-ipmi") == ["hd"]  # as the server ships: its (empty) disk first
    task_id = octo.call("POST", "/tasks", 201, json=task_body(octo, "bm-ipmi-one", IPMI_MAC))["id"]
    task = octo.wait_task(task_id, lambda t: t["status"] in ("completed", "failed"), BOOT_TIMEOUT + 60)
    logged = messages(octo, task_id)
    assert task["status"] == "completed", (task, logged, octo.ipmi_serial.read_text(errors="replace")[-3000:])
    assert set(steps(task).values()) == {"done"}, steps(task)
    assert "Power on machine: Powered on through the BMC (IPMI) into a one-time network boot" in logged, logged
    assert any("tiny linux: first_boot" in m for m in logged), logged
    assert f"chain.ipxe?mac={IPMI_MAC}" in octo.log("pxe.log"), octo.log("pxe.log")[-2000:]
    # installed: the BMC boots the hard disk from now on
    assert "Boot from disk first: Boot device set through the BMC (IPMI): hard disk, persistent" in logged, logged
    assert defined_boot_devices(octo, "bm-ipmi") == ["hd"]
    print(f"\nbm-ipmi-one: POST /tasks to completed over IPMI in {time.monotonic() - started:.1f} s (TCG)")


def test_cancelling_powers_the_machine_off_over_ipmi(ipmi_machine):
    octo, daemon = ipmi_machine, ipmi_machine.daemon
    deadline = time.monotonic() + 60
    while daemon.virsh("domstate", "bm-ipmi").strip() != "shut off":  # the tiny Linux powers off when done
        assert time.monotonic() < deadline, octo.ipmi_serial.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    task_id = octo.call("POST", "/tasks", 201, json=task_body(octo, "bm-ipmi-two", IPMI_MAC))["id"]
    octo.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 60)
    assert daemon.virsh("domstate", "bm-ipmi").strip() == "running", messages(octo, task_id)
    assert defined_boot_devices(octo, "bm-ipmi") == ["network"]
    octo.call("DELETE", f"/tasks/{task_id}", 200)
    deadline = time.monotonic() + 60
    while "Rollback: Powered off through the BMC (IPMI)" not in messages(octo, task_id):
        assert time.monotonic() < deadline, messages(octo, task_id)
        time.sleep(0.5)
    assert daemon.virsh("domstate", "bm-ipmi").strip() == "shut off"
