"""Bare metal installed from the BMC's virtual media instead of the network: no DHCP boot options, no TFTP.

For a task that boots by virtual media (the machine's ``bootMethod``, or the task's
``options.bootMethod``), preparing the boot builds the task's media under the data folder:

- Linux: its own boot ISO (octoprov/bootmedia.py: the image's kernel and initrd, the installer's
  command line with the task's callback), into the BMC's virtual CD.
- Windows: the image's installation ISO (``installIsoPath``, Microsoft-signed, so Secure Boot stays
  on) into the virtual CD, and a floppy image with the task's Autounattend.xml (adapted to an install
  from the DVD, as the Hyper-V and KVM ISO modes do) into the BMC's virtual floppy or USB stick, where
  Windows Setup finds it.

Powering on mints a fresh token, whose hash the task keeps, and hands the BMC the media's URLs under it
(``MEDIA_URL``: the address BMCs reach); the BMC fetches them, the machine starts once from the virtual
CD. The URLs answer only while the task is active and only under its latest token; the media are ejected
(and the task's own files deleted) when the installed OS has booted, with the hard-disk boot override,
and on rollback, so nothing of a task is left in a BMC or on disk.
"""

from __future__ import annotations

import contextlib
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any

from octoprov import bootmedia, states
from octoprov.errors import PermanentError
from octoprov.models import Image, Node, Task
from octoprov.netboot.bootconfig import files_token_hash, image_kernel_args
from octoprov.netboot.installer import installer_arguments

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

    from octoprov.context import TaskContext
    from octoprov.settings import Settings

PXE, VIRTUAL_MEDIA = "pxe", "virtualMedia"
BOOT_METHODS = (PXE, VIRTUAL_MEDIA)
MEDIA_PATH = "/boot/media"  # api/bootfiles.py
BOOT_ISO, ANSWERS = "boot.iso", "answers.img"  # the names of a task's media under its token
CD_TYPES, REMOVABLE_TYPES = {"CD", "DVD"}, {"Floppy", "USBStick"}


def boot_method(task_method: str | None, machine_options: dict[str, Any] | None) -> str:
    """The task's own choice, else its machine's, else the network."""
    return task_method or (machine_options or {}).get("bootMethod") or PXE


def request_errors(task_method: str | None, machine: Node | None, image: Image | None) -> dict[str, str]:
    """What would fail on the machine, said when the task is created: virtual media needs the machine's
    Redfish BMC with a virtual CD (and for Windows a virtual floppy or USB stick, when its inspection listed
    the BMC's media), a Linux image with a kernel and initrd or a Windows image with an installation ISO,
    and a signed Linux kernel on a machine that enforces Secure Boot (its own ISO keeps Secure Boot on).
    Errors name ``options.bootMethod`` when the task chose it, else ``macAddress``."""
    if boot_method(task_method, machine.options if machine else None) != VIRTUAL_MEDIA:
        return {}
    field = "options.bootMethod" if task_method else "macAddress"
    if machine is None or machine.kind != "redfish":
        return {field: "virtualMedia needs a registered machine with a Redfish BMC to insert the boot media"}
    windows = image is not None and image.os_type == "windows"
    media = ((machine.options or {}).get("hardware") or {}).get("virtualMedia")
    needed = [("virtual CD or DVD", CD_TYPES)] + ([("virtual floppy or USB stick", REMOVABLE_TYPES)]
                                                 if windows else [])
    for what, types in needed:
        if media is not None and not set(media) & types:
            return {field: f"machine {machine.name}'s BMC reports no {what} drive (only {', '.join(media) or 'none'})"}
    if image is None:
        return {}  # the reference check names the image
    if windows and not image.install_iso_path:
        return {"os.imageId": "Windows by virtual media boots the image's installation ISO: register the image "
                              "with installIsoPath"}
    if not windows and (not image.kernel_path or not image.initrd_path):
        return {"os.imageId": "virtual media boots a Linux image's kernel and initrd; this image has none"}
    if not windows and not image.signed_kernel and (machine.options or {}).get("secureBoot"):
        return {"os.imageId": "an unsigned kernel cannot start from virtual media on a machine that enforces Secure "
                              "Boot; install it by pxe (Octoprov then turns Secure Boot off for the install)"}
    return {}


def boots_signed_media(machine_options: dict[str, Any]) -> bool:
    """Virtual media start the installer through a signed chain (Windows' own media; Linux through shim,
    GRUB and a kernel ``request_errors`` requires signed): Secure Boot stays on."""
    return machine_options.get("bootMethod") == VIRTUAL_MEDIA


