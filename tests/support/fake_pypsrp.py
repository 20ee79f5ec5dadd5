"""A fake Windows host for pypsrp: the WinRM service of a Hyper-V host (or of the domain's
management host), answering what pypsrp's runspace pool and PowerShell objects send it.

It sits where the bytes leave the process: a requests transport adapter mounted on the session
pypsrp's own WSMan transport builds. Everything above it is the real pypsrp code path - the WSMan
settings and SOAP envelopes, the WinRS shell, the RunspacePool and PowerShell objects, PSRP
fragments and CLIXML serialization, invocation and the error stream - and Octoprov's runner on
top. So the fake sees each command exactly as a host would: the cmdlet name (or fixed script)
and its parameters as typed CLIXML values, which it records in ``FakeHost.calls``.

What it answers is scripted, not PowerShell: a small model of Hyper-V (VMs, VHDX files, switches,
DVD drives) and of Active Directory (computer accounts, djoin blobs), plus the failures the
target must survive: a cmdlet error (``errors``), a refused login (``refuse_login``) and a
connection dropped in the middle of a pipeline (``drop_after``).

Before any of that, each command is bound as the host's PowerShell would bind it: a cmdlet against
Microsoft's documented parameter sets (tests/support/cmdlet_reference.py), one of Octoprov's fixed
scripts against its ``param()`` block, and the calls inside that script with the values bound to
it. An unknown cmdlet or parameter, a missing mandatory one, a value that does not convert (a bool
for ``OnOffState``, text for ``Int64``) fails the pipeline with the ParameterBindingException
record PowerShell sends, and nothing runs (``FakeHost.refused``). So the model cannot share a
misreading of the cmdlets with the code it tests. Scripts of post-install packages and of the
library (not Octoprov's text) are bound by their authors' rules and are not checked here.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import requests
from pypsrp.complex_objects import PSInvocationState, RunspacePoolState
from pypsrp.messages import Destination, ErrorRecordMessage, MessageType, PipelineState, RunspacePoolStateMessage
from pypsrp.messages import SessionCapability as Capability
from pypsrp.powershell import Fragment
from pypsrp.serializer import Serializer
from pypsrp.wsman import NAMESPACES
from requests.adapters import BaseAdapter

from octoprov.winrm.connection import Endpoint, open_wsman
from tests.support.cmdlet_reference import ANY_INPUT, BindingError, check_pipeline

S, WSA, RSP = NAMESPACES["s"], NAMESPACES["wsa"], NAMESPACES["rsp"]
UNKNOWN_SCRIPT = "<unknown script>"  # a script the fake does not know by its text (a post-install package's)
DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"


@dataclass
class Call:
    """One command as the host received it."""

    name: str
    parameters: dict[str, Any]
    script: str | None = None
    types: dict[str, str] = field(default_factory=dict)  # each parameter's CLIXML element: S, I32, I64, B, ...
    bound: dict[str, Any] | None = None  # the parameters as the host bound them: each under its own name


class FakeError(Exception):
    """Raised by a handler: the command fails with this message in the error stream."""


@dataclass
class FakeHost:
    """A Windows host's state and what it is scripted to do."""

    name: str = "HV01"
    switches: list[dict] = field(default_factory=lambda: [
        {"Name": "vSwitch-Prod", "SwitchType": "External", "NetAdapter": "Intel(R) Ethernet X710"},
        {"Name": "Lab Internal", "SwitchType": "Internal", "NetAdapter": None}])
    vhd_path: str = r"D:\Hyper-V\Virtual Hard Disks"
    vm_path: str = r"D:\Hyper-V"
    volumes: list[dict] = field(default_factory=lambda: [
        {"Name": "C:\\", "Label": "System", "FileSystem": "NTFS", "SizeBytes": 127 * 2**30, "FreeBytes": 60 * 2**30},
        {"Name": "D:\\", "Label": "VMs", "FileSystem": "ReFS", "SizeBytes": 2 * 2**40, "FreeBytes": 900 * 2**30}])
    vms: dict[str, dict] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    accounts: dict[str, dict] = field(default_factory=dict)  # computer name -> account
    errors: dict[str, str] = field(default_factory=dict)  # command name -> error it reports
    refuse_login: bool = False
    drop_after: str | None = None  # the connection drops after the host ran this command (once)
    calls: list[Call] = field(default_factory=list)
    refused: list[tuple[list[Call], BindingError]] = field(default_factory=list)  # never ran: binding failed

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    def bind(self, pipeline: list[Call]) -> None:
        """Bind the pipeline as PowerShell would (see the module), or raise the BindingError it
        would throw. A script the fake does not know by its text (a package's) passes unchecked,
        and what it writes may bind anywhere downstream."""
        unknown = pipeline[0].name == UNKNOWN_SCRIPT
        checked = pipeline[1:] if unknown else pipeline
        bindings = check_pipeline(((call.name, call.parameters, call.script) for call in checked),
                                  ANY_INPUT if unknown else None)
        for call, binding in zip(checked, bindings, strict=True):
            call.bound = binding.bound

    def run(self, pipeline: list[Call]) -> list:
        self.calls.extend(pipeline)
        first = pipeline[0]
        for call in pipeline:
            if call.name in self.errors:
                raise FakeError(self.errors[call.name])
        handler = getattr(self, "do_" + first.name.replace("-", "_"), None)
        return handler(pipeline, **(first.bound if first.bound is not None else first.parameters)) if handler else []

    # --- Hyper-V ---------------------------------------------------------------------------------

    def vm(self, name: str) -> dict:
        if name not in self.vms:
            raise FakeError(f"Hyper-V was unable to find a virtual machine with name \"{name}\".")
        return self.vms[name]

    def do_Read_OctoprovVM(self, _pipeline, Name):
        vm = self.vms.get(Name)
        return [json.dumps(vm)] if vm else []

    def do_Read_OctoprovHostStorage(self, _pipeline):
        return [json.dumps({"VirtualHardDiskPath": self.vhd_path, "VirtualMachinePath": self.vm_path,
                            "Volumes": self.volumes})]

    def do_Read_OctoprovSwitches(self, _pipeline):
        return [json.dumps(self.switches)]

    def do_Test_Path(self, _pipeline, LiteralPath):
        paths = LiteralPath if isinstance(LiteralPath, list) else [LiteralPath]
        return [path in self.files for path in paths]

    def do_New_VM(self, pipeline, Name, Generation, MemoryStartupBytes, NoVHD, Path=None, ErrorAction=None):
        if Name in self.vms:
            raise FakeError(f"New-VM: a virtual machine named '{Name}' already exists.")
        notes = next((call.parameters["Notes"] for call in pipeline[1:] if call.name == "Set-VM"), "")
        adapters = [{"Name": "Network Adapter", "MacAddress": "000000000000", "SwitchName": None, "IsLegacy": False}]
        self.vms[Name] = {"Id": str(uuid.uuid4()), "Name": Name, "Notes": notes, "State": "Off",
                          "Generation": Generation, "Path": Path or self.vm_path, "Memory": MemoryStartupBytes,
                          "Disks": [], "Dvds": [None] if Generation == 1 else [], "Adapters": adapters}
        return []

    def do_Set_VM(self, _pipeline, Name, Notes):
        self.vm(Name)["Notes"] = Notes

    def do_Set_VMProcessor(self, _pipeline, VMName, Count):
        self.vm(VMName)["Cpu"] = Count

    def do_New_VHD(self, _pipeline, Path, SizeBytes, Fixed=False, Dynamic=False):
        if Path in self.files:
            raise FakeError(f"New-VHD: The file '{Path}' already exists.")
        self.files[Path] = b"VHDX" + SizeBytes.to_bytes(8, "little") + (b"F" if Fixed else b"D")

    def do_Add_VMHardDiskDrive(self, _pipeline, VMName, Path, **_slot):
        self.vm(VMName)["Disks"].append(Path)

    def do_Remove_VMNetworkAdapter(self, _pipeline, VMName, Name):
        vm = self.vm(VMName)
        vm["Adapters"] = [adapter for adapter in vm["Adapters"] if adapter["Name"] != Name]

    def do_Add_VMNetworkAdapter(self, _pipeline, VMName, Name, IsLegacy=False, SwitchName=None):
        self.vm(VMName)["Adapters"].append({"Name": Name, "MacAddress": "000000000000", "SwitchName": SwitchName,
                                            "IsLegacy": IsLegacy})

    def do_Connect_VMNetworkAdapter(self, _pipeline, VMName, SwitchName):
        if SwitchName not in [switch["Name"] for switch in self.switches]:
            raise FakeError(f"Connect-VMNetworkAdapter: Unable to find a virtual switch with name \"{SwitchName}\".")
        for adapter in self.vm(VMName)["Adapters"]:
            adapter["SwitchName"] = SwitchName

    def do_Set_VMNetworkAdapterVlan(self, _pipeline, VMName, Access, VlanId):
        for adapter in self.vm(VMName)["Adapters"]:
            adapter["VlanId"] = VlanId

    def do_Set_VMNetworkAdapter(self, _pipeline, VMName, StaticMacAddress):
        for adapter in self.vm(VMName)["Adapters"]:
            adapter["MacAddress"] = StaticMacAddress

    def do_Set_VMFirmware(self, _pipeline, VMName, EnableSecureBoot, SecureBootTemplate=None):
        vm = self.vm(VMName)
        if vm["State"] != "Off":  # Hyper-V: "Secure Boot settings cannot be changed while the VM is running"
            raise FakeError(f"The operation cannot be performed while the virtual machine is in its current state "
                                f"({vm['State']}).")
        vm["SecureBoot"], vm["SecureBootTemplate"] = EnableSecureBoot, SecureBootTemplate

    def do_Set_VMBios(self, _pipeline, VMName, StartupOrder):
        self.vm(VMName)["BootOrder"] = StartupOrder

    def do_Set_OctoprovFirstBootDevice(self, _pipeline, VMName, Device, Path=None):
        vm = self.vm(VMName)
        if Device == "Disk" and Path not in vm["Disks"]:  # the script finds the drive by its path, or throws
            raise FakeError(f"{VMName} has no Disk device to boot from")
        vm["FirstBoot"] = Device if Device == "Network" else Path

    def do_Add_VMDvdDrive(self, _pipeline, VMName, Path, **_slot):
        self.vm(VMName)["Dvds"].append(Path)

    def do_Set_VMDvdDrive(self, _pipeline, VMName, Path, **_slot):
        self.vm(VMName)["Dvds"][0] = Path

    def do_Write_OctoprovFileChunk(self, _pipeline, Path, Data, Append=False):
        self.files[Path] = (self.files.get(Path, b"") if Append else b"") + Data

    def do_Get_FileHash(self, _pipeline, LiteralPath, Algorithm):
        import hashlib

        return [hashlib.sha256(self.files[LiteralPath]).hexdigest().upper()]

    def do_Start_VM(self, _pipeline, Name):
        self.vm(Name)["State"] = "Running"

    def do_Stop_VM(self, _pipeline, Name, TurnOff, Force):
        self.vm(Name)["State"] = "Off"

    def do_Remove_VM(self, _pipeline, Name, Force):
        self.vm(Name)
        del self.vms[Name]

    def do_Remove_Item(self, _pipeline, LiteralPath, Force):
        if LiteralPath not in self.files:
            raise FakeError(f"Remove-Item: Cannot find path '{LiteralPath}' because it does not exist.")
        del self.files[LiteralPath]

    # --- Active Directory ------------------------------------------------------------------------

    def do_Find_OctoprovComputerAccount(self, _pipeline, Name, Server):
        account = self.accounts.get(Name.upper())
        return [json.dumps(account)] if account else []

    def do_Invoke_OctoprovDjoin(self, _pipeline, Domain, Machine, MachineOU=None, Reuse=False):
        if Machine.upper() in self.accounts and not Reuse:
            raise FakeError("djoin.exe failed with exit code 2: The account already exists.")
        ou = MachineOU or "CN=Computers," + ",".join(f"DC={part}" for part in Domain.split("."))
        self.accounts[Machine.upper()] = {"Name": Machine.upper(), "DistinguishedName": f"CN={Machine.upper()},{ou}",
                                          "Description": None}
        blob = base64.b64encode(f"ODJ blob for {Machine} in {Domain}".encode()).decode()
        return ["\ufeff" + blob + "\x00"]  # as djoin writes its save file: UTF-16 with a BOM and a NUL

    def do_Set_ADComputer(self, _pipeline, Identity, Server, Description):
        self.accounts[Identity.upper()]["Description"] = Description

    def do_Remove_ADObject(self, _pipeline, Identity, Server, Recursive, Confirm):
        name = next(key for key, account in self.accounts.items() if account["DistinguishedName"] == Identity)
        del self.accounts[name]


