"""A Hyper-V node's registration: its WinRM endpoint, and how machines are booted on it (the ``hyperv``
object of a node of kind hyperv)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from octoprov.specs import Spec, report

WINDOWS_PATH = r"^[^\x00-\x1f\"*?<>|]+$"  # what NTFS and the Hyper-V cmdlets accept in a path
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


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


def boots_install_media(node_options: dict[str, Any]) -> bool:
    """ISO mode: the VM boots the Windows installation DVD, which Microsoft signs (Secure Boot stays on)."""
    return hyperv_options(node_options).boot_mode == "iso"


class NodeRegistration(Protocol):
    endpoint: str
    private_key: str | None
    winrm: Any


def check_node(node: NodeRegistration) -> None:
    """A host name or an http(s) WinRM URL; no SSH key; no certificate authentication yet."""
    if node.winrm is not None and node.winrm.transport == "certificate":
        report({("winrm", "transport"): "certificate authentication is not available yet; use ntlm, kerberos "
                                        "or credssp"})
    parts = urlsplit(node.endpoint if "://" in node.endpoint else "//" + node.endpoint)
    if "://" in node.endpoint and parts.scheme not in ("http", "https"):
        report({"endpoint": "must be a host name or an http(s) WinRM URL"})
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        host = None
    if not host or not (_HOST.match(host) or _is_ip(host)):
        report({"endpoint": "must be a host name or an http(s) WinRM URL"})
    if node.private_key is not None:
        report({"privateKey": "only for KVM hosts reached over qemu+ssh"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
