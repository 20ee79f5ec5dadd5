"""Post-install on an installed Windows machine over WinRM, at the pypsrp boundary.

The machine is a fake of tests/support/fake_pypsrp.py behind a stricter door: WinRM on plain HTTP as the
first-logon commands leave it, which takes an NTLM logon (spnego's own acceptor, checking the
password) and, as Windows' ``AllowUnencrypted=false`` does, refuses any message not sealed with
the NTLM session key. Everything above it is real: pypsrp, the runner, the task's context and
its database. Scripts are not executed, only recognised by their text: what the test asserts
is what arrived, each parameter value as a typed, bound parameter.
"""

from __future__ import annotations

import base64
import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import spnego
from pypsrp.complex_objects import GenericComplexObject
from pypsrp.encryption import WinRMEncryption
from pypsrp.messages import InformationRecord, MessageType, WarningRecord
from pypsrp.shell import SignalCode

from octoprov import steps
from octoprov.answerfiles.files import task_files
from octoprov.errors import Cancelled, PermanentError, TargetUnreachable
from octoprov.models import Task
from octoprov.results import MachineFacts, record_facts
from octoprov.targets.hyperv import hyperv_target
from octoprov.targets.hyperv.commands import read_vm
from octoprov.winrm import powershell
from octoprov.winrm.commands import Cmdlet
from tests.support.fake_pypsrp import (
    ADMIN_PASSWORD,
    RSP,
    Call,
    FakeError,
    FakeHost,
    FakeWinRm,
    connect_to,
    lab_settings,
)

pytestmark = pytest.mark.filterwarnings("ignore::pypsrp.negotiate.NoCertificateRetrievedWarning")
API = "/api/v1/provisioning"
MACHINE_IP = "192.0.2.50"
ADMINISTRATOR = "Administrateur"  # a French image's built-in Administrator

PACKAGE = """param([Parameter(Mandatory)][string]$InstanceName, [string]$Collation, [int]$Port, [bool]$Tcp)
Write-Host "Installing SQL Server instance $InstanceName"
& "$PSScriptRoot\\setup.exe" /Q /ACTION=Install /INSTANCENAME=$InstanceName
"""
LIBRARY = """param([string]$Message = 'Managed by Octoprov')
Set-Content -LiteralPath "$env:SystemRoot\\motd.txt" -Value $Message
Write-Output "motd set"
"""
# each would run as code if it were pasted into the script's text instead of bound
NASTY = "O'Brien \"quoted\"; Remove-Item C:\\ -Recurse; $(Stop-Computer) `$env:USERNAME` ');exit('"


class HostLine(str):
    """A line the script writes with Write-Host: an information record, not output."""


class WarningLine(str):
    """A line the script writes with Write-Warning."""


HANGS = object()  # ends a script's output: it goes on running until it is stopped


@dataclass
class FakeMachine(FakeHost):
    """The installed machine: runs the scripts it knows by their text (a handler each, given the
    bound parameters), and keeps the ``$LASTEXITCODE`` they leave."""

    scripts: dict[str, Callable[..., list]] = field(default_factory=dict)
    exit_code: int | None = None
    doors: list = field(default_factory=list)  # one SealedWinRm per connection
    accounts_file: Path | None = None  # the accounts and passwords its NTLM logon accepts

    def run(self, pipeline: list[Call]) -> list:
        first = pipeline[0]
        if first.script is None or first.name != "<unknown script>":
            return super().run(pipeline)
        self.calls.extend(pipeline)
        return self.scripts[first.script](**first.parameters)

    def do_Get_Variable(self, _pipeline, Name, Scope, ValueOnly, ErrorAction):
        return [] if self.exit_code is None else [self.exit_code]

    def item_calls(self) -> list[Call]:
        return [call for call in self.calls if call.script is not None]


