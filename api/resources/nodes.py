"""/provisioning/nodes: the machines tasks installed, with what they reported about themselves."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace
from sqlalchemy import select

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, view_model
from api.requests import text_arg
from api.resources.base import ManagementResource
from api.runtime import session_scope
from octoprov.models import MAX_ID, Node
from octoprov.nodes import get_node
from octoprov.pages import paginate
from octoprov.results import MACHINE, NodeView
from octoprov.roles import Role

ns: DocNamespace = Namespace("nodes", path="/provisioning/nodes", description="Installed machines")
view = view_model(ns, NodeView)
page = page_model(ns, NodeView)


@ns.route("")
class NodeList(ManagementResource):
    @ns.doc(params={**PAGE_PARAMS, "hostname": {"in": "query", "type": "string", "maxLength": 255}})
    @ns.response(200, "Installed machines", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List the machines tasks installed (a task's `resultNodeId` points here)."""
        number, size = page_args()
        query = select(Node).where(Node.role == MACHINE).order_by(Node.id)
        hostname = text_arg("hostname")
        if hostname:
            query = query.where(Node.hostname == hostname)
        with session_scope() as session:
            return page_json(paginate(session, query, number, size), NodeView)


@ns.route(f"/<int(max={MAX_ID}):node_id>")
@ns.param("node_id", "Node id")
class NodeItem(ManagementResource):
    @ns.response(200, "The machine", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, node_id: int) -> dict[str, Any]:
        """Get an installed machine."""
        with session_scope() as session:
            return NodeView.of(get_node(session, node_id, MACHINE, "installed machine")).to_json()
