"""/provisioning/templates: named defaults that tasks start from."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace
from sqlalchemy import select

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import json_body
from api.resources.base import ManagementResource
from api.runtime import session_scope
from octoprov import taskspec, templates
from octoprov.models import MAX_ID, Template
from octoprov.pages import paginate
from octoprov.roles import Role

ns: DocNamespace = Namespace("templates", path="/provisioning/templates", description="Task templates (defaults)")
spec_model = schema_model(ns, taskspec.TemplateSpec)
view = view_model(ns, templates.TemplateView)
page = page_model(ns, templates.TemplateView)


@ns.route("")
class TemplateList(ManagementResource):
    @ns.doc(params=PAGE_PARAMS)
    @ns.response(200, "Templates", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List templates."""
        number, size = page_args()
        with session_scope() as session:
            query = select(Template).order_by(Template.id)
            return page_json(paginate(session, query, number, size), templates.TemplateView)

    @ns.expect(spec_model)
    @ns.response(201, "Created", view)
    @errors(ns, 400)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Create a template."""
        body = json_body()
        with session_scope() as session:
            return templates.TemplateView.of(templates.create_template(session, body)).to_json(), 201


@ns.route(f"/<int(max={MAX_ID}):template_id>")
@ns.param("template_id", "Template id")
class TemplateItem(ManagementResource):
    @ns.response(200, "The template", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, template_id: int) -> dict[str, Any]:
        """Get a template."""
        with session_scope() as session:
            return templates.TemplateView.of(templates.get_template(session, template_id)).to_json()

    @ns.expect(spec_model)
    @ns.response(200, "Updated", view)
    @errors(ns, 400, 404)
    @requires(ns, Role.ADMIN)
    def put(self, template_id: int) -> dict[str, Any]:
        """Update a template: the fields sent replace the stored ones."""
        body = json_body()
        with session_scope() as session:
            return templates.TemplateView.of(templates.update_template(session, template_id, body)).to_json()

    @ns.response(204, "Deleted")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, template_id: int) -> tuple[str, int]:
        """Delete a template; refused while an open task uses it."""
        with session_scope() as session:
            templates.delete_template(session, template_id)
        return "", 204
