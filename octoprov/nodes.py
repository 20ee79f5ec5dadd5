"""Hypervisor nodes: the Hyper-V and KVM hosts Octoprov creates machines on.

Credentials are encrypted at rest and never leave through a view; a view only says
whether credentials are set.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, GetJsonSchemaHandler, create_model, model_validator
from pydantic.json_schema import JsonSchemaValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.crypto import Vault
from octoprov.errors import Conflict, InvalidRequest, NotFound
from octoprov.logs import redactor
from octoprov.models import MAX_ID, Node, Site, Task
from octoprov.specs import Spec, Timestamp, View, report
from octoprov.targets import registry

HYPERVISOR = "hypervisor"


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


class HypervisorFields(Spec):
    """What every hypervisor node is registered with. ``HypervisorSpec`` adds one options object per node
    kind, from the target registry; each kind's target checks the endpoint and credentials."""

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
    site_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="The site it belongs to (GET "
                                "/provisioning/sites); none: the central site. Its tasks run at that site")

    @model_validator(mode="after")
    def _fits_kind(self) -> Self:
        for kind in registry.node_option_models():
            if getattr(self, kind, None) is not None and self.kind != kind:
                report({kind: f"only for nodes of kind {kind}"})
        target = registry.node_target(self.kind)
        if target is not None and target.check_node is not None:
            target.check_node(self)
        return self

    def options_of(self, kind: str) -> Spec | None:
        """The options object of node kind ``kind`` in this registration, if given."""
        found = getattr(self, kind, None)
        return found if isinstance(found, Spec) else None


HypervisorSpec = create_model(  # the fields above, then "<kind>": {...} for each node kind
    "HypervisorSpec", __base__=HypervisorFields, __module__=__name__,
    **{kind: (model | None, None) for kind, model in registry.node_option_models().items()},  # type: ignore[call-overload]
)


class HypervisorViewFields(View):
    id: int
    name: str
    kind: str
    endpoint: str | None
    username: str | None
    has_credentials: bool
    winrm: dict[str, Any] | None
    site_id: int | None = None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, node: Node) -> Self:
        options = node.options or {}
        return cls(
            id=node.id, name=node.name, kind=node.kind, endpoint=node.endpoint, username=node.username,
            has_credentials=node.credentials_encrypted is not None, winrm=options.get("winrm"), site_id=node.site_id,
            created_at=node.created_at, updated_at=node.updated_at,
            **{kind: options.get(kind) for kind in registry.node_option_models()},
        )


HypervisorView = create_model(  # a node as the API shows it: "<kind>": {...} for each node kind, as stored
    "HypervisorView", __base__=HypervisorViewFields, __module__=__name__,
    **{kind: (dict[str, Any] | None, None) for kind in registry.node_option_models()},  # type: ignore[call-overload]
)


def _apply(node: Node, spec: HypervisorFields, vault: Vault) -> None:
    node.name, node.kind, node.endpoint, node.username = spec.name, spec.kind, spec.endpoint, spec.username
    node.site_id = spec.site_id
    parts = [("winrm", spec.winrm), *((kind, spec.options_of(kind)) for kind in registry.node_option_models())]
    options = {name: sub.model_dump(by_alias=True) for name, sub in parts if sub}
    node.options = options or None
    secrets = {k: v for k, v in (("password", spec.password), ("privateKey", spec.private_key)) if v}
    redactor.register(*secrets.values())
    node.credentials_encrypted = vault.encrypt_json(secrets) if secrets else None


def check_site(session: Session, site_id: int | None) -> None:
    """A node's site exists: a 400 naming siteId otherwise."""
    if site_id is not None and session.get(Site, site_id) is None:
        raise InvalidRequest({"siteId": f"no site with id {site_id}"})


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


def register_hypervisor(session: Session, vault: Vault, spec: HypervisorFields) -> Node:
    check_site(session, spec.site_id)
    node = Node(role=HYPERVISOR)
    _apply(node, spec, vault)
    return add_node(session, node)


def update_hypervisor(session: Session, vault: Vault, node_id: int, spec: HypervisorFields) -> Node:
    """Replace a node's settings. Credentials left out of the request are kept as they were."""
    node = get_hypervisor(session, node_id)
    check_site(session, spec.site_id)
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


