"""Driver packs: folders of Windows drivers, matched to hardware by vendor and model regex.

A pack goes into WinPE (``drvload`` of each ``.inf``, so that storage and network controllers
work during the installation) and into the installed image (``dism /add-driver /recurse``), so
that Windows still finds its boot disk after the reboot. Its ``.inf`` files are listed when it
is registered (Windows packs): a folder without any would silently inject nothing, and file names
outside the library character set could not be written into the WinPE start script.

Machines are matched by what iPXE read from their SMBIOS (manufacturer, product), or for a VM
by what its hypervisor reports as the model, since every VM of a kind reports the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from pydantic import Field, field_validator
from sqlalchemy import Connection, Row, Table, bindparam, select
from sqlalchemy.orm import Session

from octoprov.errors import InvalidRequest
from octoprov.lookup import fetch
from octoprov.models import DriverPack
from octoprov.paths import LIBRARY_PATH_PATTERN, confined, relative_name
from octoprov.specs import Spec, Timestamp, View
from octoprov.targets import registry
from octoprov.validation import check_display_name

_LIBRARY_PATH = re.compile(LIBRARY_PATH_PATTERN)

# SMBIOS manufacturer and product every VM of a kind reports (KVM: QEMU's, by machine type)
KVM_MODELS = {1: ("QEMU", "Standard PC (i440FX + PIIX, 1996)"), 2: ("QEMU", "Standard PC (Q35 + ICH9, 2009)")}
HYPERV_MODEL = ("Microsoft Corporation", "Virtual Machine")
# manufacturer strings firmware uses for a vendor under another name
VENDOR_ALIASES = {"hp": ("hewlett-packard",), "hpe": ("hewlett packard enterprise",)}


class DriverPackSpec(Spec):
    name: str = Field(min_length=1, max_length=255)
    vendor: str | None = Field(
        default=None, max_length=100,
        description="Matched against the SMBIOS manufacturer, case-insensitively: Dell matches 'Dell Inc.'",
    )
    model_pattern: str | None = Field(
        default=None, max_length=255,
        description="Regular expression searched for in the SMBIOS product name (add (?i) to ignore case)",
    )
    os_type: Literal["windows", "linux"]
    driver_path: str = Field(
        min_length=1, max_length=500, pattern=LIBRARY_PATH_PATTERN, description="Folder relative to the drivers folder"
    )

    @field_validator("name", "vendor")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return None if value is None else check_display_name(value)

    @field_validator("model_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class DriverPackView(View):
    id: int
    name: str
    vendor: str | None
    model_pattern: str | None
    os_type: str
    driver_path: str
    created_at: Timestamp
    inf_count: int | None = Field(default=None, description="How many .inf files the folder holds now")
    inf_files: list[str] = Field(default_factory=list, description="The .inf files, relative to the pack's folder")


def inf_files(folder: Path) -> list[str]:
    """The ``.inf`` files below ``folder`` (any case), as POSIX paths relative to it, sorted."""
    found = [path for path in folder.rglob("*") if path.suffix.lower() == ".inf" and path.is_file()]
    return sorted(path.relative_to(folder).as_posix() for path in found)


def pack_view(pack: DriverPack, root: Path) -> DriverPackView:
    """The view with the folder's ``.inf`` files as they are now (None when the folder is gone)."""
    view = DriverPackView.of(pack)
    try:
        folder = confined(root, pack.driver_path)
    except ValueError:
        return view
    if not folder.is_dir():
        return view
    files = inf_files(folder)
    return view.model_copy(update={"inf_files": files, "inf_count": len(files)})


class PackViews:
    """``of`` for list pages: each pack's view with its ``.inf`` files."""

    def __init__(self, root: Path):
        self.root = root

    def of(self, pack: DriverPack) -> DriverPackView:
        return pack_view(pack, self.root)


