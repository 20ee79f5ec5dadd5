"""Every cmdlet call Octoprov can emit, bound against Microsoft's documented parameter sets
(tests/data/windows-reference/powershell-cmdlets.json, through tests/support/cmdlet_reference.py):
the dry run's ``hyperv-commands.json`` over every combination of the Hyper-V options, its rollback,
the calls outside the dry run (inventory, validation, power, leftovers), the fixed scripts' own
``param()`` blocks and the calls inside them. First, that the checker refuses what PowerShell's
binder would; last, that the fake WinRM service refuses it too.

To check a call by hand: ``check_command(cmdlet("Set-VMFirmware", VMName="A", EnableSecureBoot=True))``
raises the BindingError PowerShell would report (here: OnOffState takes 'On' or 'Off', not a bool).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octoprov.context import NodeInfo, TaskContext
from octoprov.domainjoin import commands as djoin
from octoprov.errors import TargetUnreachable
from octoprov.postinstall.windows import EXIT_CODE, FORMATTED
from octoprov.settings import Settings
from octoprov.targets.hyperv import commands, dryrun
from octoprov.targets.hyperv.commands import GIB, DiskPlan, VmPlan
from octoprov.winrm.commands import Cmdlet, Pipeline, cmdlet, pipeline
from octoprov.winrm.connection import endpoint
from octoprov.winrm.powershell import CommandFailed, host_session
from tests.support.cmdlet_reference import (
    ANY_INPUT,
    Binding,
    BindingError,
    PipelineInput,
    bind,
    check_command,
    check_listed,
    check_pipeline,
    check_script_body,
    command_for,
    reference,
    script_command,
    script_invocations,
)
from tests.support.examples import task_spec
from tests.support.fake_pypsrp import FakeHost, connect_to

SCRIPTS = {**commands.SCRIPTS, **djoin.SCRIPTS}
OCTOPROV = Path(__file__).resolve().parents[2] / "octoprov"
CA, WINDOWS = "MicrosoftUEFICertificateAuthority", "MicrosoftWindows"
VHD = r"D:\Hyper-V\Virtual Hard Disks"
INSTALL_ISO = r"D:\ISO\WS2025.iso"


def call(name: str, parameters: dict[str, Any], pipeline_from: str | None = None) -> Binding:
    """One cmdlet by name (or fixed script), optionally fed by what ``pipeline_from`` writes."""
    command = command_for(name, SCRIPTS.get(name))
    given = PipelineInput(command_for(pipeline_from).outputs) if pipeline_from else None
    return bind(command, parameters, (), given)


# --- the checker refuses what PowerShell's binder refuses --------------------------------------------

@pytest.mark.parametrize(("name", "parameters", "pipeline_from", "error_id"), [
    ("Set-VMFirmware", {"VMName": "A", "EnableSecureBoot": True}, None, "ParameterArgumentValidationError"),
    ("Set-VMFirmware", {"VMName": "A", "EnableSecureBoot": "Enabled"}, None, "ParameterArgumentValidationError"),
    ("New-VHD", {"Path": "D:\\a.vhdx", "SizeBytes": "107374182400", "Fixed": True}, None,
     "ParameterArgumentTransformationError"),
    ("New-VHD", {"Path": "D:\\a.vhdx", "SizeBytes": 2**64, "Fixed": True}, None,
     "ParameterArgumentTransformationError"),
    ("New-VHD", {"Path": "D:\\a.vhdx", "SizeBytes": 1, "Fixed": True, "Dynamic": True}, None, "AmbiguousParameterSet"),
    ("New-VM", {"Name": "A", "Generation": 3}, None, "ParameterArgumentValidationError"),
    ("New-VM", {"Name": "A", "MemoryStartupBytes": True}, None, "ParameterArgumentTransformationError"),
    ("New-VM", {"Name": "A", "ErrorAction": "Halt"}, None, "ParameterArgumentValidationError"),
    ("Set-VMNetworkAdapter", {"VMName": "A", "SwitchName": "x"}, None, "NamedParameterNotFound"),
    ("Set-VMNetworkAdapter", {"VMName": "A", "StaticMac": "00155D010203"}, None, "NamedParameterNotFound"),
    ("Connect-VMNetworkAdapter", {"VMName": "A"}, None, "MissingMandatoryParameter"),
    ("Connect-VMNetworkAdapter", {"VMName": "A", "SwitchName": ""}, None,
     "ParameterArgumentValidationErrorEmptyStringNotAllowed"),
    ("Test-Path", {"LiteralPath": []}, None, "ParameterArgumentValidationErrorEmptyArrayNotAllowed"),
    ("Start-VM", {"Name": "A", "VMName": "B"}, None, "ParameterAlreadyBound"),
    ("Set-VM", {"Notes": "x"}, None, "MissingMandatoryParameter"),
    ("Set-VMProcessor", {"Count": 2}, "New-VHD", "InputObjectNotBound"),  # a VHD is not a VM
    ("Set-VMBios", {"VMName": "A", "StartupOrder": ["Network", "IDE"]}, None, "ParameterArgumentValidationError"),
    ("Add-VMNetworkAdapter", {"VMName": "A", "IsLegacy": "true"}, None, "ParameterArgumentTransformationError"),
    ("Remove-Item", {"Path": r"D:\VMs [prod]\a.vhdx"}, None, "LiteralValueToWildcardParameter"),
    ("Get-VM", {"Name": "web*"}, None, "LiteralValueToWildcardParameter"),
    ("Remove-ADComputer", {"Identity": 5}, None, "ParameterArgumentTransformationError"),
    ("Invoke-Command", {"ScriptBlock": "Get-VM"}, None, "ParameterArgumentTransformationError"),
    ("Get-Nothing", {}, None, "CommandNotFoundException"),
    ("Read-OctoprovVM", {"Name": ""}, None, "ParameterArgumentValidationErrorEmptyStringNotAllowed"),
    ("Read-OctoprovVM", {"VMName": "A"}, None, "NamedParameterNotFound"),
    ("Read-OctoprovSwitches", {"Name": "A"}, None, "NamedParameterNotFound"),
    ("Set-OctoprovFirstBootDevice", {"VMName": "A", "Device": "Floppy"}, None, "ParameterArgumentValidationError"),
    ("Set-OctoprovFirstBootDevice", {"VMName": "A"}, None, "MissingMandatoryParameter"),
    ("Write-OctoprovFileChunk", {"Path": "D:\\a", "Data": "text"}, None, "ParameterArgumentTransformationError"),
    ("Send-OctoprovEnterKey", {"VMName": "A", "Seconds": "10"}, None, "ParameterArgumentTransformationError"),
    ("Invoke-OctoprovDjoin", {"Domain": "d.local", "Machine": "A", "Reuse": 1}, None,
     "ParameterArgumentTransformationError"),
])
def test_the_checker_refuses_what_powershell_would(name, parameters, pipeline_from, error_id):
    with pytest.raises(BindingError) as refused:
        call(name, parameters, pipeline_from)
    assert refused.value.error_id == error_id, refused.value


@pytest.mark.parametrize(("name", "parameters", "pipeline_from", "parameter_set", "bound"), [
    ("Start-VM", {"VMName": "A"}, None, "Name", {"Name": "A"}),  # an alias, bound under the parameter's name
    ("new-vm", {"name": "A", "generation": 2, "memorystartupbytes": 2**31, "novhd": True, "erroraction": "stop"},
     None, "No VHD", {"Name": "A", "Generation": 2, "MemoryStartupBytes": 2**31, "NoVHD": True, "ErrorAction": "stop"}),
    ("Set-VM", {"Notes": "octoprov-task:1 creating"}, "New-VM", "VMObject", {"Notes": "octoprov-task:1 creating"}),
    ("Set-VMProcessor", {"Count": 2}, "New-VM", "VMObject", {"Count": 2}),
    ("New-VHD", {"Path": "D:\\a.vhdx", "SizeBytes": 64 * 1024 * GIB}, None, "DynamicWithoutSource",
     {"Path": "D:\\a.vhdx", "SizeBytes": 64 * 1024 * GIB}),
    ("Remove-ADComputer", {"Identity": "CN=A,DC=d,DC=local", "Server": "d.local", "Confirm": False}, None,
     "__AllParameterSets", {"Identity": "CN=A,DC=d,DC=local", "Server": "d.local", "Confirm": False}),
    ("Remove-Item", {"LiteralPath": r"D:\VMs [prod]\a.vhdx", "Force": True}, None, "LiteralPath",
     {"LiteralPath": r"D:\VMs [prod]\a.vhdx", "Force": True}),  # LiteralPath takes no wildcards
    ("Get-VMHost", {}, None, "ComputerName", {}),  # several sets fit: the default one
    ("Write-OctoprovFileChunk", {"Path": "D:\\a", "Data": b"", "Append": False}, None, "__AllParameterSets",
     {"Path": "D:\\a", "Data": b"", "Append": False}),  # [AllowEmptyCollection()]
])
def test_the_checker_binds_what_powershell_would(name, parameters, pipeline_from, parameter_set, bound):
    binding = call(name, parameters, pipeline_from)
    assert (binding.parameter_set, binding.bound) == (parameter_set, bound)


def test_the_reference_is_the_one_the_readme_describes():
    about = reference().about
    assert about["counts"]["cmdlets"] == 570 and about["counts"]["parameter_sets"] == 1665
    assert about["sources"][0]["commit"].startswith("f113d6bd")


def test_every_cmdlet_octoprov_names_is_documented():
    """Every ``cmdlet("...")`` in octoprov/ names a cmdlet of the reference (or of its supplement,
    transcribed from the same docs), and every ``fixed(...)`` script exists."""
    source = "\n".join(path.read_text(encoding="utf-8") for path in OCTOPROV.rglob("*.py"))
    named = set(re.findall(r'cmdlet\(\s*"([A-Za-z]+-[A-Za-z]+)"', source))
    assert len(named) >= 25
    assert {name for name in named if not reference().covers(name)} == set()
    assert set(re.findall(r'fixed\(PACKAGE,\s*"([^"]+)"', source)) == set(SCRIPTS)


# --- the fixed scripts: their param() blocks and the calls inside them --------------------------------

# cmdlets the scripts use that the reference does not cover: they take only script blocks and pipeline input
UNCOVERED_IN_SCRIPTS = {"Where-Object", "ForEach-Object", "Out-Null"}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_calls_inside_each_fixed_script_bind(name):
    report = check_script_body(name, SCRIPTS[name])
    assert report.errors == []
    assert report.uncovered <= UNCOVERED_IN_SCRIPTS


def test_the_param_blocks_as_octoprov_binds_them():
    declared = {name: {parameter.name: (parameter.type, parameter.mandatory)
                       for parameter in script_command(name, text).sets[0].parameters}
                for name, text in SCRIPTS.items()}
    assert declared == {
        "Find-OctoprovComputerAccount": {"Name": ("String", True), "Server": ("String", True)},
        "Invoke-OctoprovDjoin": {"Domain": ("String", True), "Machine": ("String", True),
                                 "MachineOU": ("String", False), "Reuse": ("Boolean", False)},
        "Read-OctoprovHostStorage": {}, "Read-OctoprovSwitches": {}, "Read-OctoprovVM": {"Name": ("String", True)},
        "Send-OctoprovEnterKey": {"VMName": ("String", True), "Seconds": ("Int32", False)},
        "Set-OctoprovFirstBootDevice": {"VMName": ("String", True), "Device": ("String", True),
                                        "Path": ("String", False)},
        "Write-OctoprovFileChunk": {"Path": ("String", True), "Data": ("Byte[]", True), "Append": ("Boolean", False)}}
    assert script_command("Send-OctoprovEnterKey", SCRIPTS["Send-OctoprovEnterKey"]).sets[0].parameters[1].default == 10


def test_a_value_reaching_a_wildcard_parameter_inside_a_script_is_refused():
    """The script's parameters carry the values bound to them into the calls it makes."""
    text = "param([Parameter(Mandatory)][string]$Name)\n$vm = Get-VM -Name $Name -ErrorAction Ignore\n"
    assert check_script_body("Find", text, {"Name": "web01"}).errors == []
    [error] = check_script_body("Find", text, {"Name": "web[1]"}).errors
    assert error.error_id == "LiteralValueToWildcardParameter" and "in Find: Get-VM" in error.message
    [read] = check_command(commands.read_vm("web[1]"))  # Read-OctoprovVM compares the name, never matches it
    assert read.bound == {"Name": "web[1]"}


