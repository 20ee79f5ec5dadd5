"""A tiny Linux for the network-boot test: Debian's kernel and a busybox initramfs whose /init
does what a real installer does first (DHCP, with the default route through the network's router, so a
callback URL beyond the boot network is reached; then Octoprov's `installer_started` callback, with
the task, URL and token from the kernel command line iPXE built; ``octoprov.events=a,b,c`` on the
image's kernel arguments posts those events in turn instead), then powers the VM off.
``octoprov.install=vda`` writes the "installed OS" to that disk before ``os_installed`` is posted: a
boot sector that prints ``DISK_MARKER`` on the serial port and halts, what BIOS boots from the disk
(generation 1); with ``octoprov.install_url=URL`` the gzipped disk image at that URL instead (the
Secure Boot test's EFI system partition, tests/support/esp.py). ``octoprov.after=wait`` keeps the VM
running after its callbacks instead of powering it off, as an installed machine does.

Built once and cached under .cache/netboot/, keyed by the kernel package and by everything that
goes into the initramfs, so a change to /init rebuilds it. The kernel package is only downloaded
and unpacked, never installed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

CACHE = ROOT / ".cache" / "netboot"
BUSYBOX = Path("/bin/busybox")  # busybox-static: no shared libraries to carry along
MARKER = "OCTOPROV-TINY-LINUX"
# NIC drivers in dependency order (insmod does not resolve dependencies): virtio-net, then e1000.
MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk",
           "failover", "net_failover", "virtio_net", "e1000")
# SATA CD-ROM (the cloud-init seed) and its ISO 9660 file system, for the cloud-image boot test
CDROM_MODULES = ("scsi_common", "scsi_mod", "libata", "libahci", "ahci", "cdrom", "sr_mod", "isofs")
KERNEL_ARGS = "console=ttyS0 panic=5"
DISK_MARKER = "OCTOPROV-TINY-DISK: booted from disk"
# The "installed OS": 16-bit code at 0x7c00 that writes the marker to COM1 (0x3f8), then halts.
#   fa  31 c0  8e d8  fc      cli; xor ax,ax; mov ds,ax; cld
#   be 17 7c  ba f8 03        mov si,0x7c17 (the text, 23 bytes in); mov dx,0x3f8
#   ac  84 c0  74 03  ee  eb f8   next: lodsb; test al,al; jz done; out dx,al; jmp next
#   f4  eb fd                 done: hlt; jmp done
BOOT_CODE = bytes.fromhex("fa31c08ed8fcbe177cbaf803ac84c07403eeebf8f4ebfd")
BOOT_SECTOR = (BOOT_CODE + f"{DISK_MARKER}\r\n".encode() + b"\0").ljust(510, b"\0") + b"\x55\xaa"

INIT = r"""#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "@MARKER@: init started"
for module in @MODULES@; do
    [ -f "/lib/modules/$module.ko" ] && insmod "/lib/modules/$module.ko"
done
events=installer_started
for word in $(cat /proc/cmdline); do
    case "$word" in
        octoprov.task=*) task="${word#*=}" ;;
        octoprov.callback=*) callback="${word#*=}" ;;
        octoprov.token=*) token="${word#*=}" ;;
        octoprov.events=*) events="${word#*=}" ;;
        octoprov.install=*) install="${word#*=}" ;;
        octoprov.install_url=*) install_url="${word#*=}" ;;
        octoprov.after=*) after="${word#*=}" ;;
    esac
done
ip link set lo up
ip link set eth0 up
if udhcpc -i eth0 -q -n -t 10 -s /etc/udhcpc.script; then
    echo "@MARKER@: address $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
    for event in $(echo "$events" | tr ',' ' '); do
        if [ "$event" = os_installed ] && [ -n "$install" ]; then
            if [ -n "$install_url" ]; then
                timeout 120 wget -q -O - "$install_url" | gunzip | dd of="/dev/$install" bs=1M 2>/dev/null && sync \
                    && echo "@MARKER@: installed $install_url on /dev/$install" \
                    || echo "@MARKER@: could not install $install_url on /dev/$install"
            else
                dd if=/disk.img of="/dev/$install" bs=512 count=1 2>/dev/null && sync \
                    && echo "@MARKER@: installed on /dev/$install" || echo "@MARKER@: no /dev/$install to install on"
            fi
        fi
        body="{\"taskId\":$task,\"token\":\"$token\",\"event\":\"$event\","
        body="$body\"status\":\"ok\",\"message\":\"tiny linux: $event\"}"
        for attempt in 1 2 3; do
            # busybox-static's wget -T crashes: timeout bounds the call instead
            if answer=$(timeout 10 wget -q -O - --header "Content-Type: application/json" \
                    --post-data "$body" "$callback"); then
                echo "@MARKER@: callback $event answered: $answer"
                break
            fi
            echo "@MARKER@: callback $event attempt $attempt failed"
            sleep 1
        done
    done
else
    echo "@MARKER@: no DHCP lease"
fi
if [ "$after" = wait ]; then
    echo "@MARKER@: running on"
    while :; do sleep 3600; done