def add_driver_pack(session: Session, root: Path, spec: DriverPackSpec) -> DriverPack:
    try:
        folder = confined(root, spec.driver_path)
    except ValueError as exc:
        raise InvalidRequest({"driverPath": str(exc)}) from None
    if not folder.is_dir():
        raise InvalidRequest({"driverPath": f"no folder {spec.driver_path!r} in the drivers folder"})
    files = inf_files(folder) if spec.os_type == "windows" else []
    if spec.os_type == "windows" and not files:
        raise InvalidRequest({"driverPath": f"the folder {spec.driver_path!r} holds no .inf file: nothing to inject"})
    unusable = [name for name in files if not _LIBRARY_PATH.match(name)]
    if unusable:
        raise InvalidRequest({"driverPath": f"{unusable[0]!r} cannot be named in a WinPE script: rename it to "
                                            "letters, digits, space and ._()+-/ only"})
    pack = DriverPack(
        name=spec.name, vendor=spec.vendor, model_pattern=spec.model_pattern, os_type=spec.os_type,
        driver_path=relative_name(root, folder),
    )
    session.add(pack)
    session.flush()
    return pack


def get_driver_pack(session: Session, pack_id: int) -> DriverPack:
    return fetch(session, DriverPack, pack_id, "driver pack")


def delete_driver_pack(session: Session, pack_id: int) -> None:
    session.delete(get_driver_pack(session, pack_id))


def _vendor_matches(vendor: str | None, manufacturer: str) -> bool:
    """``Dell`` matches ``Dell Inc.`` and ``DELL``, but ``HP`` does not match ``HPE``."""
    if not vendor:
        return True
    wanted, seen = vendor.strip().casefold(), manufacturer.strip().casefold()
    for name in (wanted, *VENDOR_ALIASES.get(wanted, ())):
        if seen == name or (seen.startswith(name) and not seen[len(name)].isalnum()):
            return True
    return False


class PackTarget(Protocol):
    """What matching reads of a pack: a stored pack or a row of ``matching_packs``' read will do."""

    @property
    def vendor(self) -> str | None: ...
    @property
    def model_pattern(self) -> str | None: ...


def pack_matches(pack: PackTarget, manufacturer: str | None, product: str | None) -> bool:
    """A pack without vendor or pattern matches every machine; with them, only machines whose
    SMBIOS strings are known and fit."""
    if pack.vendor and (not manufacturer or not _vendor_matches(pack.vendor, manufacturer)):
        return False
    if pack.model_pattern:
        if not product:
            return False
        return re.search(pack.model_pattern, product) is not None
    return True


def machine_model(target_type: str, generation: int, hardware: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(manufacturer, product) the machine reported to iPXE, else what a VM of its kind reports."""
    hardware = hardware or {}
    if hardware.get("manufacturer") or hardware.get("product"):
        return hardware.get("manufacturer"), hardware.get("product")
    target = registry.find(target_type)
    if target is None or target.hardware_model is None:
        return None, None
    return target.hardware_model(generation)


def kvm_model(generation: int) -> tuple[str | None, str | None]:
    """What a KVM (QEMU) VM's SMBIOS says, by machine type: i440FX for generation 1, Q35 for 2."""
    return KVM_MODELS.get(generation, KVM_MODELS[2])


def hyperv_model(generation: int) -> tuple[str | None, str | None]:
    return HYPERV_MODEL


_PACKS = cast(Table, DriverPack.__table__)
# built once, Core rows: every answer file asks, and building and loading ORM objects cost more than the read
_PACKS_OF_OS = (select(_PACKS.c.name, _PACKS.c.vendor, _PACKS.c.model_pattern, _PACKS.c.driver_path)
                .where(_PACKS.c.os_type == bindparam("os_type")).order_by(_PACKS.c.id))


def matching_packs(connection: Connection, os_type: str, manufacturer: str | None,
                   product: str | None) -> list[Row[str, str | None, str | None, str]]:
    """The packs for ``os_type`` that fit the machine, oldest first (name, vendor, model_pattern, driver_path)."""
    packs = connection.execute(_PACKS_OF_OS, {"os_type": os_type})
    return [pack for pack in packs if pack_matches(pack, manufacturer, product)]
