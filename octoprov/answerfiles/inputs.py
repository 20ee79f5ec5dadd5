"""Everything a task's answer files are made from: the task's context, and what it lacks.

The request comes typed, secrets included, from the task context (``load_context``); only what
the context does not carry is read here: the hardware the machine reported, the callback token,
the offline-join blob, the image's editions and the matching driver packs. Secrets are rendered
only into the files the machine fetches, never logged or stored again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.orm import Session

from octoprov import drivers
from octoprov.context import TaskContext, load_context
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.models import Image, Task
from octoprov.paths import confined
from octoprov.settings import Settings
from octoprov.targets import registry
from octoprov.targets.registry import TargetType
from octoprov.taskspec import TaskSpec


@dataclass(frozen=True)
class ImageInfo:
    id: int
    name: str
    os_type: str
    architecture: str  # x64 | arm64 | x86, as images are registered
    image_path: str  # relative to the images folder, POSIX
    image_index: int
    editions: tuple[dict[str, Any], ...] = ()
    kernel_args: str | None = None
    signed_kernel: bool = True

    def edition(self, index: int) -> dict[str, Any] | None:
        return next((edition for edition in self.editions if edition.get("index") == index), None)


@dataclass(frozen=True)
class PackInfo:
    """A matched driver pack: its folder (relative to the drivers folder) and its ``.inf`` files."""

    name: str
    path: str
    infs: tuple[str, ...]


@dataclass(frozen=True)
class TaskInputs:
    task_id: int
    hostname: str
    target_type: str
    spec: TaskSpec  # the validated request, secrets included (they are repr=False)
    mac_address: str | None
    hardware: dict[str, Any]
    image: ImageInfo | None
    node_options: dict[str, Any]
    packs: tuple[PackInfo, ...] = ()
    callback_token: str = field(default="", repr=False)
    domain_join_blob: str | None = field(default=None, repr=False)
    secure_boot_after_install: bool = False  # the context's: the installer powers off, not reboots

    @property
    def target(self) -> TargetType:
        """The target type's declaration: what it makes and which drivers its VMs need."""
        return registry.get(self.target_type)

    @property
    def generation(self) -> int:
        """The VM's generation; a machine target has no ``vm`` section and counts as generation 2."""
        vm = self.spec.vm
        return vm.generation if vm is not None and self.target.makes_vms else 2

    @property
    def firmware(self) -> Literal["uefi", "bios"]:
        """``uefi`` or ``bios``: a VM's generation, or what the machine's iPXE reported (``pcbios``)."""
        if not self.target.makes_vms:
            return "bios" if self.hardware.get("platform") == "pcbios" else "uefi"
        return "uefi" if self.generation == 2 else "bios"

    @property
    def virtio(self) -> bool:
        """VirtIO disks and NICs, as the target decides from its node's options (KVM unless set to emulate)."""
        virtio = self.target.virtio
        return virtio is not None and virtio(self.node_options)

    @property
    def image_index(self) -> int:
        return self.spec.os.image_index or (self.image.image_index if self.image else 1)

    @classmethod
    def from_context(cls, connection: Connection, ctx: TaskContext) -> TaskInputs:
        """The context's request and node, with what only the answer files need read on ``connection``."""
        row = connection.execute(_TASK_AND_IMAGE, {"task_id": ctx.task_id, "image_id": ctx.spec.os.image_id}).one()
        image = None if row.id is None else ImageInfo(
            row.id, row.name, row.os_type, row.architecture or "x64", row.image_path, row.image_index or 1,
            tuple(row.editions or ()), row.kernel_args, row.signed_kernel)
        inputs = cls(
            task_id=ctx.task_id, hostname=ctx.hostname, target_type=ctx.target_type, spec=ctx.spec,
            mac_address=ctx.mac_address, hardware=_hardware(row.hardware, ctx), image=image,
            node_options=dict(ctx.node.options or {}) if ctx.node else {},
            callback_token=ctx.callback_token(),
            domain_join_blob=ctx.vault.decrypt(row.domain_join_blob) if row.domain_join_blob else None,
            secure_boot_after_install=ctx.secure_boot_after_install,
        )
        os_type = image.os_type if image else "windows"
        manufacturer, product = drivers.machine_model(ctx.target_type, inputs.generation, inputs.hardware)
        packs = []
        for pack in drivers.matching_packs(connection, os_type, manufacturer, product):
            folder = _folder(ctx.settings.effective_drivers_dir, pack.driver_path)
            if folder is not None:
                packs.append(PackInfo(pack.name, pack.driver_path, tuple(drivers.inf_files(folder))))
        return replace(inputs, packs=tuple(packs))

    @classmethod
    def load(cls, session: Session, settings: Settings, vault: Vault, task: Task) -> TaskInputs:
        """For callers holding a session but no context: the task's context, read in that session."""
        ctx = load_context(session, task.id, settings, _OpenSession(session), vault)
        return cls.from_context(session.connection(), ctx)


_TASKS, _IMAGES = cast(Table, Task.__table__), cast(Table, Image.__table__)
# Built once, one read: what the task's answer files need beyond its context (the hardware its machine reported,
# the offline-join blob), with the image's ImageInfo columns (all None when the task names no image).
_TASK_AND_IMAGE = (
    select(_TASKS.c.hardware, _TASKS.c.domain_join_blob, *(_IMAGES.c[column.name] for column in fields(ImageInfo)))
    .select_from(_TASKS.outerjoin(_IMAGES, _IMAGES.c.id == bindparam("image_id")))
    .where(_TASKS.c.id == bindparam("task_id"))
)


class _OpenSession(Database):
    """The caller's open session standing in for the context's Database: ``load`` reads the context
    once, inside that session, so it needs no engine or connection of its own."""

    def __init__(self, session: Session) -> None:  # no engine: nothing to open or dispose
        self._open = session

    @contextmanager
    def session(self) -> Iterator[Session]:
        yield self._open


def _folder(root: Path, relative: str) -> Path | None:
    try:
        folder = confined(root, relative)
    except ValueError:
        return None
    return folder if folder.is_dir() else None


def _hardware(reported: dict[str, Any] | None, ctx: TaskContext) -> dict[str, Any]:
    """What the machine's firmware reported when it booted for this task, over what its BMC said when it
    was inspected: the answer files of a machine that never network-boots (virtual media) still get
    the driver packs of its model."""
    inspected = ((ctx.node.options or {}).get("hardware") or {}) if ctx.node else {}  # bare metal's machine
    known = {key: inspected[key] for key in ("manufacturer", "product") if inspected.get(key)}
    return {**known, **(reported or {})}
