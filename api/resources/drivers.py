"""/provisioning/drivers: driver packs matched to hardware."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace
from sqlalchemy import select

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import json_body
from api.resources.base import ManagementResource
from api.runtime import runtime, session_scope
from octoprov import drivers
from octoprov.models import MAX_ID, DriverPack
from octoprov.pages import paginate
from octoprov.roles import Role
from octoprov.specs import parse

ns: DocNamespace = Namespace("drivers", path="/provisioning/drivers",
                             description="Driver packs injected into WinPE and Windows")
spec_model = schema_model(ns, drivers.DriverPackSpec)
view = view_model(ns, drivers.DriverPackView)
page = page_model(ns, drivers.DriverPackView)


@ns.route("")
class DriverPackList(ManagementResource):
    @ns.doc(params=PAGE_PARAMS)
    @ns.response(200, "Driver packs", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List driver packs."""
        number, size = page_args()
        with session_scope() as session:
            query = select(DriverPack).order_by(DriverPack.id)
            views = drivers.PackViews(runtime().settings.effective_drivers_dir)
            return page_json(paginate(session, query, number, size), views)

    @ns.expect(spec_model)
    @ns.response(201, "Added", view)
    @errors(ns, 400)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Add a driver pack: a folder inside the drivers folder holding at least one .inf file."""
        spec = parse(drivers.DriverPackSpec, json_body())
        root = runtime().settings.effective_drivers_dir
        with session_scope() as session:
            return drivers.pack_view(drivers.add_driver_pack(session, root, spec), root).to_json(), 201


@ns.route(f"/<int(max={MAX_ID}):pack_id>")
@ns.param("pack_id", "Driver pack id")
class DriverPackItem(ManagementResource):
    @ns.response(200, "The driver pack", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, pack_id: int) -> dict[str, Any]:
        """Get a driver pack."""
        with session_scope() as session:
            pack = drivers.get_driver_pack(session, pack_id)
            return drivers.pack_view(pack, runtime().settings.effective_drivers_dir).to_json()

    @ns.response(204, "Deleted (the folder stays)")
    @errors(ns, 404)
    @requires(ns, Role.ADMIN)
    def delete(self, pack_id: int) -> tuple[str, int]:
        """Delete a driver pack registration."""
        with session_scope() as session:
            drivers.delete_driver_pack(session, pack_id)
        return "", 204
