"""/provisioning/packages: software post-install runs on new machines, with declared parameters."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import choice_arg, json_body
from api.resources.base import ManagementResource
from api.runtime import session_scope
from octoprov import packages
from octoprov.models import MAX_ID
from octoprov.pages import paginate
from octoprov.roles import Role
from octoprov.specs import parse

ns: DocNamespace = Namespace("packages", path="/provisioning/packages", description="Post-install packages")
spec_model = schema_model(ns, packages.PackageSpec)
view = view_model(ns, packages.PackageView)
page = page_model(ns, packages.PackageView)


@ns.route("")
class PackageList(ManagementResource):
    @ns.doc(params={**PAGE_PARAMS, "osType": {"in": "query", "type": "string", "enum": list(packages.OS_TYPES)}})
    @ns.response(200, "Packages", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List packages, optionally those for one OS."""
        number, size = page_args()
        query = packages.package_query(choice_arg("osType", packages.OS_TYPES))
        with session_scope() as session:
            return page_json(paginate(session, query, number, size), packages.PackageView)

    @ns.expect(spec_model)
    @ns.response(201, "Created", view)
    @errors(ns, 400, 409)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Create a package: a script for one OS and the schema of its parameters."""
        spec = parse(packages.PackageSpec, json_body())
        with session_scope() as session:
            return packages.PackageView.of(packages.register_package(session, spec)).to_json(), 201


@ns.route(f"/<int(max={MAX_ID}):package_id>")
@ns.param("package_id", "Package id")
class PackageItem(ManagementResource):
    @ns.response(200, "The package", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, package_id: int) -> dict[str, Any]:
        """Get a package with its script."""
        with session_scope() as session:
            return packages.PackageView.of(packages.get_package(session, package_id)).to_json()

    @ns.expect(spec_model)
    @ns.response(200, "Updated", view)
    @errors(ns, 400, 404, 409)
    @requires(ns, Role.ADMIN)
    def put(self, package_id: int) -> dict[str, Any]:
        """Replace a package."""
        spec = parse(packages.PackageSpec, json_body())
        with session_scope() as session:
            return packages.PackageView.of(packages.update_package(session, package_id, spec)).to_json()

    @ns.response(204, "Deleted")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, package_id: int) -> tuple[str, int]:
        """Delete a package; refused while an open task is to run it."""
        with session_scope() as session:
            packages.remove_package(session, package_id)
        return "", 204
