"""A KVM node's registration: its libvirt URI and the ``kvm`` object of its options."""

from __future__ import annotations

from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from octoprov.specs import Spec, report
from octoprov.targets.libvirt.connection import HOST_KEY, SSH_SCHEMES

LIBVIRT_SCHEMES = ("qemu", "qemu+ssh", "qemu+libssh", "qemu+libssh2", "qemu+tls", "qemu+tcp", "qemu+unix", "test")


class KvmOptions(Spec):
    """Where and how machines are created on a KVM host (the ``kvm`` object of a node of kind kvm)."""

    storage_pool: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f/]+$",
                                     description="Storage pool for the machines' volumes; default: the first "
                                                 "active pool")
    domain_type: Literal["kvm", "qemu"] = Field(
        default="kvm", description="kvm: hardware virtualisation; qemu: emulation, for hosts without it")
    virtio_drivers: bool = Field(
        default=True, description="VirtIO disks and NIC; false: SATA and e1000e, for installers without VirtIO "
                                  "drivers")
    host_key: str | None = Field(
        default=None, max_length=16384, pattern=HOST_KEY.pattern,
        description="qemu+ssh with a stored key: the host's SSH public key (e.g. the contents of "
                    "/etc/ssh/ssh_host_ed25519_key.pub); the connection is refused if the host shows another")
    boot_mode: Literal["pxe", "iso"] = Field(
        default="pxe", description="pxe: network boot through Octoprov's PXE services; iso: the Windows installation "
                                   "ISO (installIso) with an answer ISO beside it, no PXE needed, Secure Boot on "
                                   "from the first instruction (the media is Microsoft-signed)")
    install_iso: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f/]+$",
        description="iso mode: the installation ISO, a volume of the storage pool (virsh vol-upload)")

    @model_validator(mode="after")
    def _iso_mode_needs_an_iso(self) -> KvmOptions:
        if self.boot_mode == "iso" and not self.install_iso:
            report({"installIso": "required when bootMode is iso"})
        return self


def kvm_boot_options(node_options: dict[str, Any] | None) -> KvmOptions:
    return KvmOptions.model_validate((node_options or {}).get("kvm") or {}, by_alias=True, by_name=True)


def boots_install_media(node_options: dict[str, Any]) -> bool:
    """ISO mode: the VM boots the Windows installation media, which Microsoft signs (Secure Boot stays on)."""
    return kvm_boot_options(node_options).boot_mode == "iso"


class NodeRegistration(Protocol):
    endpoint: str
    private_key: str | None
    winrm: Any


def check_node(node: NodeRegistration) -> None:
    """A libvirt URI; an SSH key only where libvirt connects over SSH; no WinRM."""
    scheme = urlsplit(node.endpoint).scheme
    if scheme not in LIBVIRT_SCHEMES or "://" not in node.endpoint:
        report({"endpoint": "must be a libvirt URI (" + ", ".join(s + "://" for s in LIBVIRT_SCHEMES) + ")"})
    if node.winrm is not None:
        report({"winrm": "only for Hyper-V hosts"})
    if node.private_key is not None and scheme not in SSH_SCHEMES:
        report({"privateKey": "only for KVM hosts reached over qemu+ssh"})
    if node.private_key is not None and "PRIVATE KEY-----" not in node.private_key:
        report({"privateKey": "must be an OpenSSH or PEM private key (-----BEGIN ... PRIVATE KEY-----)"})
