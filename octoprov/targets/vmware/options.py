"""A vSphere node's registration: the SDK URL of a vCenter or ESXi host, a user and password (stored
encrypted like every node credential), how its certificate is trusted, and where machines go (the
``vsphere`` object of a node of kind vsphere)."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from octoprov.specs import Spec, report

NAME = r"^[^\x00-\x1f/]+$"  # an inventory name: no control characters, no slash (vSphere escapes it as %2f)
THUMBPRINT_HEX = 64  # SHA-256


class VsphereOptions(Spec):
    """Where a task's VM goes; every name defaults to the first of its kind the node offers."""

    datacenter: str | None = Field(default=None, min_length=1, max_length=80, pattern=NAME,
                                   description="Datacenter; default: the first")
    compute_resource: str | None = Field(default=None, min_length=1, max_length=80, pattern=NAME,
                                         description="Cluster or standalone host; default: the datacenter's first")
    datastore: str | None = Field(default=None, min_length=1, max_length=80, pattern=NAME,
                                  description="Datastore for the VM and its disks; default: the compute resource's "
                                              "datastore with the most free space")
    guest_id: str | None = Field(default=None, min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_]+$",
                                 description="vSphere guest OS identifier; default: windows9Server64Guest for "
                                             "Windows, otherLinux64Guest for Linux")
    verify_certificate: bool = Field(default=True, description="Check the certificate against the worker's "
                                                               "trusted CAs and the host name")
    thumbprint: str | None = Field(default=None, min_length=THUMBPRINT_HEX, max_length=THUMBPRINT_HEX * 3,
                                   description="The SHA-256 thumbprint of the node's certificate (hex, colons "
                                               "allowed): pinned, it replaces the CA check")

    @field_validator("thumbprint")
    @classmethod
    def _sha256_hex(cls, value: str | None) -> str | None:
        """Stored as 64 lower-case hex digits, whatever separators vCenter's UI showed."""
        if value is None:
            return None
        digits = value.replace(":", "").replace(" ", "").lower()
        if len(digits) != THUMBPRINT_HEX or any(c not in "0123456789abcdef" for c in digits):
            raise ValueError("must be a SHA-256 thumbprint: 64 hex digits, colons allowed")
        return digits


def vsphere_options(node_options: dict[str, Any] | None) -> VsphereOptions:
    return VsphereOptions.model_validate((node_options or {}).get("vsphere") or {}, by_alias=True, by_name=True)


class NodeRegistration(Protocol):
    endpoint: str
    username: str | None
    password: str | None
    private_key: str | None
    winrm: Any


def check_node(node: NodeRegistration) -> None:
    """An https SDK URL (``https://vcenter.example.com/sdk``) or a host name; a user; no SSH key, no WinRM.
    The password may be left out of an update, which keeps the stored one."""
    if "://" in node.endpoint:
        parts = urlsplit(node.endpoint)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
            host = parts.hostname
        except ValueError:
            host = None
        if parts.scheme != "https" or not host or parts.query or parts.fragment or parts.username:
            report({"endpoint": "must be a host name or an https SDK URL such as https://vcenter.example.com/sdk"})
    elif not node.endpoint.strip() or any(c in node.endpoint for c in "/@?# "):
        report({"endpoint": "must be a host name or an https SDK URL such as https://vcenter.example.com/sdk"})
    if not node.username:
        report({"username": "required for a vSphere node"})
    if node.private_key is not None:
        report({"privateKey": "only for KVM hosts reached over qemu+ssh"})
    if node.winrm is not None:
        report({"winrm": "only for Hyper-V hosts"})