fi
echo "@MARKER@: powering off"
poweroff -f
"""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
    deconfig) ifconfig "$interface" 0.0.0.0 up ;;
    bound|renew) ifconfig "$interface" "$ip" netmask "$subnet" up
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface" ;;
esac
exit 0
"""


@dataclass(frozen=True)
class TinyLinux:
    kernel: Path
    initrd: Path
    kernel_package: str


def kernel_package() -> str:
    """The ABI package linux-image-amd64 points at (linux-image-6.1.0-N-amd64 on Debian 12)."""
    depends = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True)
    found = re.findall(r"Depends: (linux-image-[0-9][^\s<>]*-amd64)\b", depends.stdout)
    if found:
        return found[0]
    search = subprocess.run(["apt-cache", "search", "--names-only", r"^linux-image-[0-9.]+-[0-9]+-amd64$"],
                            capture_output=True, text=True)
    names = [line.split()[0] for line in search.stdout.splitlines() if line.strip()]
    if not names:
        raise RuntimeError("no linux-image-*-amd64 package is known to apt (run apt-get update)")
    return max(names, key=lambda name: [int(n) for n in re.findall(r"\d+", name)])


def build(cache: Path = CACHE) -> TinyLinux:
    """The cached kernel and initramfs, built first if missing."""
    package, kernel_dir = unpacked_kernel(cache)
    init = INIT.replace("@MARKER@", MARKER).replace("@MODULES@", " ".join(MODULES))
    digest = hashlib.sha256()
    for part in (init, UDHCPC_SCRIPT, *MODULES):
        digest.update(part.encode() + b"\0")
    digest.update(BOOT_SECTOR)
    digest.update(BUSYBOX.read_bytes())
    initrd = kernel_dir / f"initrd-{digest.hexdigest()[:16]}.gz"
    if not initrd.is_file():
        _write_atomically(initrd, _initramfs(init, kernel_dir / "modules", files={"disk.img": BOOT_SECTOR}))
    return TinyLinux(kernel_dir / "vmlinuz", initrd, package)


def unpacked_kernel(cache: Path = CACHE) -> tuple[str, Path]:
    """The kernel package and the folder holding its vmlinuz and modules/, unpacked first if missing."""
    package = kernel_package()
    kernel_dir = cache / package
    wanted = [kernel_dir / "vmlinuz", *(kernel_dir / "modules" / f"{name}.ko" for name in MODULES + CDROM_MODULES)]
    if not all(path.is_file() for path in wanted):
        _unpack_kernel(package, kernel_dir)
    return package, kernel_dir


def _unpack_kernel(package: str, kernel_dir: Path) -> None:
    """Download the package, keep its vmlinuz and the NIC and CD-ROM modules, drop the rest (~400 MB unpacked)."""
    kernel_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tinylinux-", dir=kernel_dir.parent) as work:
        subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True, timeout=600)
        deb = next(Path(work).glob("*.deb"))
        tree = Path(work) / "tree"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, capture_output=True, timeout=600)
        staged = Path(work) / "kernel"
        (staged / "modules").mkdir(parents=True)
        shutil.copyfile(next((tree / "boot").glob("vmlinuz-*")), staged / "vmlinuz")
        found = {path.name.removesuffix(".ko"): path for path in (tree / "lib" / "modules").rglob("*.ko")}
        for module in MODULES + CDROM_MODULES:
            if module not in found:
                raise RuntimeError(f"{package} has no module {module}.ko")
            shutil.copyfile(found[module], staged / "modules" / f"{module}.ko")
        shutil.rmtree(kernel_dir, ignore_errors=True)
        try:
            os.replace(staged, kernel_dir)
        except OSError:
            if not (kernel_dir / "modules" / f"{CDROM_MODULES[-1]}.ko").is_file():  # else a parallel run was first
                raise


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _initramfs(init: str, modules: Path, names: tuple[str, ...] = MODULES, files: dict[str, bytes] | None = None
               ) -> bytes:
    """A gzipped cpio (newc) archive: what the kernel unpacks as its first root file system, with
    ``files`` (name: content) at its root."""
    archive = Newc()
    for folder in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "lib",
                   "lib/modules"):
        archive.add(folder, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))  # the kernel opens it for /init's output
    archive.add("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes())
    archive.add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    archive.add("init", stat.S_IFREG | 0o755, init.encode())
    archive.add("etc/udhcpc.script", stat.S_IFREG | 0o755, UDHCPC_SCRIPT.encode())
    for module in names:
        archive.add(f"lib/modules/{module}.ko", stat.S_IFREG | 0o644, (modules / f"{module}.ko").read_bytes())
    for name, data in (files or {}).items():
        archive.add(name, stat.S_IFREG | 0o644, data)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


class Newc:
    """The cpio "newc" format the kernel reads, written directly: no cpio binary needed."""

    def __init__(self):
        self._out = io.BytesIO()
        self._inode = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = (self._inode, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, *rdev,
                  len(name) + 1, 0)
        self._inode += 1
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._out.write(_pad(header + name.encode() + b"\0"))
        self._out.write(_pad(data))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self._out.getvalue()


def _pad(block: bytes) -> bytes:
    return block + b"\0" * (-len(block) % 4)
