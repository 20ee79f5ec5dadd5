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
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

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
POOL = f"opv{os.getpid()}-vmedia"  # the virtual-media machine's disks, and where the emulator keeps inserted ISOs
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
                                  extra_settings={**SECURE_BOOT_FIRMWARE, "SUSHY_EMULATOR_STORAGE_POOL": POOL}) as bmc:
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


def power_on_after_power_off(octo, domain: str, serial, body: dict, timeout: float = 60) -> int:
    """Once the domain is off (the previous test's tiny Linux powers off when done), a task for it, up to
    its machine powered on and running; returns the task's id."""
    deadline = time.monotonic() + 60
    while octo.daemon.virsh("domstate", domain).strip() != "shut off":
        assert time.monotonic() < deadline, serial.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    task_id = octo.call("POST", "/tasks", 201, json=body)["id"]
    octo.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", timeout)
    assert octo.daemon.virsh("domstate", domain).strip() == "running", messages(octo, task_id)
    return task_id


def test_cancelling_powers_the_machine_off_through_the_bmc(baremetal):
    daemon = baremetal.daemon
    task_id = power_on_after_power_off(baremetal, "bm-server", baremetal.serial, task_body(baremetal, "bm-two"))
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
    task_id = power_on_after_power_off(octo, "bm-ipmi", octo.ipmi_serial, task_body(octo, "bm-ipmi-two", IPMI_MAC))
    assert defined_boot_devices(octo, "bm-ipmi") == ["network"]
    octo.call("DELETE", f"/tasks/{task_id}", 200)
    deadline = time.monotonic() + 60
    while "Rollback: Powered off through the BMC (IPMI)" not in messages(octo, task_id):
        assert time.monotonic() < deadline, messages(octo, task_id)
        time.sleep(0.5)
    assert daemon.virsh("domstate", "bm-ipmi").strip() == "shut off"


# --- inventory and virtual media: a machine that never boots from the network ------------------------

VMEDIA_MAC, SECOND_NIC_MAC = "52:54:00:6f:70:b4", "52:54:00:6f:70:b5"


def vmedia_machine_xml(name: str, serial: str, os_disk: str, data_disk: str) -> str:
    """The first server's kind with two disks (volumes of a pool, which the emulator's inventory reads),
    two cards, two CPUs and 1 GiB."""
    domain = ET.fromstring(machine_xml(name, serial, os_disk, VMEDIA_MAC))  # noqa: S314 - the test's own XML
    domain.find("memory").text, domain.find("vcpu").text = "1024", "2"
    devices = domain.find("devices")
    devices.find("serial/source").set("append", "on")
    data = ET.fromstring(ET.tostring(devices.find("disk")))  # noqa: S314 - a copy of the element above
    data.find("source").set("file", data_disk)
    data.find("target").set("dev", "vdb")
    nic = ET.fromstring(ET.tostring(devices.find("interface")))  # noqa: S314 - a copy of the element above
    nic.find("mac").set("address", SECOND_NIC_MAC)
    devices.insert(1, data)
    devices.insert(3, nic)
    return ET.tostring(domain, encoding="unicode")


@pytest.fixture(scope="module")
def vmedia_machine(baremetal):
    """The server registered with bootMethod virtualMedia; its registration inspects it through Redfish."""
    octo, daemon = baremetal, baremetal.daemon
    workdir = octo.data_dir.parent
    pool = workdir / "vmedia-pool"
    pool.mkdir()
    daemon.virsh("pool-create-as", POOL, "dir", "--target", str(pool))
    daemon.virsh("vol-create-as", POOL, "vmedia-os.raw", "64M", "--format", "raw")
    daemon.virsh("vol-create-as", POOL, "vmedia-data.raw", "96M", "--format", "raw")
    octo.vmedia_serial = workdir / "vmedia.serial.log"
    (workdir / "vmedia.xml").write_text(vmedia_machine_xml("bm-vmedia", str(octo.vmedia_serial),
                                                           str(pool / "vmedia-os.raw"), str(pool / "vmedia-data.raw")))
    daemon.virsh("define", str(workdir / "vmedia.xml"))
    machine = octo.call("POST", "/machines", 201, json={
        "name": "bm-vmedia", "macAddresses": [VMEDIA_MAC], "bmc": {"address": octo.bmc.url},
        "username": octo.bmc.username, "password": octo.bmc.password, "bootMethod": "virtualMedia"})
    deadline = time.monotonic() + 60
    while (machine["inspection"] or {}).get("state") not in ("done", "failed"):
        assert time.monotonic() < deadline, machine
        time.sleep(0.5)
        machine = octo.call("GET", f"/machines/{machine['id']}", 200)
    octo.vmedia = machine
    yield octo
    daemon.virsh("pool-destroy", POOL, check=False)  # transient: gone once stopped


