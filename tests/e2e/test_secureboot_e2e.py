"""Network installs with Secure Boot enforced: OVMF with Microsoft's keys enrolled boots shim
(signed by Microsoft's UEFI CA) from Octoprov's ProxyDHCP and TFTP, shim starts Debian's signed
GRUB, which takes its per-machine configuration and the task's signed kernel from Octoprov's TFTP
server, and the kernel reports Secure Boot on before the tiny Linux calls back. The same firmware
handed the unsigned iPXE refuses it, which proves the enforcement is real.

The site DHCP server carries Octoprov's address as next-server (siaddr): the signed GRUB 2.06 of
Debian 12 reads its server from the DHCP acknowledgement, not from the ProxyDHCP answer
(docs/secure-boot.md). Needs root and `make signed-boot`; skipped without them, except in CI.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from tests.support import netlab, tinylinux
from tests.support.bootservices import BOOT_TIMEOUT, SIGNED_BOOT_DIR, Services, boot_services, steps, unusable

SECURE_BOOT_ON = "secureboot: Secure boot enabled"  # the kernel's own report (arch/x86/kernel/setup.c)


@pytest.fixture(scope="module")
def secure_lab(tmp_path_factory):
    if not (SIGNED_BOOT_DIR / "shim" / "shimx64.efi.signed").is_file():
        unusable(f"{SIGNED_BOOT_DIR} has no signed shim: run `make signed-boot`")
    for path in (netlab.OVMF_CODE_SECURE, netlab.OVMF_VARS_MS):
        if not path.is_file():
            unusable(f"{path} is missing (Debian's ovmf)")
    with boot_services(tmp_path_factory.mktemp("secureboot"), "default,baremetal",
                       site_next_server=netlab.BOOT_ADDRESS) as octo:
        yield octo


def start_task(octo: Services, name: str, mac: str, secure_boot: bool) -> int:
    octo.call("POST", "/machines", 201, json={"name": name, "macAddresses": [mac], "secureBoot": secure_boot})
    task_id = octo.call("POST", "/tasks", 201, json={
        "hostname": name, "targetType": "baremetal", "macAddress": mac, "os": {"imageId": octo.image_id},
        "postInstall": {"installAgent": False}})["id"]
    octo.wait_task(task_id, lambda t: t["status"] == "booting" and steps(t)["power_on"] == "done", 60)
    return task_id


def test_secure_boot_machine_installs_through_shim_grub_and_a_signed_kernel(secure_lab):
    octo, mac = secure_lab, "52:54:00:5b:00:01"
    task_id = start_task(octo, "sb-linux", mac, secure_boot=True)
    vm = octo.lab.boot_vm("sb-linux", mac, "uefi-secureboot", nic_rom=False)
    try:
        task = octo.wait_task(task_id, lambda t: steps(t)["installer_started"] == "done", BOOT_TIMEOUT, vm)
        elapsed = time.monotonic() - vm.started
        assert task["status"] == "installing", task
        with contextlib.suppress(subprocess.TimeoutExpired):
            vm.process.wait(timeout=30)  # /init powers off after the callback
        console = vm.console()
    finally:
        vm.stop()
    pxe_log = octo.log("pxe.log")
    assert f"ACK {mac} " in pxe_log and "file 'shimx64.efi'" in pxe_log, pxe_log[-3000:]
    for name in ("shimx64.efi", "grubx64.efi", f"grub/octoprov/{mac}.cfg", "images/tiny/vmlinuz",
                 "images/tiny/initrd.gz"):
        assert f"TFTP '{name}'" in pxe_log or f"TFTP '/{name}'" in pxe_log, (name, pxe_log[-3000:])
    assert "EFI stub: UEFI Secure Boot is enabled." in console, console[-3000:]
    assert SECURE_BOOT_ON in console
    assert f"{tinylinux.MARKER}: callback installer_started answered" in console
    log = octo.call("GET", f"/tasks/{task_id}/logs", 200)
    assert any(f"GRUB configuration served to {mac}" in entry["message"] and "install" in entry["message"]
               for entry in log), log
    print(f"\nsb-linux: shim -> GRUB -> signed kernel, Secure Boot enforced: callback {elapsed:.1f} s after QEMU start")


def test_unsigned_ipxe_is_refused_by_the_same_firmware(secure_lab):
    """A machine not registered as Secure Boot gets iPXE; firmware that enforces Secure Boot will not run it."""
    octo, mac = secure_lab, "52:54:00:5b:00:02"
    task_id = start_task(octo, "sb-refused", mac, secure_boot=False)
    vm = octo.lab.boot_vm("sb-refused", mac, "uefi-secureboot", nic_rom=False)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while "Access Denied" not in vm.console():
            if time.monotonic() > deadline:
                pytest.fail("the firmware did not refuse the unsigned iPXE\n" + octo.diagnostics(vm))
            time.sleep(0.5)
        print(f"\nsb-refused: unsigned ipxe.efi refused {time.monotonic() - vm.started:.1f} s after QEMU start")
    finally:
        vm.stop()
    assert "file 'ipxe.efi'" in octo.log("pxe.log")
    assert "iPXE" not in vm.console().split("Access Denied")[-1]  # it never ran
    assert octo.task(task_id)["status"] == "booting"
    octo.call("DELETE", f"/tasks/{task_id}", 200)
