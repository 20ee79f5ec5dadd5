"""The WinPE start script (startnet.cmd) of a task and the winpeshl.ini that runs it.

WinPE installs Windows itself, without setup.exe: mount the image share, partition, apply the
WIM with DISM, add drivers, write the boot files, reboot (the spec's "Finale startnet.cmd
Struktur"). cmd has no reliable quoting, so the script carries only checked values (see
``render``); everything free-form (pack names, the answer file) stays out of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from octoprov.answerfiles.inputs import TaskInputs
from octoprov.answerfiles.render import CmdText, UnsafeValue, cmd_quoted, cmd_word, render_cmd
from octoprov.answerfiles.share import Endpoints, WinpeShare, winpe_virtio_dir
from octoprov.errors import InvalidRequest
from octoprov.settings import Settings

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,200}$")


def windows_path(relative: str) -> str:
    """A library path (``windows/2025.wim``) as cmd writes it below a drive: ``windows\\2025.wim``."""
    return "\\".join(part for part in PurePosixPath(relative).parts if part not in ("", "."))


@dataclass(frozen=True)
class DriverPack:
    folder: str  # Y:\dell-r750
    infs: tuple[str, ...]  # Y:\dell-r750\storage\raid.inf


@dataclass(frozen=True)
class Startnet:
    task_id: int
    hostname: str
    token: str = field(repr=False)
    callback_url: str
    firmware: Literal["uefi", "bios"]
    server: str
    images_share: str
    drivers_share: str
    wim: str  # below the image share, backslashes
    image_index: int
    virtio: bool = False
    virtio_dir: str = "X:\\Windows\\System32\\drivers"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    packs: tuple[DriverPack, ...] = ()
    power_off: bool = False  # shut down instead of rebooting: Octoprov turns Secure Boot on, then starts it

    def __post_init__(self) -> None:
        if not _TOKEN.match(self.token):
            raise UnsafeValue("the task's callback token cannot be written into a cmd script")
        if self.firmware not in ("uefi", "bios"):
            raise InvalidRequest({"vm.generation": f"unknown firmware {self.firmware}"})
        if not (isinstance(self.image_index, int) and self.image_index >= 1):
            raise InvalidRequest({"os.imageIndex": "must be a whole number from 1"})
        try:
            cmd_word(self.hostname)
        except UnsafeValue:
            raise InvalidRequest({"hostname": "may contain only letters, digits and hyphens"}) from None
        try:
            cmd_quoted(self.wim)
        except UnsafeValue:
            raise InvalidRequest({"os.imageId": "the image's path cannot be written into a cmd script"}) from None

    @property
    def guest(self) -> bool:
        return self.user is None

    @property
    def credentials(self) -> CmdText:
        """``net use`` arguments after the share: the account's, or the guest's empty password."""
        if self.user is None:
            return CmdText('"" /user:guest')
        return CmdText(f'"{cmd_quoted(self.password or "")}" /user:{cmd_word(self.user)}')

    def render(self) -> str:
        return render_cmd("windows/startnet.cmd.j2", s=self)


def startnet_for(inputs: TaskInputs, settings: Settings) -> Startnet:
    if inputs.image is None:
        raise InvalidRequest({"os.imageId": "the task's image no longer exists"})
    share = WinpeShare.from_settings(settings)
    packs = tuple(
        DriverPack(f"Y:\\{windows_path(pack.path)}",
                   tuple(f"Y:\\{windows_path(pack.path)}\\{windows_path(inf)}" for inf in pack.infs))
        for pack in inputs.packs
    )
    return Startnet(
        task_id=inputs.task_id, hostname=inputs.hostname, token=inputs.callback_token,
        callback_url=Endpoints.from_settings(settings).callback, firmware=inputs.firmware, server=share.server,
        images_share=share.images, drivers_share=share.drivers, wim=windows_path(inputs.image.image_path),
        image_index=inputs.image_index, virtio=inputs.virtio,
        virtio_dir=winpe_virtio_dir(settings) if inputs.virtio else "X:\\Windows\\System32\\drivers",
        user=share.user, password=share.password, packs=packs,
        power_off=inputs.secure_boot_after_install,
    )


def winpeshl() -> str:
    return render_cmd("windows/winpeshl.ini.j2")
