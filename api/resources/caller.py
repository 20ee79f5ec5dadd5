"""/caller: who the API takes the caller for and their role, so a client (the UI) offers only what it may do."""

from __future__ import annotations

from flask import g
from flask_restx import Namespace

from api.auth import requires
from api.docs import DocNamespace, errors
from api.resources.base import ManagementResource
from octoprov.roles import Role

ns: DocNamespace = Namespace("caller", path="/caller", description="The caller and their role")
caller_model = ns.schema_model("Caller", {
    "type": "object",
    "properties": {"actor": {"type": "string"}, "role": {"type": "string", "enum": [role.value for role in Role]}},
    "required": ["actor", "role"],
})


@ns.route("")
class CallerItem(ManagementResource):
    @ns.response(200, "The caller", caller_model)
    @errors(ns)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, str]:
        """Who is calling (`token:NAME`) and with which role."""
        return {"actor": g.caller.actor, "role": g.caller.role.value}
