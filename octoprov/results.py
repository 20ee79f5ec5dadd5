"""What a task produces: a node record of the installed machine (role ``machine``) that outlives
the task, with the facts the machine reported about itself in its callbacks (addresses, SSH host
keys) and the ones Octoprov knows (MAC, OS, where it runs).

The SSH host keys a machine reports with its callback's token are the ones post-install pins, so a
host answering with another key later is refused rather than trusted. The token alone does not
prove where the machine is (its boot script carries it), so addresses and keys are kept only from a
report that came from one of the addresses it claims (docs/operations.md, "What a callback can claim").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, cast

from pydantic import Field
from sqlalchemy import Integer, Select, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, aliased

from octoprov.db import expire_loaded
from octoprov.models import Image, Node, Task
from octoprov.specs import Timestamp, View
from octoprov.states import TASKS

MACHINE = "machine"


class MachineFacts(View):
    """Reported by the machine itself: the addresses it has and its SSH server's keys."""

    addresses: list[str] = Field(default_factory=list)
    ssh_port: int = 22
    ssh_host_keys: list[str] = Field(default_factory=list)


class NodeView(View):
    id: int
    name: str
    os_type: str
    os_name: str | None
    hostname: str | None
    mac_addresses: list[str]
    ip_addresses: list[str]
    task_id: int | None = None
    hypervisor_node_id: int | None = None
    ssh_host_keys: list[str] = Field(default_factory=list)
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, node: Node) -> NodeView:
        options = node.options or {}
        return cls(id=node.id, name=node.name, os_type=node.kind, os_name=node.os_name, hostname=node.hostname,
                   mac_addresses=node.mac_addresses or [], ip_addresses=node.ip_addresses or [],
                   task_id=options.get("taskId"), hypervisor_node_id=options.get("hypervisorNodeId"),
                   ssh_host_keys=(options.get("ssh") or {}).get("hostKeys") or [],
                   created_at=node.created_at, updated_at=node.updated_at)


@dataclass(frozen=True)
class NodeRef:
    id: int
    name: str


NODES, IMAGES = cast(Table, Node.__table__), cast(Table, Image.__table__)


def _result_read() -> Select[Any]:
    """What deciding a task's node reads, in one statement: the task, the node it has (if any), the node that
    holds its host name (if any) and its image."""
    kept, named = aliased(NODES), aliased(NODES)
    task = TASKS
    return (select(task.c.hostname, task.c.mac_address, task.c.hypervisor_node_id, task.c.result_node_id,
                   kept.c.name.label("kept_name"), named.c.id.label("named_id"), named.c.role.label("named_role"),
                   IMAGES.c.os_type, IMAGES.c.name.label("image_name"))
            .select_from(task.outerjoin(kept, kept.c.id == task.c.result_node_id)
                         .outerjoin(named, named.c.name == task.c.hostname)
                         .outerjoin(IMAGES, IMAGES.c.id == bindparam("b_image", type_=Integer)))
            .where(task.c.id == bindparam("b_task", type_=Integer)))


_RESULT_READ = _result_read()


def ensure_result_node(session: Session, task_id: int, image_id: int | None) -> NodeRef:
    """The task's node, created on first need (``image_id``: the task's image, which says the OS). A machine
    installed again under the same host name is the same node, brought up to date; a name held by a hypervisor
    or bare-metal record gets the task id appended instead (node names are unique). Core statements: the step
    that ends every task reads one row and writes two, with no ORM objects; a copy of the task or node this
    session loaded reads them again."""
    connection = session.connection()
    row = connection.execute(_RESULT_READ, {"b_task": task_id, "b_image": image_id}).one()
    if row.result_node_id is not None:
        return NodeRef(row.result_node_id, row.kept_name)
    options: dict[str, Any] = {"taskId": task_id}
    if row.hypervisor_node_id is not None:
        options["hypervisorNodeId"] = row.hypervisor_node_id
    values = {"kind": row.os_type or "windows", "os_name": row.image_name, "hostname": row.hostname,
              "mac_addresses": [row.mac_address] if row.mac_address else [], "options": options, "ip_addresses": []}
    if row.named_id is not None and row.named_role == MACHINE:
        ref = NodeRef(row.named_id, row.hostname)
        connection.execute(update(NODES).where(NODES.c.id == ref.id).values(**values))
        expire_loaded(session, Node, ref.id)
    else:
        name = row.hostname if row.named_id is None else f"{row.hostname} (task {task_id})"
        ref = NodeRef(connection.execute(insert(NODES).values(name=name, role=MACHINE, **values)
                                         .returning(NODES.c.id)).scalar_one(), name)
    connection.execute(update(TASKS).where(TASKS.c.id == task_id).values(result_node_id=ref.id))
    expire_loaded(session, Task, task_id, ["result_node_id"])
    return ref


def result_node(session: Session, task: Task) -> Node:
    """The task's node (``ensure_result_node``) as an ORM object, for callers that change it further."""
    ref = ensure_result_node(session, task.id, ((task.config or {}).get("os") or {}).get("imageId"))
    return session.get_one(Node, ref.id)


def record_facts(session: Session, task_id: int, facts: MachineFacts, *, source: str | None) -> str | None:
    """Keep what the machine reported, a later report replacing the earlier one, but only when it came
    from one of the addresses it claims (``source``: where Octoprov saw it come from), that address
    first: post-install connects to the first address and pins the host keys, so a report from
    elsewhere (a token read off a boot script by another host) must not point it at another machine.
    Returns why a report's facts were not kept; None when kept or there were none. The task is loaded
    only to keep them: most reports carry none, and a callback reads the columns it needs without it."""
    if not (facts.addresses or facts.ssh_host_keys):
        return None
    seen = _address(source)
    claimed = list(dict.fromkeys(address for address in map(_address, facts.addresses) if address))
    if seen is None or seen not in claimed:
        return (f"came from {seen or 'an unknown address'}, which is not among the addresses it claims "
                f"({', '.join(claimed) or 'none'}): its addresses and SSH host keys are not stored")
    node = result_node(session, session.get_one(Task, task_id))
    node.ip_addresses = [seen, *(address for address in claimed if address != seen)]
    if facts.ssh_host_keys:
        node.options = {**(node.options or {}), "ssh": {"port": facts.ssh_port, "hostKeys": facts.ssh_host_keys}}
    return None


def _address(text: str | None) -> str | None:
    """An IP address in one spelling (an IPv4-mapped IPv6 address, as a dual-stack socket reports an
    IPv4 client, as IPv4), so a claim and a source compare equal; None for what is no IP address."""
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)