def virsh_facts(daemon, domain: str) -> dict:
    """What libvirt says of the domain: CPUs, memory, disk sizes, MACs (virsh dominfo, domblklist with
    domblkinfo, domiflist)."""
    info = dict(line.split(":", 1) for line in daemon.virsh("dominfo", domain).splitlines() if ":" in line)
    sizes = []
    for line in daemon.virsh("domblklist", domain, "--details").splitlines():
        _type, device, target, *_source = line.split()
        if device == "disk":
            capacity = daemon.virsh("domblkinfo", domain, target)
            sizes.append(int(next(v for k, v in (row.split(":", 1) for row in capacity.splitlines())
                                  if k.strip() == "Capacity")))
    macs = [line.split()[4] for line in daemon.virsh("domiflist", domain).splitlines() if line.strip()]
    return {"cpus": int(info["CPU(s)"]), "memoryBytes": int(info["Max memory"].split()[0]) * 1024,
            "diskSizes": sorted(sizes), "macs": macs}


def test_inspection_reads_what_libvirt_says_of_the_machine(vmedia_machine):
    octo = vmedia_machine
    machine = octo.vmedia
    assert machine["inspection"]["state"] == "done", machine["inspection"]
    hardware, facts = machine["hardware"], virsh_facts(octo.daemon, "bm-vmedia")
    assert hardware["cpus"] == facts["cpus"] == 2 and hardware["memoryBytes"] == facts["memoryBytes"] == 1 << 30
    assert sorted(disk["sizeBytes"] for disk in hardware["disks"]) == facts["diskSizes"] == [64 << 20, 96 << 20]
    assert [nic["mac"] for nic in hardware["nics"]] == facts["macs"] == [VMEDIA_MAC, SECOND_NIC_MAC]
    assert machine["offeredMacs"] == [SECOND_NIC_MAC] and machine["macAddresses"] == [VMEDIA_MAC]
    assert "CD" in hardware["virtualMedia"] and hardware["powerState"] == "Off"
    # the OS disk a task asks for must fit the largest disk the BMC reported (96 MiB here)
    refused = requests.post(octo.url + "/api/v1/provisioning/tasks", timeout=30, headers={
        "Authorization": f"Bearer {octo.token}"}, json={**vmedia_task(octo, "bm-vm-big"), "osDiskGb": 1})
    assert refused.status_code == 400 and "largest disk" in refused.json()["errors"]["osDiskGb"], refused.text


def vmedia_task(octo, hostname: str) -> dict:
    return task_body(octo, hostname, VMEDIA_MAC)


def cd_source(octo) -> str | None:
    """The file in the domain's (next start's) CD drive, as the emulator's InsertMedia put it there."""
    defined = ET.fromstring(octo.daemon.virsh("dumpxml", "bm-vmedia", "--inactive"))  # noqa: S314 - libvirt's
    cdrom = defined.find("devices/disk[@device='cdrom']/source")
    return cdrom.get("file") if cdrom is not None else None


