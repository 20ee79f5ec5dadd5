"""A tiny "cloud image" for the cloud-image boot test, built here rather than downloaded: a qcow2
disk with an MBR, one FAT partition holding SYSLINUX, Debian's kernel (from tests/support/tinylinux.py's
cache) and a busybox initramfs whose /init does what cloud-init's NoCloud source does first: find
the file system labelled ``cidata`` (the SATA CD-ROM), mount it and read ``user-data``,
``meta-data`` and ``network-config``. It prints each file (with its SHA-256) between markers on
the serial console, then powers off.

Built without root: sfdisk and mtools write into the image file, SYSLINUX installs itself at the
partition's offset. Cached under .cache/cloudimage/, keyed by everything that goes into it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support import tinylinux

CACHE = tinylinux.ROOT / ".cache" / "cloudimage"
MARKER = "OCTOPROV-TINY-CLOUD"
MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
DISK_MIB = 40
PARTITION_START = 2048  # sectors: the first partition at 1 MiB, as partitioning tools place it
TOOLS = ("sfdisk", "mformat", "mcopy", "syslinux", "qemu-img")
SEED_FILES = ("user-data", "meta-data", "network-config")

INIT = r"""#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "@MARKER@: booted from disk"
for module in @MODULES@; do
    insmod "/lib/modules/$module.ko"
done
# as cloud-init's NoCloud source does: the seed is the file system labelled cidata, wherever it is
tries=0
until device=$(findfs LABEL=cidata 2>/dev/null) || [ "$tries" -ge 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
echo "@MARKER@: seed ${device:-not found}"
mkdir -p /seed
if [ -n "$device" ] && mount -t iso9660 -o ro "$device" /seed; then
    for name in @FILES@; do
        echo "@MARKER@: sha256 $name $(sha256sum "/seed/$name" | cut -d ' ' -f 1)"
        echo "@MARKER@: begin $name"
        cat "/seed/$name"
        echo "@MARKER@: end $name"
    done
else
    echo "@MARKER@: no seed"
fi
echo "@MARKER@: powering off"
poweroff -f
"""

SYSLINUX_CFG = """DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
    KERNEL vmlinuz
    INITRD initrd.gz
    APPEND console=ttyS0 loglevel=1 panic=5
"""


@dataclass(frozen=True)
class TinyCloud:
    image: Path  # the qcow2 image
    raw_size: int


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return missing + ([str(MBR)] if not MBR.is_file() else [])


def build(cache: Path = CACHE) -> TinyCloud:
    """The cached qcow2 image, built first if missing."""
    _package, kernel_dir = tinylinux.unpacked_kernel()
    init = (INIT.replace("@MARKER@", MARKER).replace("@MODULES@", " ".join(tinylinux.CDROM_MODULES))
            .replace("@FILES@", " ".join(SEED_FILES)))
    initrd = tinylinux._initramfs(init, kernel_dir / "modules", tinylinux.CDROM_MODULES)
    kernel = (kernel_dir / "vmlinuz").read_bytes()
    digest = hashlib.sha256()
    for part in (kernel, initrd, SYSLINUX_CFG.encode(), MBR.read_bytes(), str(DISK_MIB).encode()):
        digest.update(hashlib.sha256(part).digest())
    image = cache / f"tinycloud-{digest.hexdigest()[:16]}.qcow2"
    if not image.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tinycloud-", dir=cache) as work:
            raw = _raw_disk(Path(work), kernel, initrd)
            staged = Path(work) / "image.qcow2"
            _run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(staged))
            os.replace(staged, image)
    return TinyCloud(image, DISK_MIB * 1024 * 1024)


def _raw_disk(work: Path, kernel: bytes, initrd: bytes) -> Path:
    disk = work / "disk.raw"
    with open(disk, "wb") as handle:
        handle.truncate(DISK_MIB * 1024 * 1024)
    _run("sfdisk", "--quiet", str(disk), stdin=f"label: dos\nstart={PARTITION_START}, type=c, bootable\n")
    with open(disk, "r+b") as handle:  # SYSLINUX's MBR: boots the active partition
        handle.write(MBR.read_bytes()[:440])
    offset = PARTITION_START * 512
    sectors = DISK_MIB * 2048 - PARTITION_START
    part = f"{disk}@@{offset}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    _run("mformat", "-i", part, "-T", str(sectors), "-h", "64", "-s", "32", "-H", str(PARTITION_START),
         "-v", "TINYCLOUD", "::", env=env)
    for name, data in (("vmlinuz", kernel), ("initrd.gz", initrd), ("syslinux.cfg", SYSLINUX_CFG.encode())):
        (work / name).write_bytes(data)
        _run("mcopy", "-i", part, str(work / name), f"::{name}", env=env)
    _run("syslinux", "--install", "--offset", str(offset), str(disk), env=env)
    return disk


def _run(*args: str, stdin: str | None = None, env: dict | None = None) -> None:
    subprocess.run(list(args), input=stdin, text=True, check=True, capture_output=True, timeout=120, env=env)


def seed_from_console(log: str) -> tuple[dict[str, str], dict[str, str], str]:
    """The seed files the machine printed, their SHA-256 as it computed them, and the device it found
    labelled cidata."""
    text = log.replace("\r\n", "\n")
    files = {name: match for name in SEED_FILES
             for match in re.findall(rf"{MARKER}: begin {name}\n(.*?){MARKER}: end {name}\n", text, re.S)}
    sums = dict(re.findall(rf"{MARKER}: sha256 (\S+) ([0-9a-f]{{64}})", text))
    seed = re.search(rf"{MARKER}: seed (.*)", text)
    return files, sums, seed.group(1) if seed else ""
