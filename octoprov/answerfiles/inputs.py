"""Everything a task's answer files are made from, read once from the database and the vault.

Secrets are decrypted here and nowhere earlier: only to be rendered into the files the
machine fetches, never to be logged or stored again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.orm import Session

from octoprov import drivers
from octoprov.crypto import Vault
from octoprov.models import Image, Node, Task
from octoprov.paths import confined
from octoprov.settings import Settings


@dataclass(frozen=True)
class ImageInfo:
    id: int
    name: str
    os_type: str
    architecture: str  # x64 | arm64 | x86, as images are registered
    image_path: str  # relative to the images folder, POSIX
    image_index: int
    editions: tuple[dict, ...] = ()
    kernel_args: str | None = None

    def edition(self, index: int) -> dict | None:
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
    config: dict
    mac_address: str | None
    hardware: dict
    image: ImageInfo | None
    node_options: dict
    packs: tuple[PackInfo, ...] = ()
    secrets: dict = field(default_factory=dict, repr=False)
    callback_token: str = field(default="", repr=False)
    domain_join_blob: str | None = field(default=None, repr=False)

    @property
    def generation(self) -> int:
        return int((self.config.get("vm") or {}).get("generation") or 2)

    @property
    def firmware(self) -> str:
        """``uefi`` or ``bios``: a VM's generation, or what the machine's iPXE reported (``pcbios``)."""
        if self.target_type == "baremetal":
            return "bios" if self.hardware.get("platform") == "pcbios" else "uefi"
        return "uefi" if self.generation == 2 else "bios"

    @property
    def virtio(self) -> bool:
        """KVM machines get VirtIO disks and NICs unless their host is set to emulate SATA and e1000e."""
        return self.target_type == "kvm" and bool((self.node_options.get("kvm") or {}).get("virtioDrivers", True))

    @property
    def image_index(self) -> int:
        chosen = (self.config.get("os") or {}).get("imageIndex")
        return int(chosen or (self.image.image_index if self.image else 1))

    @classmethod
    def load(cls, session: Session, settings: Settings, vault: Vault, task: Task) -> TaskInputs:
        config = task.config or {}
        row = session.get(Image, (config.get("os") or {}).get("imageId"))
        image = None if row is None else ImageInfo(
            row.id, row.name, row.os_type, row.architecture or "x64", row.image_path, row.image_index or 1,
            tuple(row.editions or ()), row.kernel_args)
        node = session.get(Node, task.hypervisor_node_id) if task.hypervisor_node_id else None
        inputs = cls(
            task_id=task.id, hostname=task.hostname, target_type=task.target_type, config=config,
            mac_address=task.mac_address, hardware=dict(task.hardware or {}), image=image,
            node_options=dict((node.options if node else None) or {}),
            secrets=vault.decrypt_json(task.secrets_encrypted) or {},
            callback_token=vault.decrypt(task.callback_token_encrypted) if task.callback_token_encrypted else "",
            domain_join_blob=vault.decrypt(task.domain_join_blob) if task.domain_join_blob else None,
        )
        os_type = image.os_type if image else "windows"
        manufacturer, product = drivers.machine_model(task.target_type, inputs.generation, inputs.hardware)
        packs = []
        for pack in drivers.matching_packs(session, os_type, manufacturer, product):
            folder = _folder(settings.effective_drivers_dir, pack.driver_path)
            if folder is not None:
                packs.append(PackInfo(pack.name, pack.driver_path, tuple(drivers.inf_files(folder))))
        return replace(inputs, packs=tuple(packs))


def _folder(root: Path, relative: str) -> Path | None:
    try:
        folder = confined(root, relative)
    except ValueError:
        return None
    return folder if folder.is_dir() else None