def test_the_script_scanner_finds_commands_their_arguments_and_pipelines():
    text = """param([string]$VMName, [switch]$Now)
# Get-Fake -Name in a comment is no call
$x = "Get-Fake is text"; $first = Get-VMNetworkAdapter -VMName $VMName |
    Select-Object -First 1
foreach ($d in @(Get-VMDvdDrive -VMName:$VMName)) { Remove-Item -LiteralPath $d.Path -Force -ErrorAction Ignore }
ConvertTo-Json -Compress -InputObject ([ordered]@{ A = @(Get-VMHost) }) -Depth 2 `
    -Verbose
Join-Path $env:SystemRoot 'System32\\djoin.exe' 2>&1 | Out-Null
"""
    found = [(item.name, item.named, item.positional, item.pipeline is not None)
             for item in script_invocations(text, {"VMName": "SQL-01"})]
    assert [entry[0] for entry in found] == ["Get-VMNetworkAdapter", "Select-Object", "Get-VMDvdDrive", "Remove-Item",
                                             "ConvertTo-Json", "Get-VMHost", "Join-Path", "Out-Null"]
    assert found[0][1] == {"VMName": "SQL-01"} and found[1][1:] == ({"First": 1}, (), True)
    assert found[2][1] == {"VMName": "SQL-01"}
    assert found[3][1]["Force"] is True and found[3][1]["ErrorAction"] == "Ignore"
    assert set(found[4][1]) == {"Compress", "InputObject", "Depth", "Verbose"} and found[4][1]["Depth"] == 2
    assert found[6][2][1] == "System32\\djoin.exe" and found[7][3]


