"""Hypervisor nodes: the Hyper-V and KVM hosts Octoprov creates machines on.

Credentials are encrypted at rest and never leave through a view; a view only says
whether credentials are set.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.crypto import Vault
from octoprov.errors import Conflict, InvalidRequest, NotFound
from octoprov.logs import redactor
from octoprov.models import Node, Task
from octoprov.specs import Spec, Timestamp, View, report
from octoprov.targets import registry
from octoprov.targets.fake import FakeOptions
from octoprov.targets.hyperv.options import HyperVOptions
from octoprov.targets.libvirt.connection import HOST_KEY, SSH_SCHEMES

HYPERVISOR = "hypervisor"
LIBVIRT_SCHEMES = ("qemu", "qemu+ssh", "qemu+libssh", "qemu+libssh2", "qemu+tls", "qemu+tcp", "qemu+unix", "test")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def _known_kind(kind: str) -> str:
    if kind not in registry.node_kinds():
        raise ValueError(f"must be one of {', '.join(registry.node_kinds())}")
    return kind


class _NodeKindSchema:
    """The OpenAPI enum of a node's ``kind``: the kinds the registered VM targets run on."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["enum"] = list(registry.node_kinds())
        return schema


NodeKind = Annotated[str, AfterValidator(_known_kind), _NodeKindSchema()]


class WinRmOptions(Spec):
    """How a Hyper-V host is reached over WinRM."""

    transport: Literal["ntlm", "kerberos", "credssp", "certificate"] = "ntlm"
    ssl: bool = True
    port: int | None = Field(default=None, ge=1, le=65535)
    validate_certificate: bool = True


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


class HypervisorSpec(Spec):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")
    kind: NodeKind
    endpoint: str = Field(
        min_length=1, max_length=500,
        description="Hyper-V: host name or https URL of WinRM. KVM: libvirt URI such as qemu+ssh://user@host/system",
    )
    username: str | None = Field(default=None, min_length=1, max_length=255)
    password: str | None = Field(default=None, min_length=1, max_length=1024, description="Stored encrypted")
    private_key: str | None = Field(
        default=None, min_length=1, max_length=16384, description="SSH key for qemu+ssh, stored encrypted"
    )
    winrm: WinRmOptions | None = None
    hyperv: HyperVOptions | None = None
    kvm: KvmOptions | None = None
    fake: FakeOptions | None = None

    @model_validator(mode="after")
    def _options_fit_kind(self) -> Self:
        if self.fake is not None and self.kind != "fake":
            report({"fake": "only for nodes of kind fake"})
        if self.kvm is not None and self.kind != "kvm":
            report({"kvm": "only for nodes of kind kvm"})
        if self.hyperv is not None and self.kind != "hyperv":
            report({"hyperv": "only for nodes of kind hyperv"})
        if self.kind == "hyperv" and self.winrm is not None and self.winrm.transport == "certificate":
            report({("winrm", "transport"): "certificate authentication is not available yet; use ntlm, kerberos "
                                            "or credssp"})
        return self

    @model_validator(mode="after")
    def _endpoint_fits_kind(self) -> Self:
        if self.kind == "fake":
            if not self.endpoint.startswith("fake://"):
                report({"endpoint": "a fake node's endpoint is fake://<anything>"})
            return self
        if self.kind == "kvm":
            scheme = urlsplit(self.endpoint).scheme
            if scheme not in LIBVIRT_SCHEMES or "://" not in self.endpoint:
                report({"endpoint": "must be a libvirt URI (" + ", ".join(
                    s + "://" for s in LIBVIRT_SCHEMES) + ")"})
            if self.winrm is not None:
                report({"winrm": "only for Hyper-V hosts"})
            if self.private_key is not None and scheme not in SSH_SCHEMES:
                report({"privateKey": "only for KVM hosts reached over qemu+ssh"})
            if self.private_key is not None and "PRIVATE KEY-----" not in self.private_key:
                report({"privateKey": "must be an OpenSSH or PEM private key (-----BEGIN ... PRIVATE KEY-----)"})
        else:
            parts = urlsplit(self.endpoint if "://" in self.endpoint else "//" + self.endpoint)
            if "://" in self.endpoint and parts.scheme not in ("http", "https"):
                report({"endpoint": "must be a host name or an http(s) WinRM URL"})
            try:
                host = parts.hostname
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                host = None
            if not host or not (_HOST.match(host) or _is_ip(host)):
                report({"endpoint": "must be a host name or an http(s) WinRM URL"})
            if self.private_key is not None:
                report({"privateKey": "only for KVM hosts reached over qemu+ssh"})
        return self


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HypervisorView(View):
    id: int
    name: str
    kind: str
    endpoint: str | None
    username: str | None
    has_credentials: bool
    winrm: dict[str, Any] | None
    hyperv: dict[str, Any] | None = None
    kvm: dict[str, Any] | None = None
    fake: dict[str, Any] | None = None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, node: Node) -> HypervisorView:
        return cls(
            id=node.id, name=node.name, kind=node.kind, endpoint=node.endpoint, username=node.username,
            has_credentials=node.credentials_encrypted is not None, winrm=(node.options or {}).get("winrm"),
            hyperv=(node.options or {}).get("hyperv"), kvm=(node.options or {}).get("kvm"),
            fake=(node.options or {}).get("fake"),
            created_at=node.created_at, updated_at=node.updated_at,
        )


