"""/provisioning/hypervisors: Hyper-V and KVM hosts, with their networks and storage."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace
from sqlalchemy import select

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import choice_arg, json_body
from api.resources.base import ManagementResource
from api.runtime import runtime, session_scope
from octoprov import nodes
from octoprov.context import node_info
from octoprov.models import MAX_ID, Node
from octoprov.pages import paginate
from octoprov.roles import Role
from octoprov.specs import parse
from octoprov.targets import inventory_for, registry
from octoprov.targets.base import InventoryInterface, NetworkView, StorageView

ns: DocNamespace = Namespace("hypervisors", path="/provisioning/hypervisors", description="Hyper-V and KVM hosts")
spec_model = schema_model(ns, nodes.HypervisorSpec)
view = view_model(ns, nodes.HypervisorView)
page = page_model(ns, nodes.HypervisorView)
networks_model = ns.schema_model("NetworkList", {"type": "array", "items": view_model(ns, NetworkView).__schema__})
storage_model = ns.schema_model("StorageList", {"type": "array", "items": view_model(ns, StorageView).__schema__})


@ns.route("")
class HypervisorList(ManagementResource):
    @ns.doc(params={**PAGE_PARAMS, "kind": {"in": "query", "type": "string", "enum": list(registry.node_kinds())}})
    @ns.response(200, "Hypervisor nodes", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List hypervisor nodes."""
        number, size = page_args()
        kind = choice_arg("kind", registry.node_kinds())
        query = select(Node).where(Node.role == nodes.HYPERVISOR).order_by(Node.id)
        if kind:
            query = query.where(Node.kind == kind)
        with session_scope() as session:
            return page_json(paginate(session, query, number, size), nodes.HypervisorView)

    @ns.expect(spec_model)
    @ns.response(201, "Registered", view)
    @errors(ns, 400, 409)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Register a hypervisor node (credentials are stored encrypted and never returned)."""
        spec = parse(nodes.HypervisorSpec, json_body())
        with session_scope() as session:
            return nodes.HypervisorView.of(nodes.register_hypervisor(session, runtime().vault, spec)).to_json(), 201


@ns.route(f"/<int(max={MAX_ID}):node_id>")
@ns.param("node_id", "Node id")
class HypervisorItem(ManagementResource):
    @ns.response(200, "The node", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, node_id: int) -> dict[str, Any]:
        """Get a hypervisor node."""
        with session_scope() as session:
            return nodes.HypervisorView.of(nodes.get_hypervisor(session, node_id)).to_json()

    @ns.expect(spec_model)
    @ns.response(200, "Updated", view)
    @errors(ns, 400, 404, 409)
    @requires(ns, Role.ADMIN)
    def put(self, node_id: int) -> dict[str, Any]:
        """Update a hypervisor node; credentials left out are kept."""
        spec = parse(nodes.HypervisorSpec, json_body())
        with session_scope() as session:
            node = nodes.update_hypervisor(session, runtime().vault, node_id, spec)
            return nodes.HypervisorView.of(node).to_json()

    @ns.response(204, "Removed")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, node_id: int) -> tuple[str, int]:
        """Remove a hypervisor node; refused while tasks reference it."""
        with session_scope() as session:
            nodes.remove_hypervisor(session, node_id)
        return "", 204


def _inventory(node_id: int) -> InventoryInterface:
    with session_scope() as session:
        node = nodes.get_hypervisor(session, node_id)
        return inventory_for(node_info(node, runtime().vault))


@ns.route(f"/<int(max={MAX_ID}):node_id>/networks")
@ns.param("node_id", "Node id")
class HypervisorNetworks(ManagementResource):
    @ns.response(200, "Networks and bridges (KVM) or virtual switches (Hyper-V)", networks_model)
    @errors(ns, 404, 501, 502)
    @requires(ns, Role.VIEWER)
    def get(self, node_id: int) -> list[dict[str, Any]]:
        """List the networks a machine on this host can be attached to."""
        return [network.to_json() for network in _inventory(node_id).networks()]


@ns.route(f"/<int(max={MAX_ID}):node_id>/storage")
@ns.param("node_id", "Node id")
class HypervisorStorage(ManagementResource):
    @ns.response(200, "Storage pools with capacity and free space", storage_model)
    @errors(ns, 404, 501, 502)
    @requires(ns, Role.VIEWER)
    def get(self, node_id: int) -> list[dict[str, Any]]:
        """List where this host can store disks, with capacity and free space."""
        return [pool.to_json() for pool in _inventory(node_id).storage()]