# --- the dry run over every Hyper-V option combination ---------------------------------------------

FIRMWARE = [(1, None, CA), (2, False, CA), (2, True, CA), (2, True, WINDOWS)]  # generation, secureboot, template
DISKS = [
    [{"sizeGb": 40, "purpose": "os"}],
    [{"sizeGb": 100, "purpose": "os", "type": "fixed"}, {"sizeGb": 200, "purpose": "data"},
     {"sizeGb": 50, "purpose": "log", "type": "fixed"}],
    [{"sizeGb": 65536, "purpose": "os", "type": "fixed"},
     *({"sizeGb": 1 + index, "purpose": "data", "type": ("fixed", "dynamic")[index % 2]} for index in range(7))],
]
STORAGE = [r"E:\VMs", r"E:\Hyper-V [prod]", "asked", "asked, host down"]
DOMAINS = [
    {"join": False},
    {"join": True, "name": "yourdom.local", "ou": "OU=SQL Servers,DC=yourdom,DC=local", "method": "offline"},
    {"join": True, "name": "yourdom.local", "method": "offline"},
    {"join": True, "name": "yourdom.local", "method": "online",
     "serviceAccount": {"username": "YOURDOM\\svc-join", "password": "J0in-Pa55!"}},
]
OPTIONS = list(itertools.product(FIRMWARE, ("pxe", "iso"), (None, 1, 4094), (None, "00:15:5d:aa:bb:cc"), DISKS,
                                 STORAGE, (1, 2, 12288), DOMAINS))