# --- the wire: WS-Management over HTTP, PSRP inside -----------------------------------------------


class FakeWinRm(BaseAdapter):
    """The requests adapter that answers pypsrp's HTTP requests for one host."""

    def __init__(self, host: FakeHost):
        super().__init__()
        self.host = host
        self.serializer = Serializer()
        self.pending: dict[str | None, bytes] = {}  # command id (None: the pool) -> PSRP data to receive
        self.partial: dict[str, bytes] = {}  # command id -> fragments of a CreatePipeline still arriving
        self.shell_id: str | None = None
        self.counter = 1
        self.dropping = False

    def send(self, request, **_kwargs):
        if self.host.refuse_login:
            return self._response(request, 401, b"", {"WWW-Authenticate": "Negotiate"})
        envelope = ET.fromstring(request.body)  # noqa: S314 - pypsrp's own request
        action = envelope.findtext(f"{{{S}}}Header/{{{WSA}}}Action")
        message_id = envelope.findtext(f"{{{S}}}Header/{{{WSA}}}MessageID")
        body = envelope.find(f"{{{S}}}Body")
        kind = action.rsplit("/", 1)[-1]
        reply = getattr(self, "on_" + kind.lower())(body)
        return self._response(request, 200, self._envelope(action + "Response", message_id, reply))

    def close(self):
        pass

    # one handler per WS-Management action

    def on_create(self, body) -> list[ET.Element]:
        self.shell_id = body.find(f"{{{RSP}}}Shell").get("ShellId")
        self.pending[None] = self._messages(None, [Capability("2.3", "2.0", "1.1.0.1"),
                                                   RunspacePoolStateMessage(RunspacePoolState.OPENED)])
        shell = ET.Element(f"{{{RSP}}}Shell")
        ET.SubElement(shell, f"{{{RSP}}}ShellId").text = self.shell_id
        return [shell]

    def on_command(self, body) -> list[ET.Element]:
        line = body.find(f"{{{RSP}}}CommandLine")
        command_id = line.get("CommandId")
        self._arrived(command_id, base64.b64decode(line.findtext(f"{{{RSP}}}Arguments")))
        answer = ET.Element(f"{{{RSP}}}CommandResponse")
        ET.SubElement(answer, f"{{{RSP}}}CommandId").text = command_id
        return [answer]

    def on_send(self, body) -> list[ET.Element]:
        stream = body.find(f"{{{RSP}}}Send/{{{RSP}}}Stream")
        self._arrived(stream.get("CommandId"), base64.b64decode(stream.text or ""))
        return []

    def on_receive(self, body) -> list[ET.Element]:
        command_id = body.find(f"{{{RSP}}}Receive/{{{RSP}}}DesiredStream").get("CommandId")
        if command_id is not None and self.dropping:
            self.dropping = False
            raise requests.exceptions.ConnectionError("('Connection aborted.', ConnectionResetError(104, "
                                                      "'Connection reset by peer'))")
        answer = ET.Element(f"{{{RSP}}}ReceiveResponse")
        stream = ET.SubElement(answer, f"{{{RSP}}}Stream", Name="stdout")
        stream.text = base64.b64encode(self.pending.pop(command_id, b"")).decode()
        ET.SubElement(answer, f"{{{RSP}}}CommandState", State=DONE)
        return [answer]

    def on_signal(self, _body) -> list[ET.Element]:
        return []

    def on_delete(self, _body) -> list[ET.Element]:
        self.shell_id = None
        return []

    # PSRP

    def _arrived(self, command_id: str, data: bytes) -> None:
        """Collect a pipeline's fragments; run it once its CreatePipeline message is complete."""
        complete = False
        while data:
            fragment, data = Fragment.unpack(data)
            self.partial[command_id] = self.partial.get(command_id, b"") + fragment.data
            complete = fragment.end
        if not complete:
            return
        message = self.partial.pop(command_id)
        message_type = struct.unpack("<I", message[4:8])[0]
        if message_type != MessageType.CREATE_PIPELINE:
            return
        text = message[40:].decode("utf-8-sig")
        pipeline = parse_pipeline(ET.fromstring(text), self.serializer)  # noqa: S314 - pypsrp's own message
        self.pending[command_id] = self._execute(command_id, pipeline)

    def _execute(self, command_id: str, pipeline: list[Call]) -> bytes:
        try:
            self.host.bind(pipeline)
        except BindingError as exc:  # terminating, as a ParameterBindingException is: nothing runs
            self.host.refused.append((pipeline, exc))
            return self._messages(command_id, [PipelineState(PSInvocationState.FAILED, _binding_error_record(exc))])
        try:
            output = self.host.run(pipeline)
        except FakeError as exc:
            record = _error_record(str(exc), pipeline[0].name)
            if pipeline[0].parameters.get("ErrorAction") == "Stop" or pipeline[0].script:
                return self._messages(command_id, [PipelineState(PSInvocationState.FAILED, record)])
            return self._messages(command_id, [record, PipelineState(PSInvocationState.COMPLETED)])
        if self.host.drop_after in [call.name for call in pipeline]:
            self.host.drop_after, self.dropping = None, True
        outputs = [(MessageType.PIPELINE_OUTPUT, value) for value in output or []]
        return self._messages(command_id, [*outputs, PipelineState(PSInvocationState.COMPLETED)])

    def _messages(self, command_id: str | None, items: list) -> bytes:
        data = b""
        pipeline_id = uuid.UUID(command_id) if command_id else uuid.UUID(int=0)
        for item in items:
            if isinstance(item, tuple):
                message_type, value = item
                xml = self.serializer.serialize(value)
            else:
                message_type, xml = item.MESSAGE_TYPE, self.serializer.serialize(item)
            payload = (struct.pack("<II", Destination.CLIENT, message_type) + uuid.UUID(self.shell_id).bytes_le
                       + pipeline_id.bytes_le + ET.tostring(xml, encoding="utf-8"))
            data += Fragment(self.counter, 0, payload, start=True, end=True).pack()
            self.counter += 1
        return data

    # HTTP

    @staticmethod
    def _envelope(action: str, relates_to: str, body: list[ET.Element]) -> bytes:
        envelope = ET.Element(f"{{{S}}}Envelope")
        header = ET.SubElement(envelope, f"{{{S}}}Header")
        ET.SubElement(header, f"{{{WSA}}}Action").text = action
        ET.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
        ET.SubElement(envelope, f"{{{S}}}Body").extend(body)
        return ET.tostring(envelope, encoding="utf-8")

    def _response(self, request, status: int, content: bytes, headers: dict | None = None) -> requests.Response:
        response = requests.Response()
        response.status_code, response.request, response.url = status, request, request.url
        response.headers.update({"Content-Type": "application/soap+xml;charset=UTF-8", **(headers or {})})
        response.raw, response.connection = _Raw(content), self
        response._content = content
        response.encoding = "utf-8"
        return response


