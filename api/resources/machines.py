"""/provisioning/machines: bare-metal servers known by their MACs, with their BMCs."""

from __future__ import annotations

import logging
from typing import Any

from flask_restx import Namespace
from sqlalchemy import select

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import json_body
from api.resources.base import ManagementResource
from api.runtime import dispatcher, runtime, session_scope
from octoprov import inventory, machines
from octoprov.errors import Conflict
from octoprov.models import MAX_ID, Node
from octoprov.pages import paginate
from octoprov.roles import Role
from octoprov.specs import parse

log = logging.getLogger(__name__)
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
            machine = machines.register_machine(session, runtime().vault, spec)
            inspect = _queue_inspection(machine)
            session.flush()
            view, machine_id = machines.MachineView.of(machine).to_json(), machine.id
        if inspect:
            view["inspection"] = _send_inspection(machine_id) or view["inspection"]
        return view, 201


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
            inspect = _queue_inspection(machine)
            view = machines.MachineView.of(machine).to_json()
        if inspect:
            view["inspection"] = _send_inspection(machine_id) or view["inspection"]
        return view

    @ns.response(204, "Removed")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, machine_id: int) -> tuple[str, int]:
        """Remove a machine; refused while a task installs it."""
        with session_scope() as session:
            machines.remove_machine(session, machine_id)
        return "", 204


@ns.route(f"/<int(max={MAX_ID}):machine_id>/inspect")
@ns.param("machine_id", "Machine id")
class MachineInspection(ManagementResource):
    @ns.response(202, "Inspection queued: the machine's inspection.state says when it is done", view)
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def post(self, machine_id: int) -> tuple[dict[str, Any], int]:
        """Read the machine's hardware from its BMC again (CPUs, memory, disks, network cards, firmware)."""
        with session_scope() as session:
            machine = machines.get_machine(session, machine_id)
            if not _queue_inspection(machine):
                raise Conflict(f"machine {machine.name} has no Redfish BMC to read its inventory from")
            view = machines.MachineView.of(machine).to_json()
        view["inspection"] = _send_inspection(machine_id) or view["inspection"]
        return view, 202


def _queue_inspection(machine: Node) -> bool:
    """Marks the machine's inspection queued when its BMC can be read (Redfish); the caller sends it
    once the machine is stored."""
    if machine.kind != "redfish":
        return False
    inventory.mark_queued(machine)
    return True


def _send_inspection(machine_id: int) -> dict[str, Any] | None:
    """Sends the queued inspection to the bare-metal pool; when the broker cannot be reached the
    machine's inspection says so (and is returned) instead of staying queued for ever."""
    try:
        dispatcher().inspect_machine(machine_id)
        return None
    except Exception as exc:  # any broker failure: the machine is stored, its inventory can be asked for again
        log.warning("machine %s: could not queue its inspection: %s", machine_id, exc)
        with session_scope() as session:
            return inventory.mark_failed(machines.get_machine(session, machine_id),
                                         "the broker could not be reached; inspect the machine again")
