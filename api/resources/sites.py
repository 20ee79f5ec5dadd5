"""/provisioning/sites: named places with their own boot network, and what their edges fetch and report."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import json_body
from api.resources.base import ManagementResource
from api.runtime import runtime, session_scope
from octoprov import sites
from octoprov.netboot.prepared import ServedReport, prepared_answers, record_served
from octoprov.pages import paginate
from octoprov.roles import Role
from octoprov.specs import parse

ns: DocNamespace = Namespace("sites", path="/provisioning/sites",
                             description="Sites: branch offices with their own boot services and workers")
spec_model = schema_model(ns, sites.SiteSpec)
view = view_model(ns, sites.SiteView)
page = page_model(ns, sites.SiteView)
served_model = schema_model(ns, ServedReport)
ITEM = "/<string(maxlength=63):site>"


@ns.route("")
class SiteList(ManagementResource):
    @ns.doc(params=PAGE_PARAMS)
    @ns.response(200, "Sites", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List sites (the central site is no site: nodes and tasks without one)."""
        number, size = page_args()
        with session_scope() as session:
            return page_json(paginate(session, sites.site_query(), number, size), sites.SiteView)

    @ns.expect(spec_model)
    @ns.response(201, "Created", view)
    @errors(ns, 400, 409)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Create a site."""
        spec = parse(sites.SiteSpec, json_body())
        with session_scope() as session:
            return sites.SiteView.of(sites.register_site(session, spec)).to_json(), 201


@ns.route(ITEM)
@ns.param("site", "Site id or name")
class SiteItem(ManagementResource):
    @ns.response(200, "The site", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, site: str) -> dict[str, Any]:
        """Get a site."""
        with session_scope() as session:
            return sites.SiteView.of(sites.get_site(session, site)).to_json()

    @ns.expect(spec_model)
    @ns.response(200, "Updated", view)
    @errors(ns, 400, 404, 409)
    @requires(ns, Role.ADMIN)
    def put(self, site: str) -> dict[str, Any]:
        """Redescribe a site or move its edge (bootUrl); a rename is refused while it is in use."""
        spec = parse(sites.SiteSpec, json_body())
        with session_scope() as session:
            return sites.SiteView.of(sites.update_site(session, site, spec)).to_json()

    @ns.response(204, "Deleted")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, site: str) -> tuple[str, int]:
        """Delete a site; refused while nodes or active tasks use it."""
        with session_scope() as session:
            sites.remove_site(session, site)
        return "", 204


@ns.route(ITEM + "/answers")
@ns.param("site", "Site id or name")
class SiteAnswers(ManagementResource):
    @ns.response(200, "The rendered boot answers of the site's active tasks, by MAC (they carry callback tokens)")
    @errors(ns, 404)
    @requires(ns, Role.OPERATOR)
    def get(self, site: str) -> dict[str, Any]:
        """What the site's edge answers its machines with, prepared ahead so it can answer while the WAN is down."""
        found = runtime()
        with session_scope() as session:
            response = prepared_answers(session, found.settings, found.vault, sites.get_site(session, site))
        return response


@ns.route(ITEM + "/served")
@ns.param("site", "Site id or name")
class SiteServed(ManagementResource):
    @ns.expect(served_model)
    @ns.response(200, "Recorded: how many lines were for the site's tasks")
    @errors(ns, 400, 404)
    @requires(ns, Role.OPERATOR)
    def post(self, site: str) -> dict[str, int]:
        """The boots the site's edge answered (also while the centre was unreachable), written on the tasks' logs."""
        report = parse(ServedReport, json_body())
        with session_scope() as session:
            return {"recorded": record_served(session, sites.get_site(session, site), report)}
