"""Live streams (server-sent events): the dashboard's task changes, and one task's changes and log lines.

The format, the ids and the resume rules are in ``octoprov.events`` and ``api.streams``; docs/operations.md
describes them for clients.
"""

from __future__ import annotations

from flask import Response
from flask_restx import Namespace

from api.auth import Refusal, requires
from api.docs import DocNamespace, errors
from api.resources.base import ManagementResource
from api.runtime import session_scope
from api.streams import event_stream
from octoprov import events, tasks
from octoprov.models import MAX_ID
from octoprov.roles import Role

ns: DocNamespace = Namespace("events", path="/provisioning", description="Live updates (server-sent events)")

STREAM_PARAMS = {
    "Last-Event-ID": {"in": "header", "type": "integer", "minimum": 0,
                      "description": "Resume after this event (the id of the last event received)"},
    "lastEventId": {"in": "query", "type": "integer", "minimum": 0,
                    "description": "The same for a first connection; the header wins"},
}
STREAM_TEXT = ("`text/event-stream`: `id:` the event's number (send it back as `Last-Event-ID` to resume), "
               "`event:` its kind, `data:` its JSON; a comment line every 15 s; the server ends the stream after "
               "a few minutes and the client reconnects")


@ns.route("/events")
class DashboardEvents(ManagementResource):
    @ns.doc(params=STREAM_PARAMS)
    @ns.produces(["text/event-stream"])
    @ns.response(200, STREAM_TEXT + ". Events: `ready` (first connection: load the lists now), `task` "
                 "(a TaskSummaryView of a task that was created or changed)")
    @errors(ns, 400, 503)
    @requires(ns, Role.VIEWER)
    def get(self) -> Response | Refusal:
        """Follow every task's changes (the dashboard)."""
        return event_stream(lambda _session, upto: [events.Event(events.READY, {}, upto)], events.dashboard_events)


@ns.route(f"/tasks/<int(max={MAX_ID}):task_id>/events")
@ns.param("task_id", "Task id")
class TaskEvents(ManagementResource):
    @ns.doc(params=STREAM_PARAMS)
    @ns.produces(["text/event-stream"])
    @ns.response(200, STREAM_TEXT + ". Events: `log` (a LogView: a new log line), `task` (the TaskView as it is "
                 "now). A first connection gets the task's log so far (lines without ids), then the task.")
    @errors(ns, 400, 404, 503)
    @requires(ns, Role.VIEWER)
    def get(self, task_id: int) -> Response | Refusal:
        """Follow one task: its changes and its log lines."""
        with session_scope() as session:
            tasks.get_task(session, task_id)
        return event_stream(lambda session, upto: events.task_snapshot(session, task_id, upto),
                            lambda session, after, upto: events.task_events(session, task_id, after, upto))