class _Raw(io.BytesIO):
    def release_conn(self) -> None:
        pass


def _error_record(message: str, command: str) -> ErrorRecordMessage:
    record = ErrorRecordMessage()
    for name, _meta in record._extended_properties:
        setattr(record, name, None)
    record.invocation = record.extended_info_present = False
    record.fq_error, record.category, record.reason = f"{command}Failed", 8, "InvalidOperation"
    record.message = f"InvalidOperation: ({command}) [{command}]"
    record._to_string = message  # what PowerShell shows: the exception's message
    return record


ERROR_CATEGORY = {"InvalidArgument": 5, "ObjectNotFound": 13}  # System.Management.Automation.ErrorCategory


def _binding_error_record(exc: BindingError) -> ErrorRecordMessage:
    """The record PowerShell sends for a call its binder refuses: the exception's message, its
    FullyQualifiedErrorId (``NamedParameterNotFound,New-VM``) and category."""
    record = _error_record(exc.message, exc.command)
    record.fq_error = f"{exc.error_id},{exc.command}"
    record.category, record.reason = ERROR_CATEGORY.get(exc.category, 0), exc.exception
    record.message = f"{exc.category}: (:) [{exc.command}], {exc.exception}"
    return record


def parse_pipeline(root: ET.Element, serializer: Serializer) -> list[Call]:
    """The commands of a CREATE_PIPELINE message: name (or script text) and each parameter's value,
    deserialized from its CLIXML element as the host would."""
    from octoprov.domainjoin.commands import SCRIPTS as DOMAIN_SCRIPTS
    from octoprov.targets.hyperv.commands import SCRIPTS as HYPERV_SCRIPTS

    by_text = {text: name for name, text in {**HYPERV_SCRIPTS, **DOMAIN_SCRIPTS}.items()}
    calls = []
    for command in root.iter("Obj"):
        members = command.find("MS")
        if members is None or members.find("S[@N='Cmd']") is None:
            continue
        text = serializer.deserialize(members.find("S[@N='Cmd']"))
        is_script = members.findtext("B[@N='IsScript']") == "true"
        parameters, types = {}, {}
        for argument in members.findall("Obj[@N='Args']/LST/Obj/MS"):
            name, value = serializer.deserialize(argument.find("*[@N='N']")), argument.find("*[@N='V']")
            parameters[name] = serializer.deserialize(value)
            types[name] = value.findtext("TN/T") if value.tag == "Obj" else value.tag
        name = by_text.get(text, UNKNOWN_SCRIPT) if is_script else text
        calls.append(Call(name, parameters, text if is_script else None, types))
    return calls


