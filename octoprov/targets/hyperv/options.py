"""How machines are booted on a Hyper-V host (the ``hyperv`` object of a node of kind hyperv)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from octoprov.specs import Spec, report

WINDOWS_PATH = r"^[^\x00-\x1f\"*?<>|]+$"  # what NTFS and the Hyper-V cmdlets accept in a path


class HyperVOptions(Spec):
    boot_mode: Literal["pxe", "iso"] = Field(
        default="pxe", description="pxe: network boot through Octoprov's PXE services; iso: the installation ISO "
                                   "(installIso) with an answer ISO beside it, no PXE needed")
    install_iso: str | None = Field(
        default=None, min_length=4, max_length=500, pattern=WINDOWS_PATH,
        description=r"iso mode: the Windows installation ISO on the host, e.g. D:\ISO\WS2025.iso")

    @model_validator(mode="after")
    def _iso_mode_needs_an_iso(self) -> HyperVOptions:
        if self.boot_mode == "iso" and not self.install_iso:
            report({"installIso": "required when bootMode is iso"})
        if self.install_iso and not self.install_iso.lower().endswith(".iso"):
            report({"installIso": "must name an .iso file"})
        return self


def hyperv_options(node_options: dict[str, Any] | None) -> HyperVOptions:
    return HyperVOptions.model_validate((node_options or {}).get("hyperv") or {}, by_alias=True, by_name=True)
