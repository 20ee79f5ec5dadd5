"""/provisioning/groups: named sets of nodes that post-install adds new machines to."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import json_body
from api.resources.base import ManagementResource
from api.runtime import session_scope
from octoprov import groups
from octoprov.models import MAX_ID
from octoprov.pages import paginate
from octoprov.roles import Role
from octoprov.specs import parse

ns: DocNamespace = Namespace("groups", path="/provisioning/groups", description="Node groups")
spec_model = schema_model(ns, groups.GroupSpec)
view = view_model(ns, groups.GroupView)
page = page_model(ns, groups.GroupView)
member_page = page_model(ns, groups.MemberView)
ITEM = f"/<int(max={MAX_ID}):group_id>"


@ns.route("")
class GroupList(ManagementResource):
    @ns.doc(params=PAGE_PARAMS)
    @ns.response(200, "Groups", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List groups."""
        number, size = page_args()
        with session_scope() as session:
            return page_json(paginate(session, groups.group_query(), number, size), groups.GroupView)

    @ns.expect(spec_model)
    @ns.response(201, "Created", view)
    @errors(ns, 400, 409)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Create a group."""
        spec = parse(groups.GroupSpec, json_body())
        with session_scope() as session:
            return groups.GroupView.of(groups.register_group(session, spec)).to_json(), 201


@ns.route(ITEM)
@ns.param("group_id", "Group id")
class GroupItem(ManagementResource):
    @ns.response(200, "The group", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, group_id: int) -> dict[str, Any]:
        """Get a group."""
        with session_scope() as session:
            return groups.GroupView.of(groups.get_group(session, group_id)).to_json()

    @ns.expect(spec_model)
    @ns.response(200, "Updated", view)
    @errors(ns, 400, 404, 409)
    @requires(ns, Role.ADMIN)
    def put(self, group_id: int) -> dict[str, Any]:
        """Rename or redescribe a group; its members stay."""
        spec = parse(groups.GroupSpec, json_body())
        with session_scope() as session:
            return groups.GroupView.of(groups.update_group(session, group_id, spec)).to_json()

    @ns.response(204, "Deleted")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, group_id: int) -> tuple[str, int]:
        """Delete a group with its memberships; refused while an open task is to add a machine to it."""
        with session_scope() as session:
            groups.remove_group(session, group_id)
        return "", 204


@ns.route(ITEM + "/members")
@ns.param("group_id", "Group id")
class GroupMembers(ManagementResource):
    @ns.doc(params=PAGE_PARAMS)
    @ns.response(200, "The group's member nodes", member_page)
    @errors(ns, 400, 404)
    @requires(ns, Role.VIEWER)
    def get(self, group_id: int) -> dict[str, Any]:
        """List the nodes in a group."""
        number, size = page_args()
        with session_scope() as session:
            groups.get_group(session, group_id)
            return page_json(paginate(session, groups.member_query(group_id), number, size), groups.MemberView)


@ns.route(ITEM + f"/members/<int(max={MAX_ID}):node_id>")
@ns.param("group_id", "Group id")
@ns.param("node_id", "Node id")
class GroupMember(ManagementResource):
    @ns.response(204, "The node is a member")
    @errors(ns, 404)
    @requires(ns, Role.ADMIN)
    def put(self, group_id: int, node_id: int) -> tuple[str, int]:
        """Add a node to a group (a member already stays one)."""
        with session_scope() as session:
            groups.add_member(session, group_id, node_id)
        return "", 204

    @ns.response(204, "Removed from the group")
    @errors(ns, 404)
    @requires(ns, Role.ADMIN)
    def delete(self, group_id: int, node_id: int) -> tuple[str, int]:
        """Take a node out of a group."""
        with session_scope() as session:
            groups.remove_member(session, group_id, node_id)
        return "", 204