def connect_to(*hosts: FakeHost, by_server: dict[str, FakeHost] | None = None):
    """A ``connect`` for the Hyper-V drivers: the real pypsrp WSMan for the endpoint (its settings,
    its requests session with the endpoint's authentication), with the fake host's adapter mounted
    where the session would open a connection. ``by_server`` picks a host by the endpoint's host
    name; a single host answers every endpoint."""
    table = by_server or {}

    def connect(where: Endpoint):
        host = table.get(where.server) or hosts[0]
        wsman = open_wsman(where)
        transport = wsman.transport
        transport.session = transport._build_session()  # what pypsrp builds on its first request
        adapter = FakeWinRm(host)
        transport.session.mount("https://", adapter)
        transport.session.mount("http://", adapter)
        connect.opened.append(wsman)
        return wsman

    connect.opened = []
    return connect


# --- fixtures wiring the fake hosts into Octoprov (for tests/test_hyperv_*.py) ---------------------

HV_ADDRESS, DC_ADDRESS = "hv01.yourdom.test", "dc01.yourdom.test"
ADMIN_PASSWORD, NODE_PASSWORD, DJOIN_PASSWORD = "Adm1n-Pa55word!hv", "N0de-Pa55word!hv", "Dj0in-Pa55word!hv"
API = "/api/v1/provisioning"


