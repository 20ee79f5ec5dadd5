"""/provisioning/pxe: what machines being provisioned call. Open (no API token): a status
callback proves itself with the per-task callback token instead."""

from __future__ import annotations

from typing import Literal

from flask_restx import Namespace, Resource
from pydantic import Field

from api.docs import ERROR_TEXT, error_model, schema_model
from api.requests import json_body
from api.runtime import dispatcher, runtime, session_scope
from octoprov import pipeline, steps
from octoprov.models import MAX_ID, Task
from octoprov.specs import Spec, View, parse

ns = Namespace("pxe", path="/provisioning/pxe", description="Called by machines being provisioned")


class StatusCallback(Spec):
    task_id: int = Field(ge=1, le=MAX_ID)
    token: str = Field(min_length=1, max_length=200)
    event: Literal[(*steps.EVENTS, "progress")]
    status: Literal["ok", "failed"] = "ok"
    message: str | None = Field(default=None, max_length=2000)


class CallbackAnswer(View):
    accepted: bool
    reason: str


callback_model = schema_model(ns, StatusCallback)
answer_model = schema_model(ns, CallbackAnswer, mode="serialization")
errors = error_model(ns)


@ns.route("/status")
class Status(Resource):
    @ns.doc(security=[])
    @ns.expect(callback_model)
    @ns.response(200, "Recorded; `accepted` is false for duplicates and reports out of order", answer_model)
    @ns.response(400, ERROR_TEXT[400], errors)
    @ns.response(403, "The token does not belong to this task", errors)
    @ns.response(404, ERROR_TEXT[404], errors)
    def post(self):
        """Status callback from WinPE, the installer or the first-boot scripts."""
        report = parse(StatusCallback, json_body())
        with session_scope() as session:
            outcome = pipeline.handle_callback(session, runtime().settings, runtime().vault, report.task_id,
                                               report.token, report.event, report.status, report.message)
            task = session.get(Task, report.task_id)
            target_type, failed = task.target_type, task.status == pipeline.states.FAILED
            keep = pipeline.keeps_machine(task)
        if outcome.resume:
            dispatcher().run_steps(report.task_id, target_type, outcome.resume)
        if failed and outcome.accepted:
            dispatcher().after_failure(report.task_id, target_type, keep)
        return CallbackAnswer(accepted=outcome.accepted, reason=outcome.reason).to_json()