def _apply(node: Node, spec: HypervisorSpec, vault: Vault) -> None:
    node.name, node.kind, node.endpoint, node.username = spec.name, spec.kind, spec.endpoint, spec.username
    parts = (("winrm", spec.winrm), ("hyperv", spec.hyperv), ("kvm", spec.kvm), ("fake", spec.fake))
    options = {name: sub.model_dump(by_alias=True) for name, sub in parts if sub}
    node.options = options or None
    secrets = {k: v for k, v in (("password", spec.password), ("privateKey", spec.private_key)) if v}
    redactor.register(*secrets.values())
    node.credentials_encrypted = vault.encrypt_json(secrets) if secrets else None


def flush_named(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"name: a node called {name!r} exists already") from None


def name_taken(session: Session, name: str, other_than: int | None = None) -> bool:
    query = select(Node.id).where(Node.name == name)
    if other_than is not None:
        query = query.where(Node.id != other_than)
    return session.scalar(query) is not None


def add_node(session: Session, node: Node) -> Node:
    """Store a new node; names are unique across hypervisors, bare-metal machines and installed nodes."""
    if name_taken(session, node.name):
        raise Conflict(f"name: a node called {node.name!r} exists already")
    session.add(node)
    flush_named(session, node.name)
    return node


def register_hypervisor(session: Session, vault: Vault, spec: HypervisorSpec) -> Node:
    node = Node(role=HYPERVISOR)
    _apply(node, spec, vault)
    return add_node(session, node)


def update_hypervisor(session: Session, vault: Vault, node_id: int, spec: HypervisorSpec) -> Node:
    """Replace a node's settings. Credentials left out of the request are kept as they were."""
    node = get_hypervisor(session, node_id)
    if spec.kind != node.kind and _open_tasks(session, node_id):
        raise InvalidRequest({"kind": "cannot change while tasks on this node are open"})
    if name_taken(session, spec.name, other_than=node_id):
        raise Conflict(f"name: a node called {spec.name!r} exists already")
    kept = vault.decrypt_json(node.credentials_encrypted) or {}
    merged = spec.model_copy(update={
        "password": spec.password or kept.get("password"),
        "private_key": spec.private_key or kept.get("privateKey"),
    })
    _apply(node, merged, vault)
    flush_named(session, spec.name)
    return node


def _open_tasks(session: Session, node_id: int) -> list[int]:
    return list(session.scalars(
        select(Task.id).where(Task.hypervisor_node_id == node_id, Task.status.in_(states.ACTIVE))
    ))


def get_node(session: Session, node_id: int, role: str, what: str) -> Node:
    """The node with that id and role; nodes of other roles share the id space and are not found here."""
    node = session.get(Node, node_id)
    if node is None or node.role != role:
        raise NotFound(f"no {what} with id {node_id}")
    return node


def get_hypervisor(session: Session, node_id: int) -> Node:
    return get_node(session, node_id, HYPERVISOR, "hypervisor node")


def remove_hypervisor(session: Session, node_id: int) -> None:
    """Remove a node; refused while a task references it (tasks keep their history)."""
    node = get_hypervisor(session, node_id)
    used = session.scalar(select(Task.id).where(Task.hypervisor_node_id == node_id).limit(1))
    if used is not None:
        raise Conflict(f"node {node_id} is referenced by task {used}")
    session.delete(node)


