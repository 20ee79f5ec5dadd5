"""/provisioning/hypervisors: Hyper-V and KVM hosts, with their networks and storage."""

from __future__ import annotations

from flask_restx import Namespace
from sqlalchemy import select

from api.docs import PAGE_PARAMS, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import choice_arg, json_body
from api.resources.base import ManagementResource
from api.runtime import runtime, session_scope
from octoprov import nodes
from octoprov.models import MAX_ID, Node
from octoprov.pages import paginate
from octoprov.specs import parse
from octoprov.targets import inventory_for
from octoprov.targets.base import NetworkView, StorageView, as_json

ns = Namespace("hypervisors", path="/provisioning/hypervisors", description="Hyper-V and KVM hosts")
spec_model = schema_model(ns, nodes.HypervisorSpec)
view = view_model(ns, nodes.HypervisorView)
page = page_model(ns, nodes.HypervisorView)
networks_model = ns.schema_model("NetworkList", {"type": "array", "items": view_model(ns, NetworkView).__schema__})
storage_model = ns.schema_model("StorageList", {"type": "array", "items": view_model(ns, StorageView).__schema__})


@ns.route("")
class HypervisorList(ManagementResource):
    @ns.doc(params={**PAGE_PARAMS, "kind": {"in": "query", "type": "string", "enum": list(nodes.HYPERVISOR_KINDS)}})
    @ns.response(200, "Hypervisor nodes", page)
    @errors(ns, 400)
    def get(self):
        """List hypervisor nodes."""
        number, size = page_args()
        kind = choice_arg("kind", nodes.HYPERVISOR_KINDS)
        query = select(Node).where(Node.role == nodes.HYPERVISOR).order_by(Node.id)
        if kind:
            query = query.where(Node.kind == kind)
        with session_scope() as session:
            return page_json(paginate(session, query, number, size), nodes.HypervisorView)

    @ns.expect(spec_model)
    @ns.response(201, "Registered", view)
    @errors(ns, 400, 409)
    def post(self):
        """Register a hypervisor node (credentials are stored encrypted and never returned)."""
        spec = parse(nodes.HypervisorSpec, json_body())
        with session_scope() as session:
            return nodes.HypervisorView.of(nodes.register_hypervisor(session, runtime().vault, spec)).to_json(), 201


@ns.route(f"/<int(max={MAX_ID}):node_id>")
@ns.param("node_id", "Node id")
class HypervisorItem(ManagementResource):
    @ns.response(200, "The node", view)
    @errors(ns, 404)
    def get(self, node_id: int):
        """Get a hypervisor node."""
        with session_scope() as session:
            return nodes.HypervisorView.of(nodes.get_hypervisor(session, node_id)).to_json()

    @ns.expect(spec_model)
    @ns.response(200, "Updated", view)
    @errors(ns, 400, 404, 409)
    def put(self, node_id: int):
        """Update a hypervisor node; credentials left out are kept."""
        spec = parse(nodes.HypervisorSpec, json_body())
        with session_scope() as session:
            node = nodes.update_hypervisor(session, runtime().vault, node_id, spec)
            return nodes.HypervisorView.of(node).to_json()

    @ns.response(204, "Removed")
    @errors(ns, 404, 409)
    def delete(self, node_id: int):
        """Remove a hypervisor node; refused while tasks reference it."""
        with session_scope() as session:
            nodes.remove_hypervisor(session, node_id)
        return "", 204


def _inventory(node_id: int):
    with session_scope() as session:
        node = nodes.get_hypervisor(session, node_id)
        return inventory_for(node.kind, node.endpoint or "", nodes.credentials(node, runtime().vault), node.options,
                             username=node.username, name=node.name)


@ns.route(f"/<int(max={MAX_ID}):node_id>/networks")
@ns.param("node_id", "Node id")
class HypervisorNetworks(ManagementResource):
    @ns.response(200, "Networks and bridges (KVM) or virtual switches (Hyper-V)", networks_model)
    @errors(ns, 404, 501, 502)
    def get(self, node_id: int):
        """List the networks a machine on this host can be attached to."""
        return as_json(_inventory(node_id).networks())


@ns.route(f"/<int(max={MAX_ID}):node_id>/storage")
@ns.param("node_id", "Node id")
class HypervisorStorage(ManagementResource):
    @ns.response(200, "Storage pools with capacity and free space", storage_model)
    @errors(ns, 404, 501, 502)
    def get(self, node_id: int):
        """List where this host can store disks, with capacity and free space."""
        return as_json(_inventory(node_id).storage())
