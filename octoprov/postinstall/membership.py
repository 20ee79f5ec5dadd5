"""Where an installed machine belongs: Octoprov's groups, and, when one is configured, the
Octofleet endpoint-management service (the node, its groups, its package queue).

Octoprov's own records are the source of truth; Octofleet gets a copy. The node's Octofleet id is
kept on the node, so a repeated step registers nothing twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from octoprov import groups, octofleet
from octoprov.models import Task
from octoprov.packages import get_package
from octoprov.results import result_node

if TYPE_CHECKING:
    from octoprov.context import TaskContext


def add_to_groups(ctx: TaskContext) -> str:
    """The ``add_to_groups`` step: the task's node joins each group of ``postInstall.addToGroups``."""
    wanted = list(ctx.spec.post_install.add_to_groups)
    fleet = octofleet.client_from(ctx.settings)
    with ctx.database.session() as session:
        node = result_node(session, session.get_one(Task, ctx.task_id))
        names = [groups.add_member(session, group_id, node.id).name for group_id in wanted]
        node_id = node.id
    if fleet is not None:
        ref = _fleet_ref(ctx, fleet)
        for name in names:
            fleet.add_to_group(ref, name)
    where = " and in Octofleet" if fleet is not None else ""
    return f"Node {node_id} added to {', '.join(names)}{where}"


def register_with_octofleet(ctx: TaskContext) -> str | None:
    """At the end of a task: the node and its package queue in Octofleet; None without Octofleet."""
    fleet = octofleet.client_from(ctx.settings)
    if fleet is None:
        return None
    ref = _fleet_ref(ctx, fleet)
    with ctx.database.session() as session:
        runs = [(get_package(session, run.package_id).name, dict(run.parameters))
                for run in ctx.spec.post_install.run_packages]
    for name, parameters in runs:
        fleet.queue_package(ref, name, parameters)
    return f"registered in Octofleet as {ref}"


def _fleet_ref(ctx: TaskContext, fleet: octofleet.OctofleetClient) -> str:
    with ctx.database.session() as session:
        node = result_node(session, session.get_one(Task, ctx.task_id))
        known: str | None = (node.options or {}).get("octofleetId")  # as register_node returned it
        if known:
            return known
        hostname = cast(str, node.hostname)  # result_node gives a machine's node its task's host name
        os_name, macs, ips = node.os_name, node.mac_addresses or [], node.ip_addresses or []
    ref = fleet.register_node(hostname, os_name, macs, ips)
    with ctx.database.session() as session:
        node = result_node(session, session.get_one(Task, ctx.task_id))
        node.options = {**(node.options or {}), "octofleetId": ref}
    return ref