@dataclass
class Lab:
    """A Hyper-V host and a domain controller, both fake, behind the real API and database."""

    hv: FakeHost
    dc: FakeHost
    client: Any
    runtime: Any
    node_id: int
    image_id: int

    def body(self, **changes) -> dict:
        body = {"hostname": "SQL-01", "targetType": "hyperv", "hypervisorNodeId": self.node_id,
                "vm": {"cpu": 4, "memoryGb": 16, "generation": 2,
                       "disks": [{"sizeGb": 100, "purpose": "os"}, {"sizeGb": 200, "purpose": "data", "type": "fixed"}],
                       "network": {"vswitch": "vSwitch-Prod", "vlan": 100}},
                "os": {"imageId": self.image_id, "adminPassword": ADMIN_PASSWORD},
                "domain": {"join": True, "name": "yourdom.local", "ou": "OU=SQL Servers,DC=yourdom,DC=local",
                           "method": "offline"},
                "postInstall": {"installAgent": True}}
        body.update(changes)
        return body

    def task(self, **changes) -> dict:
        response = self.client.post(API + "/tasks", json=self.body(**changes))
        assert response.status_code == 201, response.json
        return response.json

    def ctx(self, task_id: int):
        from octoprov.context import load_context

        runtime = self.runtime
        with runtime.database.session() as session:
            return load_context(session, task_id, runtime.settings, runtime.database, runtime.vault)

    def node(self, name: str = "HV02", **options) -> int:
        response = self.client.post(API + "/hypervisors", json={
            "name": name, "kind": "hyperv", "endpoint": HV_ADDRESS, "username": "YOURDOM\\svc-hyperv",
            "password": NODE_PASSWORD, **options})
        assert response.status_code == 201, response.json
        return response.json["id"]