class SealedWinRm(FakeWinRm):
    """WinRM on HTTP 5985 as Windows runs it: a Negotiate (NTLM) logon first, then only sealed
    messages; Write-Host and Write-Warning lines of a script go out as the records PowerShell sends."""

    def __init__(self, host: FakeMachine):
        super().__init__(host)
        self.context = None
        self.sealed = self.plain = 0
        self.logons: list[str] = []
        self.urls: set[str] = set()
        self.signals: list[str] = []

    def send(self, request, **kwargs):
        self.urls.add(request.url)
        header = request.headers.get("Authorization")
        if header:
            token = (header.decode() if isinstance(header, bytes) else header).partition(" ")[2]
            if self.context is None or self.context.complete:
                self.context = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
            try:
                answer = self.context.step(base64.b64decode(token))
            except spnego.exceptions.SpnegoError:  # a wrong password: the logon is refused
                self.context = None
                return self._response(request, 401, b"", {"WWW-Authenticate": "Negotiate"})
            if not self.context.complete:
                return self._response(request, 401, b"", {
                    "WWW-Authenticate": "Negotiate " + base64.b64encode(answer).decode()})
            self.logons.append(self.context.client_principal)
            if not request.body:
                return self._response(request, 200, b"")
        if self.context is None or not self.context.complete:
            return self._response(request, 401, b"", {"WWW-Authenticate": "Negotiate"})
        if not request.headers.get("Content-Type", "").startswith("multipart/encrypted;"):
            self.plain += 1
            return self._response(request, 400, b"unencrypted messages are refused")
        seal = WinRMEncryption(self.context, WinRMEncryption.SPNEGO)
        opened = request.copy()
        opened.body = seal.unwrap_message(request.body, "Encrypted Boundary")
        self.sealed += 1
        response = super().send(opened, **kwargs)
        kind, response._content = seal.wrap_message(response.content)
        response.headers["Content-Type"] = f'{kind};protocol="{seal.protocol}";boundary="Encrypted Boundary"'
        return response

    def _messages(self, command_id, items):
        if any(isinstance(item, tuple) and item[1] is HANGS for item in items):  # no output after it, no end
            items = items[:next(index for index, item in enumerate(items) if isinstance(item, tuple)
                                and item[1] is HANGS)]
        return super()._messages(command_id, [_record(item) for item in items])

    def on_signal(self, body):
        self.signals.append(body.findtext(f"{{{RSP}}}Signal/{{{RSP}}}Code"))
        return super().on_signal(body)


def _record(item):
    if not isinstance(item, tuple) or item[0] != MessageType.PIPELINE_OUTPUT:
        return item
    if isinstance(item[1], HostLine):
        message = GenericComplexObject()
        message.types = ["System.Management.Automation.HostInformationMessage", "System.Object"]
        message.to_string = str(item[1])
        message.extended_properties = {"Message": str(item[1]), "NoNewLine": False}
        return InformationRecord(message_data=message, source="Write-Host", tags=["PSHOST"],
                                 user=f"SQL-01\\{ADMINISTRATOR}", computer="SQL-01", pid=4242, native_thread_id=7,
                                 managed_thread_id=1)
    if isinstance(item[1], WarningLine):
        return WarningRecord(message=str(item[1]), invocation=False)
    return item


# --- the lab: a Hyper-V host and the installed machine, behind the real API and database -----------


# fixtures of tests/support/inline_pipeline.py: queue (the broker's stand-in: steps run in this process, in
# order) and lab (a fake Hyper-V host and domain controller behind the real API)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "Set-Motd.ps1").write_bytes(codecs.BOM_UTF8 + LIBRARY.encode())  # as Windows editors save it
    monkeypatch.setenv("OCTOPROV_SCRIPTS_DIR", str(scripts))  # the API checks runScripts against the environment's
    return lab_settings(tmp_path / "var").model_copy(update={"scripts_dir": scripts})


