"""Bare metal installed from the BMC's virtual CD instead of the network: no DHCP boot options, no TFTP.

For a task that boots by virtual media (the machine's ``bootMethod``, or the task's
``options.bootMethod``), preparing the boot builds the task's own boot ISO (octoprov/bootmedia.py:
the image's kernel and initrd, the installer's command line with the task's callback) under the data
folder. Powering on mints a fresh token, whose hash the task keeps, and hands the BMC the ISO's URL
under it (``MEDIA_URL``: the address BMCs reach); the BMC fetches it, the machine starts once from the
virtual CD. The URL answers only while the task is active and only its latest token; the ISO is
ejected and deleted when the installed OS has booted (with the hard-disk boot override) and on
rollback, so nothing of a task is left in a BMC or on disk.

Windows by virtual media is not built yet: its installation ISO and answer ISO need two virtual
drives, which not every BMC offers; such a task is refused when it is created.
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

    from octoprov.context import TaskContext
    from octoprov.settings import Settings

PXE, VIRTUAL_MEDIA = "pxe", "virtualMedia"
BOOT_METHODS = (PXE, VIRTUAL_MEDIA)
MEDIA_PATH = "/boot/media"  # api/bootfiles.py
ISO_NAME = "boot.iso"


def boot_method(task_method: str | None, machine_options: dict[str, Any] | None) -> str:
    """The task's own choice, else its machine's, else the network."""
    return task_method or (machine_options or {}).get("bootMethod") or PXE


def request_errors(task_method: str | None, machine: Node | None, image: Image | None) -> dict[str, str]:
    """What would fail on the machine, said when the task is created: virtual media needs the machine's
    Redfish BMC with a virtual CD (when its inspection listed the BMC's media) and a Linux image with a
    kernel and initrd. Errors name ``options.bootMethod`` when the task chose it, else ``macAddress``."""
    if boot_method(task_method, machine.options if machine else None) != VIRTUAL_MEDIA:
        return {}
    field = "options.bootMethod" if task_method else "macAddress"
    if machine is None or machine.kind != "redfish":
        return {field: "virtualMedia needs a registered machine with a Redfish BMC to insert the boot ISO"}
    media = ((machine.options or {}).get("hardware") or {}).get("virtualMedia")
    if media is not None and not set(media) & {"CD", "DVD"}:
        return {field: f"machine {machine.name}'s BMC reports no virtual CD or DVD (only {', '.join(media) or 'none'})"}
    if image is None or not image.kernel_path or not image.initrd_path:
        return {"os.imageId": "virtualMedia boots a Linux image's kernel and initrd; this image has none (Windows "
                              "by virtual media is not supported yet: use pxe)"}
    return {}


def uses_virtual_media(ctx: TaskContext) -> bool:
    return boot_method(ctx.spec.options.boot_method, ctx.node.options if ctx.node else None) == VIRTUAL_MEDIA


def iso_path(settings: Settings, task_id: int) -> Path:
    return settings.media_dir / f"task-{task_id}.iso"


def media_url(settings: Settings, token: str) -> str:
    return f"{settings.effective_media_url}{MEDIA_PATH}/{token}/{ISO_NAME}"


def build_iso(ctx: TaskContext) -> str:
    """The task's boot ISO, built again each time (its command line carries the task's tokens)."""
    with ctx.database.session() as session:
        task = session.get_one(Task, ctx.task_id)
        image = session.get(Image, ctx.spec.os.image_id)
        if image is None or not image.kernel_path or not image.initrd_path:
            raise PermanentError("virtual media boots a Linux image's kernel and initrd; this task's image has none")
        files_token = ctx.vault.decrypt(task.files_token_encrypted) if task.files_token_encrypted else ""
        kernel_args = image_kernel_args(ctx.settings, image, files_token)
        kernel_path, initrd_path = image.kernel_path, image.initrd_path
    images = ctx.settings.effective_images_dir
    arguments = installer_arguments(ctx.task_id, kernel_args, ctx.callback_url, ctx.callback_token())
    out = iso_path(ctx.settings, ctx.task_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    signed = ctx.settings.signed_boot_dir
    uefi = all((signed / name).is_file() for name in (bootmedia.SIGNED_SHIM, bootmedia.SIGNED_CD_GRUB))
    bootmedia.linux_boot_iso(out, images / kernel_path, images / initrd_path, " ".join(arguments),
                             signed_boot_dir=signed if uefi else None)
    if not uefi:  # said in the step's log line: a UEFI machine would not start from it
        return (f"Boot ISO built ({out.stat().st_size >> 20} MiB), for BIOS only: Debian's signed shim and CD GRUB "
                f"are not in OCTOPROV_SIGNED_BOOT_DIR ({signed}), so a UEFI machine cannot start from it")
    return f"Boot ISO built for BIOS and UEFI, Secure Boot included ({out.stat().st_size >> 20} MiB)"


def mint_url(ctx: TaskContext) -> str:
    """A new token for the task's ISO (an earlier one stops working) and the URL the BMC fetches."""
    token = token_urlsafe(32)
    with ctx.database.session() as session:
        session.get_one(Task, ctx.task_id).media_token_hash = files_token_hash(token)
    return media_url(ctx.settings, token)


def forget(ctx: TaskContext) -> None:
    """The ISO deleted and its URL dead."""
    with ctx.database.session() as session:
        session.get_one(Task, ctx.task_id).media_token_hash = None
    with contextlib.suppress(FileNotFoundError):
        iso_path(ctx.settings, ctx.task_id).unlink()


def served_iso(settings: Settings, task: Task | None) -> Path | None:
    """The ISO a media URL's token names, while its task is active."""
    if task is None or task.status in states.FINAL:
        return None
    path = iso_path(settings, task.id)
    return path if path.is_file() else None
