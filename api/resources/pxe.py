"""/provisioning/pxe: what machines being provisioned call. Open (no API token): a status
callback proves itself with the per-task callback token instead."""

from __future__ import annotations

from typing import Literal

from flask import Response, request
from flask_restx import Namespace, Resource
from pydantic import Field
from sqlalchemy import select

from api.docs import ERROR_TEXT, error_model, schema_model
from api.requests import json_body, text_arg
from api.runtime import dispatcher, runtime, session_scope
from octoprov import pipeline, steps
from octoprov.errors import InvalidRequest, NotFound
from octoprov.models import MAX_ID, Task
from octoprov.netboot import ipxe
from octoprov.netboot.bootconfig import boot_answer, files_token_hash, record_boot
from octoprov.specs import Spec, View, parse
from octoprov.validation.macs import canonical_mac

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


BOOT_PARAMS = {
    "mac": {"in": "query", "type": "string", "required": True, "maxLength": 17,
            "description": "The booting NIC's MAC, in any common notation (iPXE sends 52-54-00-..)"},
    "uuid": {"in": "query", "type": "string", "maxLength": 64},
    "manufacturer": {"in": "query", "type": "string", "maxLength": 255, "description": "SMBIOS manufacturer"},
    "product": {"in": "query", "type": "string", "maxLength": 255, "description": "SMBIOS product name"},
    "platform": {"in": "query", "type": "string", "maxLength": 16, "description": "pcbios or efi"},
    "arch": {"in": "query", "type": "string", "maxLength": 16},
}


@ns.route("/chain.ipxe")
class Chain(Resource):
    @ns.doc(security=[], params={"mac": {"in": "query", "type": "string", "maxLength": 17,
                                         "description": "The booting NIC (ProxyDHCP fills it in)"}})
    @ns.response(400, ERROR_TEXT[400], errors)
    @ns.produces(["text/plain", "application/json"])  # JSON: the error answers
    @ns.response(200, "The first iPXE script every client runs")
    def get(self):
        """The chain script ProxyDHCP hands to iPXE clients: it fetches this machine's boot script."""
        settings = runtime().settings
        mac = None  # the template falls back to iPXE's first NIC
        if request.args.get("mac"):
            try:
                mac = canonical_mac(request.args["mac"]).replace(":", "-")
            except ValueError as exc:
                raise InvalidRequest({"mac": str(exc)}) from None
        script = ipxe.render("chain", boot_url=settings.effective_public_url + "/api/v1/provisioning/pxe/boot", mac=mac)
        return _text(script)


@ns.route("/boot")
class Boot(Resource):
    @ns.doc(security=[], params=BOOT_PARAMS)
    @ns.produces(["text/plain", "application/json"])
    @ns.response(200, "An iPXE script (text/plain), or with Accept: application/json the boot config")
    @ns.response(400, ERROR_TEXT[400], errors)
    def get(self):
        """Boot config for a MAC: the install script while its task installs, else local boot."""
        try:
            mac = canonical_mac(request.args.get("mac", ""))
        except ValueError as exc:
            raise InvalidRequest({"mac": str(exc)}) from None
        hardware = {name: text_arg(name) for name in ("uuid", "manufacturer", "product", "platform", "arch")}
        with session_scope() as session:
            answer = boot_answer(session, runtime().settings, runtime().vault, mac, hardware)
            if answer.task_id is not None:
                record_boot(session, answer.task_id, f"Boot script served to {mac} ({answer.action})")
        if request.accept_mimetypes.best == "application/json":  # iPXE sends no Accept: it gets the script
            return answer.document
        return _text(answer.script)


@ns.route("/files/<string:token>/<string:name>")
@ns.param("token", "The task's file token (in the URL its boot script carries)")
@ns.param("name", "autounattend.xml, startnet.cmd, winpeshl.ini, ...")
class TaskFile(Resource):
    @ns.doc(security=[])
    @ns.produces(["text/plain", "application/json"])  # JSON: the error answers
    @ns.response(200, "The file")
    @ns.response(404, "No such file, or the task has ended", errors)
    def get(self, token: str, name: str):
        """A task's own file (answer file, WinPE start script); gone once the task has ended."""
        with session_scope() as session:
            task = session.scalars(select(Task).where(Task.files_token_hash == files_token_hash(token))).first()
            if task is None or task.status in pipeline.states.FINAL:
                raise NotFound("no such file")
            files = task_files(task)
        if name not in files:
            raise NotFound("no such file")
        return _text(files[name])


def task_files(task: Task) -> dict[str, str]:
    """The files a task serves to its machine. Answer files and WinPE start scripts are rendered
    here once their templates exist; until then a task serves none."""
    return {}


def _text(body: str):
    return Response(body, mimetype="text/plain")
