"""/provisioning/pxe: what machines being provisioned call. Open (no API token): a status
callback proves itself with the per-task callback token instead."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Response, request
from flask_restx import Namespace, Resource
from pydantic import AfterValidator, Field, IPvAnyAddress
from sqlalchemy import select
from werkzeug.wrappers import Request as WerkzeugRequest

from api.docs import ERROR_TEXT, DocNamespace, error_model, schema_model
from api.metrics import ApiMetrics, api_metrics
from api.requests import json_body, text_value, uri_query
from api.runtime import dispatcher, runtime, session_scope
from octoprov import pipeline, states, steps
from octoprov.answerfiles.files import task_files
from octoprov.errors import Conflict, InvalidRequest, NotFound, OctoprovError, send_unless_unreachable
from octoprov.models import MAX_ID, Task
from octoprov.netboot import ipxe
from octoprov.netboot.answercache import BootAnswers, boot_answers
from octoprov.netboot.bootconfig import BootAnswer, files_token_hash, installing
from octoprov.results import MachineFacts
from octoprov.specs import Spec, View, parse
from octoprov.validation.linux import check_ssh_public_key
from octoprov.validation.macs import canonical_mac

ns: DocNamespace = Namespace("pxe", path="/provisioning/pxe", description="Called by machines being provisioned")


class SshReport(Spec):
    """The machine's SSH server, so post-install can log on and pin its host keys."""

    port: int = Field(default=22, ge=1, le=65535)
    host_keys: list[Annotated[str, AfterValidator(check_ssh_public_key)]] = Field(default_factory=list, max_length=8)


class StatusCallback(Spec):
    task_id: int = Field(ge=1, le=MAX_ID)
    token: str = Field(min_length=1, max_length=200)
    event: Literal[(*steps.EVENTS, "progress")]  # type: ignore[valid-type]  # built from steps.EVENTS for pydantic
    status: Literal["ok", "failed"] = "ok"
    message: str | None = Field(default=None, max_length=2000)
    addresses: list[IPvAnyAddress] = Field(default_factory=list, max_length=16,
                                           description="The machine's own IP addresses: kept only when they "
                                           "include the one the callback comes from, which post-install then uses")
    ssh: SshReport | None = None

    def facts(self) -> MachineFacts:
        return MachineFacts(addresses=[str(address) for address in self.addresses],
                            ssh_port=self.ssh.port if self.ssh else 22,
                            ssh_host_keys=self.ssh.host_keys if self.ssh else [])


class CallbackAnswer(View):
    accepted: bool
    reason: str
    warning: str | None = Field(default=None, description="Present when part of the report was not kept: why "
                                "(addresses that do not include the one the callback came from)")


callback_model = schema_model(ns, StatusCallback)
answer_model = schema_model(ns, CallbackAnswer, mode="serialization")
errors = error_model(ns)