# what the sweep must reach: each cmdlet and script, by the parameter sets it binds
DRY_RUN_SETS = {
    "Read-OctoprovHostStorage": {"__AllParameterSets"}, "Read-OctoprovVM": {"__AllParameterSets"},
    "Test-Path": {"LiteralPath"}, "New-VM": {"No VHD"}, "Set-VM": {"VMObject", "Name"},
    "Set-VMProcessor": {"VMName"}, "New-VHD": {"FixedWithoutSource", "DynamicWithoutSource"},
    "Add-VMHardDiskDrive": {"VMName"}, "Connect-VMNetworkAdapter": {"Name_SwitchName"},
    "Remove-VMNetworkAdapter": {"VMName"}, "Add-VMNetworkAdapter": {"VMName"}, "Set-VMNetworkAdapterVlan": {"VMName"},
    "Set-VMNetworkAdapter": {"VMName"}, "Set-VMFirmware": {"VMName"}, "Set-VMBios": {"VMName"},
    "Set-OctoprovFirstBootDevice": {"__AllParameterSets"}, "Write-OctoprovFileChunk": {"__AllParameterSets"},
    "Get-FileHash": {"LiteralPath"}, "Select-Object": {"DefaultParameter"}, "Add-VMDvdDrive": {"VMName"},
    "Set-VMDvdDrive": {"VMName"}, "Start-VM": {"Name"}, "Send-OctoprovEnterKey": {"__AllParameterSets"},
    "Stop-VM": {"Name"}, "Remove-VM": {"Name"}, "Remove-Item": {"LiteralPath"},
    "Find-OctoprovComputerAccount": {"__AllParameterSets"}, "Invoke-OctoprovDjoin": {"__AllParameterSets"},
    "Set-ADComputer": {"Identity"}, "Remove-ADObject": {"__AllParameterSets"},
}