@pytest.fixture
def machine(lab, monkeypatch, tmp_path):
    """The machine answers on MACHINE_IP; the Hyper-V host and the domain controller as before."""
    host = FakeMachine("SQL-01", accounts_file=tmp_path / "ntlm-accounts")
    host.accounts_file.write_text(f":{ADMINISTRATOR}:{ADMIN_PASSWORD}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(host.accounts_file))  # where spnego's acceptor looks the password up
    hosts, fake = powershell.open_wsman, connect_to(host)  # make_lab's fake hosts, and this machine's

    def connect(where):
        if where.server != MACHINE_IP:
            return hosts(where)
        wsman = fake(where)
        door = SealedWinRm(host)
        wsman.transport.session.mount("http://", door)
        host.doors.append(door)
        return wsman

    monkeypatch.setattr(powershell, "open_wsman", connect)
    return host


@pytest.fixture
def package_id(client):
    return _package(client, idempotent=False)


def _package(client, idempotent: bool, timeout_s: int = 1800) -> int:
    answer = client.post(API + "/packages", json={
        "name": "SQL Server 2022", "osType": "windows", "script": PACKAGE, "idempotent": idempotent,
        "timeoutSeconds": timeout_s,
        "parametersSchema": {"type": "object", "required": ["InstanceName"], "properties": {
            "InstanceName": {"type": "string"}, "Collation": {"type": "string"}, "Port": {"type": "integer"},
            "Tcp": {"type": "boolean", "default": True}}}})
    assert answer.status_code == 201, answer.json
    return answer.json["id"]


def windows_task(lab, package_id: int, retries: int = 2, **parameters) -> dict:
    return lab.task(domain={"join": False},
                    os={"imageId": lab.image_id, "adminPassword": ADMIN_PASSWORD, "language": "fr-FR"},
                    postInstall={"installAgent": True, "retries": retries,
                                 "runPackages": [{"packageId": package_id,
                                                  "parameters": parameters or {"InstanceName": "YOURDBSERVER"}}],
                                 "runScripts": [{"name": "Set-Motd.ps1", "parameters": {"Message": NASTY}}]})


def first_boot(lab, task_id: int) -> None:
    """What the first-boot callback records: the addresses the machine reported, from the first of them."""
    with lab.runtime.database.session() as session:
        facts = MachineFacts(addresses=[MACHINE_IP, "10.0.0.5"])
        assert record_facts(session, task_id, facts, source=MACHINE_IP) is None


def run(lab, task_id: int, step: str) -> str:
    """One post-install step, as the worker runs it: the Hyper-V target's driver, a fresh context."""
    ctx = lab.ctx(task_id)
    return hyperv_target().post_install.run_item(ctx, {**steps.post_install_item(ctx.spec, step), "step": step})


def logs(lab, task_id: int, step: str | None = None) -> list[str]:
    entries = lab.client.get(f"{API}/tasks/{task_id}/logs").json
    return [entry["message"] for entry in entries if step is None or entry["step"] == step]


# --- the tests ---------------------------------------------------------------------------------


def test_a_package_gets_its_parameters_as_literal_bound_values_over_a_sealed_ntlm_logon(lab, machine, package_id):
    seen = {}

    def install(**parameters):
        seen.update(parameters)
        return [HostLine("Installing SQL Server instance " + parameters["InstanceName"]),
                WarningLine("TCP port 1433 is not open yet"), "SQL Server 2022 installed\nrestart pending"]

    machine.scripts[PACKAGE] = install
    task = windows_task(lab, package_id, InstanceName=NASTY, Collation="Latin1_General_CI_AS", Port=1433)
    first_boot(lab, task["id"])
    assert run(lab, task["id"], "package_0") == "Package SQL Server 2022: done"

    item, formatted = machine.calls[0], machine.calls[1]
    assert item.script == PACKAGE  # the package's own text, nothing written into it
    assert item.parameters == {"InstanceName": NASTY, "Collation": "Latin1_General_CI_AS", "Port": 1433, "Tcp": True}
    assert item.types == {"InstanceName": "S", "Collation": "S", "Port": "I32", "Tcp": "B"}
    assert seen["InstanceName"] == NASTY
    assert (formatted.name, formatted.parameters) == ("Out-String", {"Stream": True, "Width": 160})
    assert machine.calls[2].name == "Get-Variable" and machine.calls[2].parameters["Name"] == "LASTEXITCODE"
    # where and as whom: the first reported address, HTTP 5985, the image's own Administrator, every message sealed
    door = machine.doors[0]
    assert door.urls == {f"http://{MACHINE_IP}:5985/wsman"}
    assert [logon.rpartition("\\")[2] for logon in door.logons] == [ADMINISTRATOR]
    assert door.sealed > 0 and door.plain == 0
    assert SignalCode.PS_CTRL_C not in door.signals  # it ran to its end
    assert logs(lab, task["id"], "package_0") == [
        f"| Installing SQL Server instance {NASTY}", "| WARNING: TCP port 1433 is not open yet",
        "| SQL Server 2022 installed", "| restart pending"]
    assert ADMIN_PASSWORD not in str(logs(lab, task["id"]))


def test_a_library_script_runs_with_its_parameters(lab, machine, package_id):
    machine.scripts[LIBRARY] = lambda Message: ["motd set"]
    task = windows_task(lab, package_id)
    first_boot(lab, task["id"])
    assert run(lab, task["id"], "script_0") == "Script Set-Motd.ps1: done"
    [item] = machine.item_calls()
    assert item.script == LIBRARY  # read from the library without the byte-order mark
    assert item.parameters == {"Message": NASTY} and item.types == {"Message": "S"}
    assert logs(lab, task["id"], "script_0") == ["| motd set"]


def test_an_error_fails_the_item_with_its_text_after_the_retries_an_idempotent_package_gets(lab, machine, client):
    def failing(**_parameters):
        raise FakeError("setup.exe: the instance name YOURDBSERVER is already in use")

    machine.scripts[PACKAGE] = failing
    task = windows_task(lab, _package(client, idempotent=True), retries=1)
    first_boot(lab, task["id"])
    with pytest.raises(PermanentError) as failed:
        run(lab, task["id"], "package_0")
    assert failed.value.message == ("Package SQL Server 2022 failed: setup.exe: the instance name YOURDBSERVER is "
                                    "already in use")
    assert len(machine.item_calls()) == 2  # retried once, as postInstall.retries says
    assert logs(lab, task["id"], "package_0") == [
        "Package SQL Server 2022 failed: setup.exe: the instance name YOURDBSERVER is already in use; trying again"]

    machine.scripts[LIBRARY] = failing
    with pytest.raises(PermanentError, match=r"^Script Set-Motd\.ps1 failed: setup\.exe: the instance name"):
        run(lab, task["id"], "script_0")
    assert len(machine.item_calls()) == 3  # a library script is not repeated


def test_a_non_zero_exit_code_fails_the_item_with_the_last_output(lab, machine, package_id):
    machine.scripts[PACKAGE] = lambda **_parameters: ["setup.exe: reboot required"]
    machine.exit_code = 3010
    task = windows_task(lab, package_id)
    first_boot(lab, task["id"])
    with pytest.raises(PermanentError) as failed:
        run(lab, task["id"], "package_0")
    assert failed.value.message == ("Package SQL Server 2022 exited with code 3010; last output:\n"
                                    "setup.exe: reboot required")


def test_a_refused_login_is_permanent_and_not_retried(lab, machine, client):
    machine.accounts_file.write_text(f":{ADMINISTRATOR}:Changed-Since-1nstall\n")
    machine.scripts[PACKAGE] = lambda **_parameters: []
    task = windows_task(lab, _package(client, idempotent=True))
    first_boot(lab, task["id"])
    with pytest.raises(PermanentError) as failed:
        run(lab, task["id"], "package_0")
    assert not isinstance(failed.value, TargetUnreachable)
    assert failed.value.message == (f"WinRM on SQL-01 ({MACHINE_IP}:5985) refused the login of {ADMINISTRATOR} with "
                                    "the task's os.adminPassword (was the password changed, or the account renamed "
                                    "or disabled?)")
    assert machine.calls == [] and len(machine.doors) == 1  # no second try
    assert ADMIN_PASSWORD not in failed.value.message


def test_a_dropped_connection_is_transient(lab, machine, package_id):
    machine.scripts[PACKAGE] = lambda **_parameters: ["still installing"]
    machine.drop_after = "Out-String"  # the connection resets while the package runs
    task = windows_task(lab, package_id)
    first_boot(lab, task["id"])
    with pytest.raises(TargetUnreachable, match=f"WinRM on SQL-01 \\({MACHINE_IP}:5985\\).*Connection reset by peer"):
        run(lab, task["id"], "package_0")


def test_a_package_running_past_its_time_limit_is_stopped_on_the_machine(lab, machine, client):
    machine.scripts[PACKAGE] = lambda **_parameters: [HostLine("waiting for the installer"), HANGS]
    task = windows_task(lab, _package(client, idempotent=True, timeout_s=1))
    first_boot(lab, task["id"])
    with pytest.raises(PermanentError, match=r"^Package SQL Server 2022 still running on SQL-01 after 1 s: stopped$"):
        run(lab, task["id"], "package_0")
    assert machine.doors[0].signals[0] == SignalCode.PS_CTRL_C  # stopped, then the pipeline closed
    assert logs(lab, task["id"], "package_0") == ["| waiting for the installer"]
    assert len(machine.item_calls()) == 1  # a time limit is not a failure to try again


def test_cancelling_the_task_stops_the_running_item(lab, machine, package_id):
    def cancelled_meanwhile(**_parameters):
        assert lab.client.delete(f"{API}/tasks/{task['id']}").status_code == 200
        return [HANGS]

    machine.scripts[PACKAGE] = cancelled_meanwhile
    task = windows_task(lab, package_id)
    first_boot(lab, task["id"])
    with pytest.raises(Cancelled):
        run(lab, task["id"], "package_0")
    assert machine.doors[0].signals[0] == SignalCode.PS_CTRL_C  # stopped, then the pipeline closed


def test_without_a_reported_address_there_is_nothing_to_log_on_to(lab, machine, package_id):
    task = windows_task(lab, package_id)
    with pytest.raises(PermanentError, match="reported no address: post-install over WinRM needs `addresses`"):
        run(lab, task["id"], "package_0")


def test_the_agent_step_needs_no_connection(lab, machine, package_id):
    task = windows_task(lab, package_id)
    first_boot(lab, task["id"])
    assert run(lab, task["id"], "install_agent") == "No Windows agent installer at images/agent/octoprov-agent.msi: " \
                                                    "agent not installed"
    installer = lab.runtime.settings.effective_images_dir / "agent" / "octoprov-agent.msi"
    installer.parent.mkdir()
    installer.write_bytes(b"MSI")
    assert run(lab, task["id"], "install_agent").startswith("Installed at first logon by the answer file's commands")
    assert machine.doors == []


def test_a_hyperv_windows_task_runs_its_post_install_over_winrm_and_completes(lab, machine, package_id, queue):
    machine.scripts[PACKAGE] = lambda **parameters: [HostLine(f"instance {parameters['InstanceName']} installed")]
    machine.scripts[LIBRARY] = lambda Message: ["motd set"]
    task = windows_task(lab, package_id)
    queue.deliver()
    with lab.runtime.database.session() as session:
        xml = task_files(session, lab.runtime.settings, lab.runtime.vault, session.get(Task, task["id"])).files[
            "autounattend.xml"]
    assert "Enable-PSRemoting" in xml and "addresses=$a" in xml  # what makes the machine reachable and reported
    with lab.runtime.database.session() as session:
        token = lab.runtime.vault.decrypt(session.get(Task, task["id"]).callback_token_encrypted)
    for event in ("installer_started", "os_installed", "first_boot"):
        body = {"taskId": task["id"], "token": token, "event": event, "status": "ok"}
        if event == "first_boot":  # as the first-logon command reports it
            body["addresses"] = [MACHINE_IP, "10.0.0.5"]
        assert lab.client.post(API + "/pxe/status", json=body, environ_base={"REMOTE_ADDR": MACHINE_IP}
                               ).json["accepted"]
        if event == "os_installed":  # WinPE shuts the VM down; Octoprov turns Secure Boot on and starts it
            lab.hv.vms[task["hostname"]]["State"] = "Off"
        queue.deliver()
    done = lab.client.get(f"{API}/tasks/{task['id']}").json
    assert done["status"] == "completed", (done["errorMessage"], logs(lab, task["id"]))
    details = {step["name"]: step["detail"] for step in done["steps"]}
    assert details["package_0"] == "Package SQL Server 2022: done"
    assert details["script_0"] == "Script Set-Motd.ps1: done"
    ordered = [message for message in logs(lab, task["id"]) if message.startswith("| ")]
    assert ordered == ["| instance YOURDBSERVER installed", "| motd set"]
    node = lab.client.get(f"{API}/nodes/{done['resultNodeId']}").json
    assert node["ipAddresses"] == [MACHINE_IP, "10.0.0.5"] and node["osType"] == "windows"
    assert [call.name for call in machine.calls if call.name != "<unknown script>"] == [
        "Out-String", "Get-Variable", "Out-String", "Get-Variable"]


def test_a_command_of_its_own_text_is_named_by_its_name():
    command = Cmdlet("Package X", (("A", 1),), "param($A)")
    assert command.script == "param($A)" and command.to_json() == {"script": "Package X", "parameters": {"A": 1}}
    assert read_vm("SQL-01").script.lstrip().startswith("param(")
