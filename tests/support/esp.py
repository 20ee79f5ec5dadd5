"""A disk that stands in for an installed OS booting under Secure Boot: a GPT disk whose EFI system
partition holds the chain a Debian installation writes (shim as the removable-media loader
\\EFI\\BOOT\\BOOTX64.EFI, Debian's signed GRUB beside it, its configuration in \\EFI\\debian) and the
tiny Linux's signed kernel and initramfs. Built with sfdisk and mtools, no loop devices or mounts.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.models import Task
from octoprov.settings import Settings
from tests.support import tinylinux
from tests.support.bootservices import API, PUBLIC_URL, SIGNED_BOOT_DIR, Services

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
DISK_MIB, START_MIB, ESP_MIB = 80, 1, 76
SHIM = SIGNED_BOOT_DIR / "shim" / "shimx64.efi.signed"
GRUB = SIGNED_BOOT_DIR / "grub" / "x86_64-efi-signed" / "grubx64.efi.signed"  # the disk build, not the network one
ESP_URL = f"{PUBLIC_URL}/boot/images/tiny/esp.img.gz"  # where the stand-in installer fetches the disk it writes


def grub_config(kernel_args: str) -> str:
    return "\n".join(["set timeout=0", f"linux /vmlinuz {kernel_args}", "initrd /initrd.gz", "boot", ""])


def build(disk: Path, kernel: Path, initrd: Path, kernel_args: str) -> Path:
    """Write the raw disk image ``disk`` (80 MiB) and return it."""
    with disk.open("wb") as out:
        out.truncate(DISK_MIB << 20)
    table = f"label: gpt\nstart={START_MIB * 2048}, size={ESP_MIB * 2048}, type={ESP_TYPE}, name=ESP\n"
    subprocess.run(["sfdisk", "--quiet", str(disk)], input=table, text=True, check=True, capture_output=True)
    esp = f"{disk}@@{START_MIB}M"
    config = disk.with_suffix(".grub.cfg")
    config.write_text(grub_config(kernel_args))

    def mtools(*argv: str) -> None:
        environment = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
        subprocess.run(list(argv), check=True, capture_output=True, env=environment)

    mtools("mformat", "-i", esp, "-F", "-T", str(ESP_MIB * 2048), "-v", "ESP", "::")
    mtools("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT", "::/EFI/debian")
    for source, target in ((SHIM, "::/EFI/BOOT/BOOTX64.EFI"), (GRUB, "::/EFI/BOOT/grubx64.efi"),
                           (config, "::/EFI/debian/grub.cfg"), (config, "::/EFI/BOOT/grub.cfg"),
                           (kernel, "::/vmlinuz"), (initrd, "::/initrd.gz")):
        mtools("mcopy", "-i", esp, str(source), target)
    return disk


def unsigned_image(octo: Services) -> int:
    """The tiny Linux registered as an image whose installer kernel is unsigned, so a machine that should run
    with Secure Boot installs with it off; its "installer" writes the disk image at ESP_URL to /dev/vda, reports
    os_installed and powers off, as WinPE does when Octoprov turns Secure Boot on afterwards."""
    known = getattr(octo, "unsigned_image_id", None)
    if known is None:
        args = (f"{tinylinux.KERNEL_ARGS} octoprov.events=installer_started,os_installed octoprov.install=vda "
                f"octoprov.install_url={ESP_URL}")
        known = octo.call("POST", "/images", 201, json={
            "name": "Tiny Linux, unsigned kernel", "osType": "linux", "imagePath": "tiny/initrd.gz",
            "kernelPath": "tiny/vmlinuz", "initrdPath": "tiny/initrd.gz", "kernelArgs": args,
            "signedKernel": False})["id"]
        octo.unsigned_image_id = known  # type: ignore[attr-defined]  # cached on the module's services
    return int(known)


def callback_token(octo: Services, task_id: int) -> str:
    settings = Settings(data_dir=octo.data_dir, secret_key=octo.env["OCTOPROV_SECRET_KEY"])
    with Database.from_settings(settings).session() as session:
        encrypted = session.get_one(Task, task_id).callback_token_encrypted
    assert encrypted is not None
    return Vault.from_settings(settings).decrypt(encrypted)


def publish_installed_os(octo: Services, task_id: int, workdir: Path) -> None:
    """The installed OS for ``task_id`` at ESP_URL: its first boot reports ``first_boot`` to the task."""
    kernel_args = (f"{tinylinux.KERNEL_ARGS} octoprov.events=first_boot octoprov.task={task_id} "
                   f"octoprov.callback={PUBLIC_URL}{API}/pxe/status octoprov.token={callback_token(octo, task_id)} "
                   "octoprov.after=wait")
    image = tinylinux.build()
    disk = build(workdir / "esp.img", image.kernel, image.initrd, kernel_args)
    with disk.open("rb") as raw, gzip.open(octo.data_dir / "images" / "tiny" / "esp.img.gz", "wb", 1) as packed:
        shutil.copyfileobj(raw, packed)