def lab_settings(data_dir):
    from cryptography.fernet import Fernet

    from octoprov.settings import Settings

    settings = Settings(data_dir=data_dir, secret_key=Fernet.generate_key().decode(),
                        public_url="http://192.0.2.10:8080", djoin_host=DC_ADDRESS,
                        djoin_username="YOURDOM\\svc-djoin", djoin_password=DJOIN_PASSWORD)
    settings.ensure_dirs()
    return settings


def make_lab(client, runtime, monkeypatch) -> Lab:
    """Every Hyper-V driver Octoprov builds (API validation, inventory, steps, dry runs) connects
    through the fake hosts: the seam is the default WSMan factory of the PowerShell runner."""
    hv, dc = FakeHost("HV01"), FakeHost("DC01")
    monkeypatch.setattr("octoprov.winrm.powershell.open_wsman", connect_to(hv, by_server={DC_ADDRESS: dc}))
    (runtime.settings.effective_images_dir / "ws2025.wim").write_bytes(b"wim")
    image = client.post(API + "/images", json={"name": "Windows Server 2025", "osType": "windows",
                                               "imagePath": "ws2025.wim"})
    assert image.status_code == 201, image.json
    lab = Lab(hv, dc, client, runtime, 0, image.json["id"])
    lab.node_id = lab.node("HV01")
    return lab