def test_a_task_boots_from_the_virtual_cd_without_dhcp_boot_options_and_the_iso_is_ejected(vmedia_machine):
    octo, started = vmedia_machine, time.monotonic()
    task_id = octo.call("POST", "/tasks", 201, json=vmedia_task(octo, "bm-vm-one"))["id"]
    octo.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 90)
    inserted = cd_source(octo)
    assert inserted, messages(octo, task_id)  # the emulator fetched the ISO from its URL into the domain's CD
    task = octo.wait_task(task_id, lambda t: t["status"] in ("completed", "failed"), BOOT_TIMEOUT + 60)
    logged = messages(octo, task_id)
    assert task["status"] == "completed", (task, logged, octo.vmedia_serial.read_text(errors="replace")[-3000:])
    assert any(m.startswith("Register MAC for PXE boot: Boot ISO built for BIOS and UEFI") for m in logged), logged
    assert any("Powered on through the BMC into a one-time boot from the virtual CD" in m for m in logged), logged
    assert any("tiny linux: first_boot" in m for m in logged), logged
    # no DHCP boot options, no TFTP: Octoprov's ProxyDHCP and TFTP never heard of the machine
    pxe_log = octo.log("pxe.log")
    assert VMEDIA_MAC not in pxe_log and VMEDIA_MAC.replace(":", "-") not in pxe_log, pxe_log[-2000:]
    console = octo.vmedia_serial.read_text(errors="replace")
    assert "ISOLINUX" in console or "octoprov.task=" in console, console[-3000:]
    # the installed OS booted: the ISO is out of the BMC, deleted, and the disk boots from now on
    assert any(m.startswith("Boot from disk first: Boot media ejected through the BMC; the task's media deleted")
               for m in logged), logged
    assert cd_source(octo) is None
    assert not list((octo.data_dir / "media").glob("*.iso"))
    boot = redfish(octo, system_path(octo, "bm-vmedia"))["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("Hdd", "Continuous"), boot
    print(f"\nbm-vm-one: POST /tasks to completed by virtual media in {time.monotonic() - started:.1f} s (TCG)")


def test_cancelling_a_virtual_media_boot_ejects_the_iso_and_powers_off(vmedia_machine):
    octo, daemon = vmedia_machine, vmedia_machine.daemon
    task_id = power_on_after_power_off(octo, "bm-vmedia", octo.vmedia_serial, vmedia_task(octo, "bm-vm-two"), 90)
    assert cd_source(octo)
    octo.call("DELETE", f"/tasks/{task_id}", 200)
    wait_for_ejection_and_power_off(octo, task_id)
    assert daemon.virsh("domstate", "bm-vmedia").strip() == "shut off"
    assert cd_source(octo) is None and not list((octo.data_dir / "media").glob("*.iso"))


def wait_for_ejection_and_power_off(octo, task_id: int) -> None:
    deadline = time.monotonic() + 60
    while not any(m.startswith("Rollback: Boot media ejected") for m in messages(octo, task_id)) or not any(
            "Rollback: Powered off through the BMC" in m for m in messages(octo, task_id)):
        assert time.monotonic() < deadline, messages(octo, task_id)
        time.sleep(0.5)


def inserted_media(octo) -> dict[str, str]:
    """The files in the domain's (next start's) CD and floppy drives, by device kind."""
    defined = ET.fromstring(octo.daemon.virsh("dumpxml", "bm-vmedia", "--inactive"))  # noqa: S314 - libvirt's
    return {disk.get("device"): disk.find("source").get("file") for disk in defined.iterfind("devices/disk")
            if disk.get("device") in ("cdrom", "floppy") and disk.find("source") is not None}


def test_windows_by_virtual_media_gets_its_dvd_and_its_answer_floppy(vmedia_machine, tmp_path):
    """No Windows Setup runs here: what the BMC is given is checked, then the task is cancelled."""
    octo = vmedia_machine
    stand_in = octo.data_dir / "images" / "ws2025-dvd.iso"
    stand_in.write_bytes(b"CD001" * 8192)  # the installation DVD's stand-in (40 KB; Windows media are signed)
    (octo.data_dir / "images" / "install.wim").write_bytes(b"wim")
    image = octo.call("POST", "/images", 201, json={"name": "WS2025 DVD", "osType": "windows",
                                                     "imagePath": "install.wim", "installIsoPath": "ws2025-dvd.iso"})
    body = {**vmedia_task(octo, "BM-WIN-VM"), "os": {"imageId": image["id"], "adminPassword": "Pa55word!"}}
    task_id = power_on_after_power_off(octo, "bm-vmedia", octo.vmedia_serial, body, 90)
    logged = messages(octo, task_id)
    assert any(m.startswith("Register MAC for PXE boot: Answer floppy built (autounattend.xml)") for m in logged)
    assert any("boot.iso into the virtual" in m and "answers.img into the virtual" in m for m in logged), logged
    media = inserted_media(octo)
    assert Path(media["cdrom"]).read_bytes() == stand_in.read_bytes()
    answer = subprocess.run(["mtype", "-i", media["floppy"], "::/autounattend.xml"], capture_output=True, text=True,
                            check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert "/api/v1/provisioning/pxe/status" in answer and "Report that Setup started" in answer, answer[-2000:]
    boot = redfish(octo, system_path(octo, "bm-vmedia"))["Boot"]
    assert boot["BootSourceOverrideTarget"] == "Cd", boot
    octo.call("DELETE", f"/tasks/{task_id}", 200)
    wait_for_ejection_and_power_off(octo, task_id)
    assert inserted_media(octo) == {} and not list((octo.data_dir / "media").iterdir())