@ns.route("/status")
class Status(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    @ns.doc(security=[])
    @ns.expect(callback_model)
    @ns.response(200, "Recorded; `accepted` is false for duplicates and reports out of order", answer_model)
    @ns.response(400, ERROR_TEXT[400], errors)
    @ns.response(403, "The token does not belong to this task", errors)
    @ns.response(404, ERROR_TEXT[404], errors)
    def post(self) -> dict[str, Any]:
        """Status callback from WinPE, the installer or the first-boot scripts."""
        try:
            event, answer = self._handle()
        except OctoprovError as error:
            outcome = {400: "invalid", 403: "refused", 404: "unknown_task"}.get(error.status, "error")
            api_metrics().callback(_claimed_event(), outcome)
            raise
        api_metrics().callback(event, "accepted" if answer.accepted else "ignored")
        return answer.model_dump(mode="json", by_alias=True, exclude_none=True)

    @staticmethod
    def _handle() -> tuple[str, CallbackAnswer]:
        """The report applied: its event and the answer for the machine."""
        report = parse(StatusCallback, json_body())
        with session_scope() as session:
            outcome = pipeline.handle_callback(session, runtime().settings, runtime().vault, report.task_id,
                                               report.token, report.event, report.status, report.message,
                                               report.facts(), source=request.remote_addr)
            keep = outcome.failed_task and pipeline.keeps_machine(session, session.get_one(Task, report.task_id))
        target_type = outcome.target_type
        if outcome.resume:  # steps that cannot be queued now stay pending: the periodic job queues them
            dispatcher().run_steps(report.task_id, target_type, outcome.resume)
        if outcome.failed_task:  # the failure recorded the rollback as due, should the broker be away
            send_unless_unreachable(report.task_id, "rollback",
                                    lambda: dispatcher().after_failure(report.task_id, target_type, keep))
        answer = CallbackAnswer(accepted=outcome.accepted, reason=outcome.reason, warning=outcome.warning)
        return report.event, answer


def _claimed_event() -> object:
    """The event a refused callback names, for its count (ApiMetrics.callback bounds it)."""
    body = request.get_json(silent=True, cache=True)
    return body.get("event") if isinstance(body, dict) else None


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
class Chain(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    @ns.doc(security=[], params={"mac": {"in": "query", "type": "string", "maxLength": 17,
                                         "description": "The booting NIC (ProxyDHCP fills it in)"}})
    @ns.response(400, ERROR_TEXT[400], errors)
    @ns.produces(["text/plain", "application/json"])  # JSON: the error answers
    @ns.response(200, "The first iPXE script every client runs")
    def get(self) -> Response:
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
class Boot(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    @ns.doc(security=[], params=BOOT_PARAMS)
    @ns.produces(["text/plain", "application/json"])
    @ns.response(200, "An iPXE script (text/plain), or with Accept: application/json the boot config")
    @ns.response(400, ERROR_TEXT[400], errors)
    def get(self) -> dict[str, Any] | Response:
        """Boot config for a MAC: the install script while its task installs, else local boot."""
        answer = boot_config(request, _boot_answers(), api_metrics())
        if wants_json(request):
            return answer.document
        return _text(answer.script)


HARDWARE_ARGS = ("uuid", "manufacturer", "product", "platform", "arch")


def boot_config(asked: WerkzeugRequest, answers: BootAnswers, metrics: ApiMetrics) -> BootAnswer:
    """What GET /pxe/boot does for ``asked``, its answer aside: the route's, and api.fastboot's, which
    serves the same requests before Flask's dispatch. Raises InvalidRequest for a bad MAC or argument."""
    try:
        mac = canonical_mac(asked.args.get("mac", ""))
    except ValueError as exc:
        raise InvalidRequest({"mac": str(exc)}) from None
    # iPXE URI-encodes the SMBIOS strings but leaves `+` as it is ("i440FX + PIIX"): read its query as URI
    # text, not as a form (where `+` is a space), or they no longer match KVM_MODELS and driver packs. Only
    # for iPXE (whose HTTP client always says "User-Agent: iPXE/<version>"): a browser or curl sending a
    # form-encoded query, here or elsewhere, keeps the usual meaning of `+`.
    query = uri_query(asked) if asked.environ.get("HTTP_USER_AGENT", "").startswith("iPXE/") else asked.args
    # only those it sent are looked up: a query's ``get`` of a missing name raises and catches a KeyError inside
    hardware = {name: text_value(name, query.get(name) if name in query else None) for name in HARDWARE_ARGS}
    answer, task_id = answers.answer(mac, hardware)
    if task_id is not None:  # where the request came from: who else fetched a script with the token
        why = f" ({answer.document['message']})" if answer.document.get("message") else ""
        where = asked.remote_addr or "an unknown address"
        answers.log_boot(task_id, f"Boot script served to {mac} at {where}: {answer.action}{why}")
    metrics.boot_answer("ipxe", answer.action)
    return answer


def wants_json(asked: WerkzeugRequest) -> bool:
    """The boot config as JSON rather than the script; iPXE sends no Accept: it gets the script."""
    return "HTTP_ACCEPT" in asked.environ and asked.accept_mimetypes.best == "application/json"


@ns.route("/files/<string:token>/<string:name>")
@ns.param("token", "The task's file token (in the URL its boot script carries)")
@ns.param("name", "autounattend.xml, startnet.cmd, winpeshl.ini, ...")
class TaskFile(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    @ns.doc(security=[])
    @ns.produces(["text/plain", "application/json"])  # JSON: the error answers
    @ns.response(200, "The file")
    @ns.response(404, "No such file, or the task is not installing (not yet, or no more)", errors)
    @ns.response(409, "The file cannot be made for this task; the task's log says why", errors)
    def get(self, token: str, name: str) -> Response:
        """A task's own file (answer file, WinPE start script), rendered with its secrets: served only
        while the machine installs, never before its boot configuration is ready nor after the OS is
        installed, the task has ended or been cancelled."""
        problem = None
        with session_scope() as session:
            task = session.scalars(select(Task).where(Task.files_token_hash == files_token_hash(token))).first()
            if task is None or task.status in states.FINAL or not installing(session, task):
                raise NotFound("no such file")
            rendered = task_files(session, runtime().settings, runtime().vault, task)
            if name in rendered.problems:
                problem = f"{name} cannot be made: {rendered.problems[name]}"
                pipeline.log(session, task.id, problem, level="error", step="render_answers")
        if problem:
            raise Conflict(problem)
        if name not in rendered.files:
            raise NotFound("no such file")
        response = _text(rendered.files[name])
        response.headers["Cache-Control"] = "no-store"
        return response


def _boot_answers() -> BootAnswers:
    found = runtime()
    return boot_answers(found.database, found.settings, found.vault)


def _text(body: str) -> Response:
    return Response(body, mimetype="text/plain")


@ns.route("/boot.grub")
class GrubBoot(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    @ns.doc(security=[], params={"mac": {"in": "query", "type": "string", "required": True, "maxLength": 17,
                                         "description": "The booting NIC's MAC"}})
    @ns.produces(["text/plain", "application/json"])  # JSON: the error answers
    @ns.response(200, "The GRUB configuration of a Secure Boot machine (what the TFTP server hands the signed GRUB "
                      "as grub/octoprov/<MAC>.cfg)")
    @ns.response(400, ERROR_TEXT[400], errors)
    def get(self) -> Response:
        """GRUB configuration for a MAC: the installer's kernel and initrd while its task installs, else local boot."""
        try:
            mac = canonical_mac(request.args.get("mac", ""))
        except ValueError as exc:
            raise InvalidRequest({"mac": str(exc)}) from None
        answers = _boot_answers()
        answer, _ = answers.answer(mac, {})
        if answer.task_id is not None:
            answers.log_boot(answer.task_id, f"GRUB configuration served to {mac} at {request.remote_addr}: "
                                             f"{answer.action}")
        api_metrics().boot_answer("grub", answer.action)
        return _text(answer.grub)