class StubHost:
    """The Hyper-V host the dry run asks for its default VHD folder: what it is asked is checked too."""

    up = True
    asked: list[Binding]

    def __init__(self) -> None:
        self.asked = []

    def json(self, command: Cmdlet | Pipeline) -> list[Any]:
        self.asked += check_command(command)
        return [{"VirtualHardDiskPath": VHD, "VirtualMachinePath": r"D:\Hyper-V", "Volumes": []}]

    @contextlib.contextmanager
    def session(self, *_args: Any, **_kwargs: Any) -> Iterator[StubHost]:
        if not self.up:
            raise TargetUnreachable("connection to WinRM on HV01 failed")
        yield self


@pytest.fixture
def stub_host(monkeypatch) -> StubHost:
    host = StubHost()
    monkeypatch.setattr(dryrun, "host_session", host.session)
    return host


def context(option: tuple, settings: dict[str, Settings], nodes: dict[str, NodeInfo], host: StubHost) -> TaskContext:
    (generation, secureboot, template), boot, vlan, mac, disks, storage, memory, domain = option
    vm = {"cpu": 4, "memoryGb": memory, "generation": generation, "secureboot": secureboot, "disks": disks,
          "network": {"vswitch": "vSwitch-Prod", "vlan": vlan}}
    if not storage.startswith("asked"):
        vm["storagePath"] = storage
    host.up = storage != "asked, host down"
    spec = task_spec("hyperv", "SQL-01", vm=vm, domain=domain, **({"macAddress": mac} if mac else {}))
    return TaskContext(task_id=0, hostname="SQL-01", target_type="hyperv", os_type="windows", spec=spec,
                       mac_address=mac, machine_ref=None, node=nodes[boot], settings=settings[template],
                       database=None, vault=None)


