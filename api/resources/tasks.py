"""/provisioning/tasks: create, list, inspect and cancel provisioning tasks; read their logs."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_restx import Namespace

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import bool_arg, choice_arg, int_arg, json_body, text_arg, timestamp_arg
from api.resources.base import ManagementResource
from api.runtime import dispatcher, runtime, session_scope
from octoprov import idempotency, states, tasks, taskspec
from octoprov.errors import InvalidRequest
from octoprov.models import MAX_ID
from octoprov.plan import plan_task
from octoprov.roles import Role
from octoprov.targets import registry
from octoprov.validation.macs import canonical_mac

ns: DocNamespace = Namespace("tasks", path="/provisioning/tasks", description="Provisioning tasks")
request_model = schema_model(ns, taskspec.TaskSpec)
view = view_model(ns, tasks.TaskView)
page = page_model(ns, tasks.TaskSummaryView)
plan_model = ns.schema_model("TaskPlan", {
    "type": "object",
    "properties": {"valid": {"type": "boolean"}, "task": view.__schema__,
                   "artifacts": {"type": "object", "additionalProperties": {"type": "string"}}},
    "required": ["valid", "task", "artifacts"],
})
logs_model = ns.schema_model("TaskLogList", {"type": "array", "items": view_model(ns, tasks.LogView).__schema__})

LIST_PARAMS = {
    **PAGE_PARAMS,
    "status": {"in": "query", "type": "string", "enum": list(states.ALL)},
    "targetType": {"in": "query", "type": "string", "enum": list(registry.names())},
    "hostname": {"in": "query", "type": "string", "maxLength": 255, "description": "Part of the host name"},
    "hypervisorNodeId": {"in": "query", "type": "integer", "minimum": 1},
    "macAddress": {"in": "query", "type": "string", "maxLength": 17},
}
LOG_PARAMS = {
    "since": {"in": "query", "type": "string", "format": "date-time",
              "description": "Only entries at or after this time (ISO 8601)"},
    "afterId": {"in": "query", "type": "integer", "minimum": 0,
                "description": "Only entries after this log id (for tailing)"},
    "limit": {"in": "query", "type": "integer", "minimum": 1, "maximum": 1000, "default": 500},
}


@ns.route("")
class TaskList(ManagementResource):
    @ns.doc(params=LIST_PARAMS)
    @ns.response(200, "Tasks, newest first", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List tasks, with filters and pagination."""
        number, size = page_args()
        mac = text_arg("macAddress", 17)
        if mac:
            try:
                mac = canonical_mac(mac)
            except ValueError as exc:
                raise InvalidRequest({"macAddress": str(exc)}) from None
        where = tasks.TaskFilter(
            status=choice_arg("status", states.ALL),
            target_type=choice_arg("targetType", registry.names()),
            hostname=text_arg("hostname"),
            hypervisor_node_id=int_arg("hypervisorNodeId"),
            mac_address=mac,
        )
        with session_scope() as session:
            return page_json(tasks.list_tasks(session, where, number, size), tasks.TaskSummaryView)

    @ns.expect(request_model)
    @ns.doc(params={"dryRun": {"in": "query", "type": "boolean", "default": False,
                               "description": "Validate and show what would be done and produced; store nothing"},
                    idempotency.HEADER: {"in": "header", "type": "string", "description": (
                        "A key of the client's (a UUID, say): the same request sent again with it, because its "
                        "answer was lost, gets the task the first one created, with `Idempotent-Replayed: true`, "
                        "instead of a second task. The same key with another request is refused (422).")}})
    @ns.response(201, "Created; the task is pending", view)
    @ns.response(200, "Dry run: the task as it would be, and its artifacts", plan_model)
    @errors(ns, 400, 422)
    @requires(ns, Role.OPERATOR)
    def post(self) -> dict[str, Any] | tuple[dict[str, Any], int] | tuple[dict[str, Any], int, dict[str, str]]:
        """Create a provisioning task: the request is merged over its template's defaults and stored."""
        key = idempotency.check_key(request.headers.get(idempotency.HEADER))
        body = json_body()
        if bool_arg("dryRun"):
            return plan_task(runtime().settings, runtime().database, runtime().vault, body).to_json()
        submission = tasks.submit(runtime(), dispatcher(), body, idempotency_key=key)
        if submission.replayed:
            return submission.view, 201, {"Idempotent-Replayed": "true"}
        return submission.view, 201


@ns.route(f"/<int(max={MAX_ID}):task_id>")
@ns.param("task_id", "Task id")
class TaskItem(ManagementResource):
    @ns.response(200, "The task with its steps (secrets masked)", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, task_id: int) -> dict[str, Any]:
        """Get a task's status, steps and configuration."""
        with session_scope() as session:
            return tasks.TaskView.of(tasks.get_task(session, task_id)).to_json()

    @ns.response(200, "Cancelled; the rollback runs in the background", view)
    @errors(ns, 404, 409)
    @requires(ns, Role.OPERATOR)
    def delete(self, task_id: int) -> dict[str, Any]:
        """Cancel a task in any unfinished state: its running step stops, everything it created is removed."""
        return tasks.cancel_task(runtime().database, dispatcher(), task_id)


@ns.route(f"/<int(max={MAX_ID}):task_id>/retry")
@ns.param("task_id", "Task id")
class TaskRetry(ManagementResource):
    @ns.response(200, "Restarted", view)
    @errors(ns, 404, 409)
    @requires(ns, Role.OPERATOR)
    def post(self, task_id: int) -> dict[str, Any]:
        """Restart a failed task from its failed step (from the start if the rollback removed its machine)."""
        return tasks.retry_task(runtime().database, dispatcher(), task_id)


@ns.route(f"/<int(max={MAX_ID}):task_id>/logs")
@ns.param("task_id", "Task id")
class TaskLogs(ManagementResource):
    @ns.doc(params=LOG_PARAMS)
    @ns.response(200, "Log entries, oldest first", logs_model)
    @errors(ns, 400, 404)
    @requires(ns, Role.VIEWER)
    def get(self, task_id: int) -> list[dict[str, Any]]:
        """Get a task's log; `afterId` or `since` tail it."""
        since = timestamp_arg("since")
        after_id = int_arg("afterId", minimum=0)
        limit = int_arg("limit", 500, maximum=1000)
        with session_scope() as session:
            entries = tasks.task_logs(session, task_id, since, after_id, limit)
            return [tasks.LogView.of(entry).to_json() for entry in entries]
