"""Driver packs: folders of Windows drivers, matched to hardware by vendor and model regex."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from sqlalchemy.orm import Session

from octoprov.errors import InvalidRequest
from octoprov.lookup import fetch
from octoprov.models import DriverPack
from octoprov.paths import LIBRARY_PATH_PATTERN, confined, relative_name
from octoprov.specs import Spec, Timestamp, View


class DriverPackSpec(Spec):
    name: str = Field(min_length=1, max_length=255)
    vendor: str | None = Field(default=None, max_length=100)
    model_pattern: str | None = Field(
        default=None, max_length=255, description="Regular expression matched against the SMBIOS product name"
    )
    os_type: Literal["windows", "linux"]
    driver_path: str = Field(
        min_length=1, max_length=500, pattern=LIBRARY_PATH_PATTERN, description="Folder relative to the drivers folder"
    )

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


def add_driver_pack(session: Session, root: Path, spec: DriverPackSpec) -> DriverPack:
    try:
        folder = confined(root, spec.driver_path)
    except ValueError as exc:
        raise InvalidRequest({"driverPath": str(exc)}) from None
    if not folder.is_dir():
        raise InvalidRequest({"driverPath": f"no folder {spec.driver_path!r} in the drivers folder"})
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