def listed_commands(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(step, command) of a hyperv-commands.json, steps then rollback; the answer ISO's bytes, shown
    by what they stand for, put back as bytes."""
    listed = json.loads(text)
    for step in [*listed["steps"], *listed["rollback"]]:
        for entry in step["commands"]:
            for part in entry.get("pipeline", [entry]):
                if part.get("script") == "Write-OctoprovFileChunk" and part["parameters"]["Data"] == dryrun.ANSWER_ISO:
                    part["parameters"]["Data"] = b""
            yield step["step"], entry


def test_every_command_of_every_dry_run_binds(tmp_path, stub_host):
    """The dry run of each of the option combinations (generation 1/2, Secure Boot off/on with each
    template, PXE/ISO boot, VLAN or none, static MAC or none, one to eight fixed and dynamic disks,
    storagePath given (with wildcard characters too) or asked of the host (answering or not), memory
    of 1, 2 and 12288 GB, no, offline (with and without OU) and online join): every command of every
    step and of the rollback binds to a documented parameter set. Commands repeat across
    combinations; each distinct one is checked once."""
    settings = {template: Settings(data_dir=tmp_path, djoin_host="dc01.yourdom.test", djoin_username="YOURDOM\\svc",
                                   djoin_password="Dj0in-Pa55!", hyperv_secure_boot_template=template)
                for template in (CA, WINDOWS)}
    nodes = {boot: NodeInfo(1, "HV01", "hyperv", "hv01.yourdom.test",
                            {"hyperv": {"bootMode": boot, "installIso": INSTALL_ISO if boot == "iso" else None}},
                            {"password": "N0de-Pa55!"}, "YOURDOM\\svc-hyperv") for boot in ("pxe", "iso")}
    checked: dict[str, list[Binding]] = {}
    failures: list[str] = []
    steps: set[str] = set()
    for option in OPTIONS:
        text, _notes = dryrun.planned_commands(context(option, settings, nodes, stub_host))
        for step, entry in listed_commands(text):
            steps.add(step)
            key = repr(entry)
            if key in checked:
                continue
            try:
                checked[key] = check_listed(entry, SCRIPTS)
            except BindingError as exc:
                checked[key] = []
                failures.append(f"{option}: {step}: {entry}: {exc.error_id}: {exc}")
    assert failures == []
    assert len(OPTIONS) == 6912 and steps == {"create_vm", "prepare_domain_join", "register_mac", "power_on",
                                              "boot_from_disk", "destroy_machine", "remove_computer_account"}
    reached: dict[str, set[str]] = {}
    for binding in [*itertools.chain.from_iterable(checked.values()), *stub_host.asked]:
        reached.setdefault(binding.command, set()).add(binding.parameter_set)
    assert reached == DRY_RUN_SETS


# --- the calls outside the dry run -------------------------------------------------------------------

def plan(**changes: Any) -> VmPlan:
    values: dict[str, Any] = {
        "name": "SQL-01", "task_id": 42, "generation": 2, "cpu": 4, "memory_bytes": 16 * GIB, "vm_path": None,
        "disks": (DiskPlan(VHD + r"\SQL-01-os.vhdx", 100 * GIB, False),), "switch": "vSwitch-Prod", "vlan": None,
        "mac": "02:00:00:00:00:01", "secure_boot": True, "boot_mode": "iso", "install_iso": INSTALL_ISO,
        "answer_iso": VHD + r"\SQL-01-answer.iso", **changes}
    return VmPlan(**values)


def outside_the_dry_run() -> list[Cmdlet | Pipeline]:
    """What the drivers run that a dry run does not list: inventory, the checks at POST /tasks,
    leftovers of an interrupted attempt, a partly attached pair of DVDs, a large answer ISO, power
    off, a repeated join, the rollback with the account's real name; and post-install's own calls."""
    gen1 = plan(generation=1, secure_boot=False)
    return [
        commands.read_switches(), commands.read_host_storage(), commands.existing_files([INSTALL_ISO]),
        commands.existing_files([VHD + r"\SQL-01-os.vhdx", VHD + r"\SQL-01-data.vhdx"]),
        *commands.attach_isos(plan(), [INSTALL_ISO]), *commands.attach_isos(gen1, [INSTALL_ISO]),
        *commands.upload(VHD + r"\SQL-01-answer.iso", bytes(3 * commands.CHUNK_BYTES)),
        commands.stop_vm("SQL-01"), *commands.remove_vm("SQL-01", [], running=False),
        pipeline(cmdlet("Remove-Item", LiteralPath=VHD + r"\SQL-01-answer.iso", Force=True)),  # boot.cleanup_boot
        djoin.provision_join("yourdom.local", "SQL-01", None, reuse=True),
        djoin.remove_computer("CN=SQL-01,OU=SQL Servers,DC=yourdom,DC=local", "yourdom.local"),
        EXIT_CODE,
    ]


def test_the_calls_outside_the_dry_run_bind():
    bound = [binding for command in outside_the_dry_run() for binding in check_command(command)]
    assert {binding.command for binding in bound} >= {"Read-OctoprovSwitches", "Test-Path", "Add-VMDvdDrive",
                                                      "Write-OctoprovFileChunk", "Stop-VM", "Invoke-OctoprovDjoin",
                                                      "Get-Variable"}
    [formatted] = check_pipeline([(FORMATTED.name, dict(FORMATTED.parameters), None)], ANY_INPUT)
    assert formatted.from_pipeline == "InputObject"  # a post-install script's output, formatted as text


def test_every_command_octoprov_names_is_checked_here():
    """Each cmdlet or fixed script named in octoprov/ is among what the sweep reaches or what the
    test above checks, so a new command cannot go unchecked."""
    source = "\n".join(path.read_text(encoding="utf-8") for path in OCTOPROV.rglob("*.py"))
    named = set(re.findall(r'cmdlet\(\s*"([A-Za-z]+-[A-Za-z]+)"', source)) | set(SCRIPTS)
    outside = {item.name for command in outside_the_dry_run()
               for item in ((command,) if isinstance(command, Cmdlet) else command)}
    assert named - set(DRY_RUN_SETS) - outside - {FORMATTED.name} == set()


# --- the fake WinRM service refuses what the host would --------------------------------------------

WHERE = endpoint("hv01.yourdom.test", None, "YOURDOM\\svc-hyperv", "Hv-Pa55!", "HV01")


@pytest.mark.filterwarnings("ignore::pypsrp.negotiate.NoCertificateRetrievedWarning")
def test_the_fake_host_refuses_a_call_no_parameter_set_takes():
    host = FakeHost()
    refused = [cmdlet("Set-VMFirmware", VMName="A", EnableSecureBoot=True),
               cmdlet("New-VHD", Path="D:\\a.vhdx", SizeBytes=str(100 * GIB), Fixed=True),
               cmdlet("Set-VMNetworkAdapter", VMName="A", SwitchName="vSwitch-Prod"),
               cmdlet("Get-VM", Name="SQL-*"),
               Cmdlet("Read-OctoprovVM", (("VMName", "A"),), SCRIPTS["Read-OctoprovVM"])]
    with host_session(WHERE, connect_to(host)) as session:
        for command in refused:
            with pytest.raises(CommandFailed) as failed:
                session.run(command)
            assert failed.value.message.startswith(f"{command.name} on HV01: ")
        session.run(pipeline(cmdlet("New-VM", Name="A", Generation=2, MemoryStartupBytes=4 * GIB, NoVHD=True),
                             cmdlet("Set-VM", Notes="octoprov-task:1")))
        session.run(cmdlet("Start-VM", VMName="A"))  # an alias reaches the model under the parameter's name
    assert [(calls[0].name, error.error_id) for calls, error in host.refused] == [
        ("Set-VMFirmware", "ParameterArgumentValidationError"), ("New-VHD", "ParameterArgumentTransformationError"),
        ("Set-VMNetworkAdapter", "NamedParameterNotFound"), ("Get-VM", "LiteralValueToWildcardParameter"),
        ("Read-OctoprovVM", "NamedParameterNotFound")]
    assert "cannot be found that matches parameter name 'SwitchName'" in str(host.refused[2][1])
    assert host.names() == ["New-VM", "Set-VM", "Start-VM"]  # nothing refused ran
    assert host.vms["A"]["State"] == "Running" and host.calls[-1].bound == {"Name": "A"}
