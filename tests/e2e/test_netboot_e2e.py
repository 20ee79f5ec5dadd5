"""End to end network boot with real firmware: QEMU VMs boot from Octoprov's ProxyDHCP, TFTP
and API, answering beside a site DHCP server that gives addresses only, and the Linux they load
reports back through the status callback, which moves the bare-metal task on.

Legacy BIOS takes the direct path (QEMU's NIC ROM is iPXE: the script URL at once); UEFI with
the NIC ROM removed takes the chainload path real machines take (OVMF's PXE client, ipxe.efi by
TFTP, then the script over HTTP). The lab is in tests/support/netlab.py, the booted Linux in
tests/support/tinylinux.py. Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time

import pytest

from tests.support import netlab, tinylinux
from tests.support.bootservices import API, BOOT_TIMEOUT, PUBLIC_URL, Services, boot_services, steps


@pytest.fixture(scope="module")
def netboot(tmp_path_factory):
    with boot_services(tmp_path_factory.mktemp("netboot"), "default,baremetal") as octo:
        yield octo


def provision(octo: Services, name: str, mac: str, firmware: str, nic_rom: bool,
              http_boot_only: bool = False) -> tuple[netlab.Vm, float]:
    """Create a bare-metal task for ``mac``, power the VM on when the task asks for it, and wait for
    the booted Linux's callback to move the task to installing. Returns the VM and the boot time."""
    task_id = octo.call("POST", "/tasks", 201, json={
        "hostname": name, "targetType": "baremetal", "macAddress": mac, "os": {"imageId": octo.image_id},
        "postInstall": {"installAgent": False}})["id"]
    octo.wait_task(task_id, lambda t: t["status"] == "booting" and steps(t)["power_on"] == "done", 60)
    vm = octo.lab.boot_vm(name, mac, firmware, nic_rom, http_boot_only)
    try:
        task = octo.wait_task(task_id, lambda t: steps(t)["installer_started"] == "done", BOOT_TIMEOUT, vm)
        elapsed = time.monotonic() - vm.started
        assert task["status"] == "installing", task
        with contextlib.suppress(subprocess.TimeoutExpired):
            vm.process.wait(timeout=30)  # /init powers off after the callback
        console = vm.console()
        assert f"{tinylinux.MARKER}: callback installer_started answered" in console, octo.diagnostics(vm)
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
    # boot_unknown: else ProxyDHCP stays silent for unknown MACs. No interface setting: the boot
    # namespace has no default route, so the OFFER must leave by the interface the DISCOVER came in on.
    netboot.start_pxe(boot_unknown_machines="true", proxydhcp_interface="")
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
    # sent (a failed send logs no OFFER line), through the interface the DISCOVER came in on
    assert re.search(rf"OFFER {mac} .* on {netlab.BOOT_VETH}$", netboot.log("pxe.log"), re.MULTILINE)


def test_uefi_http_boot_without_tftp_reaches_the_callback(netboot):
    """OVMF with PXE switched off: UEFI HTTP boot is its only network option and no TFTP server runs.
    ProxyDHCP answers the HTTPClient request with the URL of ipxe.efi on the boot-files endpoint; that
    iPXE asks again as iPXE and gets its script, and the tiny Linux calls back."""
    mac = "52:54:00:6f:70:04"
    netboot.start_pxe("--no-tftp")
    try:
        vm, _ = provision(netboot, "tiny-http", mac, "uefi", nic_rom=False, http_boot_only=True)
        assert "iPXE" in vm.console()
    finally:
        netboot.start_pxe()
    pxe_log = netboot.log("pxe.log")
    assert f"OFFER {mac} " in pxe_log and f"file '{PUBLIC_URL}/boot/efi/ipxe.efi'" in pxe_log, pxe_log[-3000:]
    assert "GET /boot/efi/ipxe.efi" in netboot.log("access.log")
    assert f"{PUBLIC_URL}{API}/pxe/chain.ipxe?mac={mac}" in pxe_log  # then iPXE, answered as iPXE
    assert "TFTP '" not in pxe_log.split(f"OFFER {mac} ")[-1]  # no transfer went over TFTP (none was running)
