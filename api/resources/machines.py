"""/provisioning/machines: bare-metal servers known by their MACs, with their BMCs."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace
from sqlalchemy import select

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import json_body
from api.resources.base import ManagementResource
from api.runtime import runtime, session_scope
from octoprov import machines
from octoprov.models import MAX_ID, Node
from octoprov.pages import paginate
from octoprov.roles import Role
from octoprov.specs import parse

ns: DocNamespace = Namespace("machines", path="/provisioning/machines",
                             description="Bare-metal machines and their BMCs")
spec_model = schema_model(ns, machines.MachineSpec)
view = view_model(ns, machines.MachineView)
page = page_model(ns, machines.MachineView)


@ns.route("")
class MachineList(ManagementResource):
    @ns.doc(params=PAGE_PARAMS)
    @ns.response(200, "Bare-metal machines", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List bare-metal machines."""
        number, size = page_args()
        query = select(Node).where(Node.role == machines.BAREMETAL).order_by(Node.id)
        with session_scope() as session:
            return page_json(paginate(session, query, number, size), machines.MachineView)

    @ns.expect(spec_model)
    @ns.response(201, "Registered", view)
    @errors(ns, 400, 409)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Register a bare-metal machine by its MACs, with its BMC (credentials stored encrypted)."""
        spec = parse(machines.MachineSpec, json_body())
        with session_scope() as session:
            return machines.MachineView.of(machines.register_machine(session, runtime().vault, spec)).to_json(), 201


@ns.route(f"/<int(max={MAX_ID}):machine_id>")
@ns.param("machine_id", "Machine id")
class MachineItem(ManagementResource):
    @ns.response(200, "The machine", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, machine_id: int) -> dict[str, Any]:
        """Get a bare-metal machine, with the hardware its firmware reported."""
        with session_scope() as session:
            return machines.MachineView.of(machines.get_machine(session, machine_id)).to_json()

    @ns.expect(spec_model)
    @ns.response(200, "Updated", view)
    @errors(ns, 400, 404, 409)
    @requires(ns, Role.ADMIN)
    def put(self, machine_id: int) -> dict[str, Any]:
        """Update a machine; a BMC password left out is kept."""
        spec = parse(machines.MachineSpec, json_body())
        with session_scope() as session:
            machine = machines.update_machine(session, runtime().vault, machine_id, spec)
            return machines.MachineView.of(machine).to_json()

    @ns.response(204, "Removed")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, machine_id: int) -> tuple[str, int]:
        """Remove a machine; refused while a task installs it."""
        with session_scope() as session:
            machines.remove_machine(session, machine_id)
        return "", 204