def uses_virtual_media(ctx: TaskContext) -> bool:
    return boot_method(ctx.spec.options.boot_method, ctx.node.options if ctx.node else None) == VIRTUAL_MEDIA


def media_file(settings: Settings, task_id: int, name: str) -> Path:
    """Where a task's own medium is kept while it installs."""
    return settings.media_dir / f"task-{task_id}-{name}"


def media_url(settings: Settings, token: str, name: str) -> str:
    return f"{settings.effective_media_url}{MEDIA_PATH}/{token}/{name}"


def build_media(ctx: TaskContext) -> str:
    """The task's media, built again each time (they carry the task's tokens)."""
    with ctx.database.session() as session:
        task = session.get_one(Task, ctx.task_id)
        image = session.get(Image, ctx.spec.os.image_id)
        if image is not None and image.os_type == "windows":
            return _answer_floppy(ctx, image)
        if image is None or not image.kernel_path or not image.initrd_path:
            raise PermanentError("virtual media boots a Linux image's kernel and initrd; this task's image has none")
        files_token = ctx.vault.decrypt(task.files_token_encrypted) if task.files_token_encrypted else ""
        kernel_args = image_kernel_args(ctx.settings, image, files_token)
        kernel_path, initrd_path = image.kernel_path, image.initrd_path
    images = ctx.settings.effective_images_dir
    arguments = installer_arguments(ctx.task_id, kernel_args, ctx.callback_url, ctx.callback_token())
    out = media_file(ctx.settings, ctx.task_id, BOOT_ISO)
    out.parent.mkdir(parents=True, exist_ok=True)
    signed = ctx.settings.signed_boot_dir
    uefi = all((signed / name).is_file() for name in (bootmedia.SIGNED_SHIM, bootmedia.SIGNED_CD_GRUB))
    bootmedia.linux_boot_iso(out, images / kernel_path, images / initrd_path, " ".join(arguments),
                             signed_boot_dir=signed if uefi else None)
    if not uefi:  # said in the step's log line: a UEFI machine would not start from it
        return (f"Boot ISO built ({out.stat().st_size >> 20} MiB), for BIOS only: Debian's signed shim and CD GRUB "
                f"are not in OCTOPROV_SIGNED_BOOT_DIR ({signed}), so a UEFI machine cannot start from it")
    return f"Boot ISO built for BIOS and UEFI, Secure Boot included ({out.stat().st_size >> 20} MiB)"


def _answer_floppy(ctx: TaskContext, image: Image) -> str:
    from octoprov.answerfiles.dvd import FILE_NAME, dvd_answer_file

    if not image.install_iso_path:
        raise PermanentError("Windows by virtual media boots the image's installation ISO; the image has none")
    out = media_file(ctx.settings, ctx.task_id, ANSWERS)
    out.parent.mkdir(parents=True, exist_ok=True)
    bootmedia.answer_floppy(out, {FILE_NAME: dvd_answer_file(ctx).encode("utf-8")})
    return f"Answer floppy built ({FILE_NAME}); the installation ISO is {image.install_iso_path}"


def mint_urls(ctx: TaskContext) -> dict[str, str]:
    """A new token for the task's media (an earlier one stops working) and the URLs the BMC fetches: the
    boot ISO, and the answer floppy of a Windows install."""
    token = token_urlsafe(32)
    with ctx.database.session() as session:
        session.get_one(Task, ctx.task_id).media_token_hash = files_token_hash(token)
    names = [BOOT_ISO] + ([ANSWERS] if ctx.os_type == "windows" else [])
    return {name: media_url(ctx.settings, token, name) for name in names}


def forget(ctx: TaskContext) -> None:
    """The task's own media deleted and their URLs dead (an image's installation ISO stays)."""
    with ctx.database.session() as session:
        session.get_one(Task, ctx.task_id).media_token_hash = None
    for name in (BOOT_ISO, ANSWERS):
        with contextlib.suppress(FileNotFoundError):
            media_file(ctx.settings, ctx.task_id, name).unlink()


def served_medium(session: Session, settings: Settings, task: Task | None, name: str) -> Path | None:
    """The file a media URL names, while its task is active: the task's own boot ISO or answer floppy, or
    a Windows image's installation ISO from the images folder."""
    if task is None or task.status in states.FINAL or name not in (BOOT_ISO, ANSWERS):
        return None
    image = session.get(Image, ((task.config or {}).get("os") or {}).get("imageId"))
    if name == BOOT_ISO and image is not None and image.os_type == "windows":
        path = settings.effective_images_dir / image.install_iso_path if image.install_iso_path else None
    else:
        path = media_file(settings, task.id, name)
    return path if path is not None and path.is_file() else None
