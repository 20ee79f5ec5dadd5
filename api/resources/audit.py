"""/audit: the audit trail, newest first, with filters (admins only: it shows who did what from where)."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model
from api.requests import choice_arg, text_arg, timestamp_arg
from api.resources.base import ManagementResource
from api.runtime import session_scope
from octoprov import audit
from octoprov.pages import paginate
from octoprov.roles import Role

ns: DocNamespace = Namespace("audit", path="/audit", description="Audit trail of changes and sign-ins")
page = page_model(ns, audit.AuditView)

PARAMS = {
    **PAGE_PARAMS,
    "actor": {"in": "query", "type": "string", "maxLength": 255, "description": "token:NAME or user:NAME"},
    "action": {"in": "query", "type": "string", "maxLength": 255, "description": "Part of the action"},
    "objectType": {"in": "query", "type": "string", "maxLength": 64, "description": "tasks, images, ..."},
    "objectId": {"in": "query", "type": "string", "maxLength": 255},
    "result": {"in": "query", "type": "string", "enum": list(audit.RESULTS)},
    "since": {"in": "query", "type": "string", "format": "date-time", "description": "At or after (ISO 8601)"},
    "until": {"in": "query", "type": "string", "format": "date-time", "description": "Before (ISO 8601)"},
}


@ns.route("")
class AuditList(ManagementResource):
    @ns.doc(params=PARAMS)
    @ns.response(200, "Audit entries, newest first", page)
    @errors(ns, 400)
    @requires(ns, Role.ADMIN)
    def get(self) -> dict[str, Any]:
        """List the audit trail: who changed what, with which role, from where, and the outcome."""
        number, size = page_args()
        where = audit.AuditFilter(
            actor=text_arg("actor", 255), action=text_arg("action", 255), object_type=text_arg("objectType", 64),
            object_id=text_arg("objectId", 255), result=choice_arg("result", audit.RESULTS),
            since=timestamp_arg("since"), until=timestamp_arg("until"))
        with session_scope() as session:
            return page_json(paginate(session, audit.audit_query(where), number, size), audit.AuditView)
