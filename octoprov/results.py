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

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov.models import Image, Node, Task
from octoprov.specs import Timestamp, View

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


def result_node(session: Session, task: Task) -> Node:
    """The task's node, created on first need. A machine installed again under the same host name
    is the same node, brought up to date; a name held by a hypervisor or bare-metal record gets the
    task id appended instead (node names are unique)."""
    if task.result_node_id is not None:
        existing = session.get(Node, task.result_node_id)
        assert existing is not None  # result_node_id is a foreign key to it
        return existing
    node = session.scalar(select(Node).where(Node.name == task.hostname))
    if node is None or node.role != MACHINE:
        name = task.hostname if node is None else f"{task.hostname} (task {task.id})"
        node = Node(name=name, role=MACHINE, kind="windows")
        session.add(node)
    image = session.get(Image, ((task.config or {}).get("os") or {}).get("imageId"))
    node.kind = image.os_type if image is not None else "windows"
    node.os_name = image.name if image is not None else None
    node.hostname = task.hostname
    node.mac_addresses = [task.mac_address] if task.mac_address else []
    options = {"taskId": task.id}
    if task.hypervisor_node_id is not None:
        options["hypervisorNodeId"] = task.hypervisor_node_id
    node.options = options
    node.ip_addresses = []
    session.flush()
    task.result_node_id = node.id
    return node


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
