"""Node groups: named sets of machines (``SQL Servers``) that post-install adds new nodes to, so
policies and software can follow a machine by what it is rather than by its name.

Octoprov's own membership records are the source of truth; when an Octofleet API is configured,
the runner also adds the node to the group of the same name there (``octoprov.octofleet``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from octoprov.errors import Conflict, NotFound
from octoprov.lookup import fetch
from octoprov.models import Group, GroupMember, Node
from octoprov.packages import Description
from octoprov.references import active_post_install, save_unique
from octoprov.specs import Spec, Timestamp, View
from octoprov.validation import check_display_name


class GroupSpec(Spec):
    name: Annotated[str, AfterValidator(check_display_name)]
    description: Description | None = None


class GroupView(View):
    id: int
    name: str
    description: str | None
    created_at: Timestamp
    updated_at: Timestamp


class MemberView(View):
    """A member node: enough to recognise it; the node's own resource has the rest."""

    node_id: int
    name: str
    role: str
    hostname: str | None
    added_at: Timestamp

    @classmethod
    def of(cls, member: GroupMember) -> MemberView:
        node = member.node
        return cls(node_id=node.id, name=node.name, role=node.role, hostname=node.hostname,
                   added_at=member.added_at)


def group_query() -> Select[Group]:
    return select(Group).order_by(Group.id)


def register_group(session: Session, spec: GroupSpec) -> Group:
    group = Group(name=spec.name, description=spec.description)
    save_unique(session, group, "group")
    return group


def get_group(session: Session, group_id: int) -> Group:
    return fetch(session, Group, group_id, "group")


def update_group(session: Session, group_id: int, spec: GroupSpec) -> Group:
    """Rename or redescribe a group; its members stay."""
    group = get_group(session, group_id)
    group.name, group.description = spec.name, spec.description
    save_unique(session, group, "group")
    return group


def remove_group(session: Session, group_id: int) -> None:
    """Refused while an open task is to add its machine to the group; memberships go with it."""
    group = get_group(session, group_id)
    for task_id, post_install in active_post_install(session):
        if group_id in (post_install.get("addToGroups") or []):
            raise Conflict(f"group {group_id} is used by open task {task_id}")
    session.delete(group)


def add_member(session: Session, group_id: int, node_id: int) -> Group:
    """Make the node a member of the group; a member already stays as it was (so a retried
    post-install step is harmless). Returns the group, whose name Octofleet knows it by."""
    group = get_group(session, group_id)
    if session.get(Node, node_id) is None:
        raise NotFound(f"no node with id {node_id}")
    if session.get(GroupMember, (group_id, node_id)) is None:
        session.add(GroupMember(group_id=group_id, node_id=node_id))
        session.flush()
    return group


def remove_member(session: Session, group_id: int, node_id: int) -> None:
    get_group(session, group_id)
    member = session.get(GroupMember, (group_id, node_id))
    if member is None:
        raise NotFound(f"node {node_id} is not a member of group {group_id}")
    session.delete(member)


def member_query(group_id: int) -> Select[GroupMember]:
    """The group's members, longest-standing first."""
    return (select(GroupMember).where(GroupMember.group_id == group_id)
            .order_by(GroupMember.added_at, GroupMember.node_id))


def groups_of(session: Session, node_id: int) -> list[Group]:
    """The groups a node belongs to, by name."""
    return list(session.scalars(select(Group).join(GroupMember, GroupMember.group_id == Group.id)
                                .where(GroupMember.node_id == node_id).order_by(Group.name)))
