"""The virtual-media boot ISO (octoprov/bootmedia.py) boots in QEMU as a BMC's virtual CD would: SeaBIOS
through ISOLINUX, and OVMF with Microsoft's keys and Secure Boot enforced through Debian's shim, its
signed CD GRUB and the tiny Linux's signed kernel. The kernel's own "Command line:" report on the serial
port proves the task's command line arrived as written, GRUB's special characters included; the tiny
Linux's /init marker proves the initrd ran. QEMU is killed as soon as the marker shows.

Plain QEMU under TCG, no network and no root needed; skipped when QEMU, the firmware, ISOLINUX or (for
Secure Boot) `make signed-boot` is missing, except in CI.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from octoprov.bootmedia import INITRD, ISOLINUX_BIN, KERNEL, LDLINUX_C32, SIGNED_CD_GRUB, SIGNED_SHIM, linux_boot_iso
from tests.support import netlab, tinylinux
from tests.support.bootservices import SIGNED_BOOT_DIR, unusable

BOOT_TIMEOUT = 120  # seconds from QEMU start to /init; 8 s (SeaBIOS) and 17 s (OVMF, Secure Boot) measured
INIT_STARTED = f"{tinylinux.MARKER}: init started"
SECURE_BOOT_ON = "secureboot: Secure boot enabled"  # the kernel's own report (arch/x86/kernel/setup.c)
# GRUB would expand, split or end a command at these; ISOLINUX takes them as they are
SPECIALS = "grub.specials=$root;echo&x|y#z{}<>"
WHAT = "virtual-media boot test"


def need(*paths: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        unusable("qemu-system-x86_64 is not installed (make system-packages)", WHAT)
    for path in paths:
        if not path.is_file():
            unusable(f"{path} is missing (make system-packages; make signed-boot for the signed boot chain)", WHAT)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[Path, str]:
    """The tiny Linux's ISO, for BIOS and UEFI, and its command line (with a marker unique to this run)."""
    need(ISOLINUX_BIN, LDLINUX_C32, SIGNED_BOOT_DIR / SIGNED_SHIM, SIGNED_BOOT_DIR / SIGNED_CD_GRUB)
    linux = tinylinux.build()
    cmdline = f"{tinylinux.KERNEL_ARGS} octoprov.media={secrets.token_hex(6)} {SPECIALS}"
    iso = linux_boot_iso(tmp_path_factory.mktemp("bootmedia") / "boot.iso", linux.kernel, linux.initrd, cmdline,
                         signed_boot_dir=SIGNED_BOOT_DIR, files={"preseed.cfg": b"# nothing to answer\n"})
    print(f"\nboot ISO for the tiny Linux: {iso.stat().st_size / 2**20:.1f} MiB")
    return iso, cmdline


def boot(iso: Path, firmware: str, workdir: Path) -> tuple[str, float]:
    """Boot ``iso`` as the only drive, until /init's marker (or QEMU's end, or the timeout): the serial
    log and the seconds it took."""
    serial = workdir / f"{firmware}.serial.log"
    argv = ["qemu-system-x86_64", "-machine", "accel=tcg", "-m", "512", "-display", "none", "-nodefaults",
            "-no-user-config", "-no-reboot", "-nic", "none", "-serial", f"file:{serial}", "-cdrom", str(iso),
            *netlab.firmware_argv(firmware, workdir, "media")]
    if firmware == "bios":
        argv += ["-boot", "d"]  # straight to the CD, not the missing hard disk first
    with (workdir / f"{firmware}.qemu.log").open("wb") as output:
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
    vm = netlab.Vm(qemu, serial, time.monotonic())
    try:
        while (INIT_STARTED not in vm.console() and qemu.poll() is None
               and time.monotonic() - vm.started < BOOT_TIMEOUT):
            time.sleep(0.2)
        return vm.console(), time.monotonic() - vm.started
    finally:
        vm.stop()  # QEMU's own process group: it was started in a session of its own


def command_line(console: str) -> str:
    """What the kernel says it was given: its own first report on the serial port."""
    for line in console.splitlines():
        if "] Command line: " in line:
            return line.split("] Command line: ", 1)[1].rstrip("\r")
    raise AssertionError(f"the kernel never reported its command line:\n{console[-3000:]}")


def test_seabios_boots_the_iso_through_isolinux(media, tmp_path):
    iso, cmdline = media
    console, elapsed = boot(iso, "bios", tmp_path)
    assert INIT_STARTED in console, f"no /init after {elapsed:.0f} s:\n{console[-3000:]}"
    assert "ISOLINUX" in console and f"Loading {KERNEL}... ok" in console  # SeaBIOS copies the screen to COM1
    assert command_line(console) == f"BOOT_IMAGE={KERNEL} {cmdline} initrd={INITRD}"
    print(f"\nSeaBIOS -> ISOLINUX -> kernel -> /init: {elapsed:.1f} s after QEMU start")


def test_ovmf_with_secure_boot_enforced_boots_the_iso_through_shim_and_grub(media, tmp_path):
    need(netlab.OVMF_CODE_SECURE, netlab.OVMF_VARS_MS)
    iso, cmdline = media
    console, elapsed = boot(iso, "uefi-secureboot", tmp_path)
    assert INIT_STARTED in console, f"no /init after {elapsed:.0f} s:\n{console[-3000:]}"
    assert "EFI stub: UEFI Secure Boot is enabled." in console and SECURE_BOOT_ON in console
    assert command_line(console) == f"BOOT_IMAGE={KERNEL} {cmdline}"
    print(f"\nOVMF (Secure Boot) -> shim -> GRUB -> signed kernel -> /init: {elapsed:.1f} s after QEMU start")
