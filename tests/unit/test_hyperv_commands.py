"""The Hyper-V target's commands as data: one table row per option, and the WinRM settings pypsrp's
WSMan object is built with. Nothing here talks to a host."""

from __future__ import annotations

import pytest

from octoprov.domainjoin import commands as djoin
from octoprov.errors import PermanentError
from octoprov.targets import tags
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.commands import GIB, DiskPlan, VmPlan
from octoprov.taskspec import DiskSpec
from octoprov.winrm.commands import cmdlet, to_json
from octoprov.winrm.connection import endpoint, open_wsman

SCRIPTS = {**commands.SCRIPTS, **djoin.SCRIPTS}  # the fixed scripts of the Hyper-V target and of the djoin backend

NAME = "SQL-01"


def plan(**changes) -> VmPlan:
    values = {"name": NAME, "task_id": 42, "generation": 2, "cpu": 4, "memory_bytes": 16 * GIB,
              "vm_path": None, "disks": (DiskPlan(r"D:\VHD\SQL-01-os.vhdx", 100 * GIB, False),),
              "switch": "vSwitch-Prod", "vlan": None, "mac": "00:15:5d:01:02:03", "secure_boot": True, **changes}
    return VmPlan(**values)


def disk_specs(*disks: dict) -> list[DiskSpec]:
    """The request's disks as the validated request holds them."""
    return [DiskSpec.model_validate(disk) for disk in disks]


def flat(pipelines) -> list[tuple[str, dict]]:
    """(name, parameters) of every cmdlet, pipelines flattened in order."""
    return [(item.name, dict(item.parameters)) for command in pipelines for item in command]


def names(pipelines) -> list[str]:
    return [name for name, _ in flat(pipelines)]


def find(pipelines, name: str) -> list[dict]:
    return [parameters for found, parameters in flat(pipelines) if found == name]


# --- creation -------------------------------------------------------------------------------------

def test_generation_2_pxe_follows_the_specs_script_in_order():
    steps = commands.create_vm(plan())
    assert names(steps) == ["New-VM", "Set-VM", "Set-VMProcessor", "New-VHD", "Add-VMHardDiskDrive",
                            "Connect-VMNetworkAdapter", "Set-VMNetworkAdapter", "Set-VMFirmware",
                            "Set-OctoprovFirstBootDevice", "Set-VM"]
    assert [len(command) for command in steps][:2] == [2, 1]  # New-VM's output goes straight into Set-VM
    assert flat(steps)[0] == ("New-VM", {"Name": NAME, "Generation": 2, "MemoryStartupBytes": 16 * GIB,
                                         "NoVHD": True, "ErrorAction": "Stop"})
    assert flat(steps)[1] == ("Set-VM", {"Notes": "octoprov-task:42 creating"})
    assert flat(steps)[-1] == ("Set-VM", {"Name": NAME, "Notes": "octoprov-task:42"})
    assert find(steps, "Set-VMProcessor") == [{"VMName": NAME, "Count": 4}]
    assert find(steps, "Connect-VMNetworkAdapter") == [{"VMName": NAME, "SwitchName": "vSwitch-Prod"}]
    assert find(steps, "Set-VMNetworkAdapter") == [{"VMName": NAME, "StaticMacAddress": "00155D010203"}]
    assert find(steps, "Set-OctoprovFirstBootDevice") == [{"VMName": NAME, "Device": "Network"}]


@pytest.mark.parametrize(("secure_boot", "template", "expected"), [
    (True, commands.SECURE_BOOT_TEMPLATE,
     {"VMName": NAME, "EnableSecureBoot": "On", "SecureBootTemplate": "MicrosoftUEFICertificateAuthority"}),
    (True, "MicrosoftWindows", {"VMName": NAME, "EnableSecureBoot": "On", "SecureBootTemplate": "MicrosoftWindows"}),
    (False, commands.SECURE_BOOT_TEMPLATE, {"VMName": NAME, "EnableSecureBoot": "Off"}),
], ids=["uefi-ca-template", "windows-template", "off"])
def test_secure_boot_on_generation_2(secure_boot, template, expected):
    assert find(commands.create_vm(plan(secure_boot=secure_boot, secure_boot_template=template)),
                "Set-VMFirmware") == [expected]


def test_generation_1_pxe_needs_a_legacy_adapter_and_the_bios_order():
    steps = commands.create_vm(plan(generation=1, secure_boot=False, vlan=100))
    assert "Set-VMFirmware" not in names(steps) and "Connect-VMNetworkAdapter" not in names(steps)
    assert find(steps, "Remove-VMNetworkAdapter") == [{"VMName": NAME, "Name": "Network Adapter"}]
    assert find(steps, "Add-VMNetworkAdapter") == [{"VMName": NAME, "Name": "Legacy Network Adapter",
                                                    "IsLegacy": True, "SwitchName": "vSwitch-Prod"}]
    assert find(steps, "Set-VMNetworkAdapterVlan") == [{"VMName": NAME, "Access": True, "VlanId": 100}]
    assert find(steps, "Set-VMBios") == [{"VMName": NAME,
                                          "StartupOrder": ["LegacyNetworkAdapter", "IDE", "CD", "Floppy"]}]
    assert find(steps, "New-VM")[0]["Generation"] == 1


@pytest.mark.parametrize(("vlan", "expected"), [
    (None, []), (100, [{"VMName": NAME, "Access": True, "VlanId": 100}]),
    (4094, [{"VMName": NAME, "Access": True, "VlanId": 4094}])])
def test_vlan_access_mode(vlan, expected):
    assert find(commands.create_vm(plan(vlan=vlan)), "Set-VMNetworkAdapterVlan") == expected


@pytest.mark.parametrize(("generation", "slots"), [
    (2, [{}, {}, {}]),
    (1, [{"ControllerType": "IDE", "ControllerNumber": 0, "ControllerLocation": 0}, {"ControllerType": "SCSI"},
         {"ControllerType": "SCSI"}]),
])
def test_one_vhd_per_disk_fixed_or_dynamic(generation, slots):
    disks = commands.disk_plans(NAME, r"D:\Hyper-V\Virtual Hard Disks", disk_specs(
        {"sizeGb": 200, "purpose": "data", "type": "fixed"}, {"sizeGb": 100, "purpose": "os", "type": "dynamic"},
        {"sizeGb": 50, "purpose": "data"}))
    steps = commands.create_vm(plan(generation=generation, disks=disks, secure_boot=False))
    assert find(steps, "New-VHD") == [
        {"Path": r"D:\Hyper-V\Virtual Hard Disks\SQL-01-os.vhdx", "SizeBytes": 100 * GIB, "Dynamic": True},
        {"Path": r"D:\Hyper-V\Virtual Hard Disks\SQL-01-data-1.vhdx", "SizeBytes": 200 * GIB, "Fixed": True},
        {"Path": r"D:\Hyper-V\Virtual Hard Disks\SQL-01-data-2.vhdx", "SizeBytes": 50 * GIB, "Dynamic": True}]
    attached = find(steps, "Add-VMHardDiskDrive")
    assert [entry["Path"] for entry in attached] == [entry["Path"] for entry in find(steps, "New-VHD")]
    assert [{k: v for k, v in entry.items() if k not in ("VMName", "Path")} for entry in attached] == slots
    # each VHD is created right before it is attached
    sequence = names(steps)
    assert sequence[sequence.index("New-VHD"):][:6] == ["New-VHD", "Add-VMHardDiskDrive"] * 3


@pytest.mark.parametrize(("vm_path", "expected"), [(None, None), (r"E:\VMs", r"E:\VMs")])
def test_vm_folder_is_the_storage_path_or_the_hosts_default(vm_path, expected):
    assert find(commands.create_vm(plan(vm_path=vm_path)), "New-VM")[0].get("Path") == expected


def test_iso_mode_creates_without_boot_order_and_attaches_both_dvds():
    iso = plan(boot_mode="iso", install_iso=r"D:\ISO\WS2025.iso", answer_iso=r"D:\VHD\SQL-01-answer.iso")
    assert "Set-OctoprovFirstBootDevice" not in names(commands.create_vm(iso))
    assert flat(commands.attach_isos(iso, [])) == [
        ("Add-VMDvdDrive", {"VMName": NAME, "Path": r"D:\ISO\WS2025.iso"}),
        ("Add-VMDvdDrive", {"VMName": NAME, "Path": r"D:\VHD\SQL-01-answer.iso"})]
    assert flat(commands.attach_isos(iso, [r"D:\ISO\WS2025.iso"])) == [
        ("Add-VMDvdDrive", {"VMName": NAME, "Path": r"D:\VHD\SQL-01-answer.iso"})]
    assert flat(commands.boot_order(iso)) == [
        ("Set-OctoprovFirstBootDevice", {"VMName": NAME, "Device": "DVD", "Path": r"D:\ISO\WS2025.iso"})]


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, ("Set-OctoprovFirstBootDevice", {"VMName": NAME, "Device": "Disk", "Path": r"D:\VHD\SQL-01-os.vhdx"})),
    ({"boot_mode": "iso", "install_iso": r"D:\ISO\WS2025.iso"},
     ("Set-OctoprovFirstBootDevice", {"VMName": NAME, "Device": "Disk", "Path": r"D:\VHD\SQL-01-os.vhdx"})),
    ({"generation": 1, "secure_boot": False},
     ("Set-VMBios", {"VMName": NAME, "StartupOrder": ["IDE", "LegacyNetworkAdapter", "CD", "Floppy"]})),
    ({"generation": 1, "secure_boot": False, "boot_mode": "iso", "install_iso": r"D:\ISO\WS2025.iso"},
     ("Set-VMBios", {"VMName": NAME, "StartupOrder": ["IDE", "CD", "LegacyNetworkAdapter", "Floppy"]})),
], ids=["gen2-pxe", "gen2-iso", "gen1-pxe", "gen1-iso"])
def test_once_installed_the_os_disk_goes_first(changes, expected):
    """The OS disk (the plan's first) ahead of what the installation booted from, which stays after it."""
    assert flat(commands.disk_first(plan(**changes))) == [expected]


def test_iso_mode_generation_1_uses_the_ide_dvd_drives_and_keeps_the_synthetic_nic():
    iso = plan(generation=1, secure_boot=False, boot_mode="iso", install_iso=r"D:\ISO\WS2025.iso",
               answer_iso=r"D:\VHD\SQL-01-answer.iso")
    assert "Connect-VMNetworkAdapter" in names(commands.create_vm(iso))
    assert "Add-VMNetworkAdapter" not in names(commands.create_vm(iso))
    assert flat(commands.attach_isos(iso, [])) == [
        ("Set-VMDvdDrive", {"VMName": NAME, "ControllerNumber": 1, "ControllerLocation": 0,
                            "Path": r"D:\ISO\WS2025.iso"}),
        ("Add-VMDvdDrive", {"VMName": NAME, "ControllerNumber": 1, "ControllerLocation": 1,
                            "Path": r"D:\VHD\SQL-01-answer.iso"})]
    assert find(commands.boot_order(iso), "Set-VMBios") == [{"VMName": NAME,
                                                             "StartupOrder": ["CD", "IDE", "LegacyNetworkAdapter",
                                                                              "Floppy"]}]


def test_disk_names_put_the_os_disk_first_and_number_repeated_purposes():
    disks = commands.disk_plans("WEB", "D:\\VHD", disk_specs({"sizeGb": 1, "purpose": "log"},
                                                          {"sizeGb": 2, "purpose": "os"},
                                                          {"sizeGb": 3, "purpose": "log"},
                                                          {"sizeGb": 4, "purpose": "tempdb"}))
    assert [disk.path for disk in disks] == [r"D:\VHD\WEB-os.vhdx", r"D:\VHD\WEB-log-1.vhdx", r"D:\VHD\WEB-log-2.vhdx",
                                             r"D:\VHD\WEB-tempdb.vhdx"]


# --- MAC, tag, power, removal ---------------------------------------------------------------------

def test_the_derived_mac_is_stable_local_and_unicast():
    mac = commands.task_mac(42)
    assert mac == commands.task_mac(42) != commands.task_mac(43)
    first = int(mac[:2], 16)
    assert first & 0b10 and not first & 0b1  # locally administered, unicast: never in Hyper-V's 00:15:5d pool
    assert plan(mac=mac).hyperv_mac == mac.replace(":", "").upper()


@pytest.mark.parametrize(("notes", "expected"), [
    ("octoprov-task:42", (42, True)), ("octoprov-task:42 creating", (42, False)), ("", (None, False)),
    (None, (None, False)), ("SQL server of the finance team", (None, False)), ("octoprov-task:x", (None, False)),
])
def test_tag_in_the_notes(notes, expected):
    assert tags.task_of(notes) == expected


@pytest.mark.parametrize(("running", "expected"), [
    (True, ["Stop-VM", "Remove-VM", "Remove-Item", "Remove-Item"]),
    (False, ["Remove-VM", "Remove-Item", "Remove-Item"]),
])
def test_rollback_order(running, expected):
    steps = commands.remove_vm(NAME, [r"D:\a.vhdx", r"D:\SQL-01-answer.iso"], running=running)
    assert names(steps) == expected
    assert find(steps, "Remove-Item")[1] == {"LiteralPath": r"D:\SQL-01-answer.iso", "Force": True}
    if running:
        assert find(steps, "Stop-VM") == [{"Name": NAME, "TurnOff": True, "Force": True}]


def test_power():
    assert flat([commands.start_vm(NAME)]) == [("Start-VM", {"Name": NAME})]
    assert flat([commands.press_enter(NAME)]) == [("Send-OctoprovEnterKey", {"VMName": NAME, "Seconds": 10})]


# --- ISO upload, djoin, JSON ------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "chunks"), [(0, 1), (1, 1), (commands.CHUNK_BYTES, 1),
                                              (commands.CHUNK_BYTES + 1, 2), (3 * commands.CHUNK_BYTES, 3)])
def test_upload_in_chunks_then_hash(size, chunks):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    steps = commands.upload(r"D:\a.iso", data)
    writes = find(steps, "Write-OctoprovFileChunk")
    assert len(writes) == chunks
    assert b"".join(entry["Data"] for entry in writes) == data
    assert [entry["Append"] for entry in writes] == [False] + [True] * (chunks - 1)
    assert names(steps)[-2:] == ["Get-FileHash", "Select-Object"]


@pytest.mark.parametrize(("ou", "reuse", "expected"), [
    ("OU=SQL Servers,DC=yourdom,DC=local", False,
     {"Domain": "yourdom.local", "Machine": NAME, "MachineOU": "OU=SQL Servers,DC=yourdom,DC=local", "Reuse": False}),
    (None, True, {"Domain": "yourdom.local", "Machine": NAME, "Reuse": True}),
])
def test_djoin_commands(ou, reuse, expected):
    assert dict(djoin.provision_join("yourdom.local", NAME, ou, reuse).parameters) == expected
    assert djoin.find_computer(NAME, "yourdom.local").parameters == (("Name", NAME), ("Server", "yourdom.local"))
    assert dict(djoin.tag_computer(NAME, "yourdom.local", 42).parameters)["Description"] == "octoprov-task:42"
    assert dict(djoin.remove_computer("CN=SQL-01,DC=x", "yourdom.local").parameters) == {
        "Identity": "CN=SQL-01,DC=x", "Server": "yourdom.local", "Recursive": True, "Confirm": False}


def test_json_shows_file_contents_by_size_and_names_scripts():
    assert to_json(commands.upload("D:\\a.iso", b"secret")[0]) == {
        "script": "Write-OctoprovFileChunk", "parameters": {"Path": "D:\\a.iso", "Data": "<6 bytes>", "Append": False}}
    assert to_json(cmdlet("Start-VM", Name=NAME)) == {"cmdlet": "Start-VM", "parameters": {"Name": NAME}}
    assert to_json(commands.create_vm(plan())[0])["pipeline"][1]["cmdlet"] == "Set-VM"


def test_fixed_scripts_declare_every_parameter_they_are_given():
    """A fixed script gets its values through its param() block only; a name the builder sends that
    the block does not declare would fail on the host, so the two are checked against each other."""
    import re

    iso = plan(boot_mode="iso", install_iso="D:\\a.iso", answer_iso="D:\\b.iso")
    sent = [*flat_cmdlets(commands.create_vm(plan())), *flat_cmdlets(commands.boot_order(iso)),
            *flat_cmdlets(commands.upload("D:\\b.iso", b"x")), commands.read_vm(NAME), commands.read_host_storage(),
            commands.read_switches(), *commands.press_enter(NAME), djoin.find_computer(NAME, "d.local"),
            djoin.provision_join("d.local", NAME, "OU=x,DC=d,DC=local", True)]
    scripts = {item.name: item for item in sent if item.script}
    assert set(scripts) == set(SCRIPTS)  # every fixed script is used, and tested here
    for name, item in scripts.items():
        block = re.match(r"\s*param\((.*?)\)\s*\n", item.script, re.S)
        declared = set(re.findall(r"\$(\w+)", block.group(1))) if block else set()
        assert {parameter for parameter, _ in item.parameters} <= declared, name


def flat_cmdlets(pipelines):
    return [item for command in pipelines for item in command]


# --- WinRM settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "winrm", "expected"), [
    ("hv01.yourdom.local", None, ("hv01.yourdom.local", 5986, True, "wsman", "ntlm", True)),
    ("hv01", {"transport": "kerberos", "port": 15986}, ("hv01", 15986, True, "wsman", "kerberos", True)),
    ("hv01", {"ssl": False, "transport": "credssp"}, ("hv01", 5985, False, "wsman", "credssp", True)),
    ("hv01", {"validateCertificate": False}, ("hv01", 5986, True, "wsman", "ntlm", False)),
    ("https://hv01.yourdom.local:443/wsman", None, ("hv01.yourdom.local", 443, True, "wsman", "ntlm", True)),
    ("http://192.0.2.5/custom", {"ssl": True}, ("192.0.2.5", 5985, False, "custom", "ntlm", True)),
], ids=["https-default", "kerberos-port", "http-credssp", "no-validation", "url", "url-wins"])
def test_endpoint_settings(address, winrm, expected):
    where = endpoint(address, winrm, "YOURDOM\\svc", "pw", "HV01")
    assert (where.server, where.port, where.ssl, where.path, where.transport, where.validate_certificate) == expected
    assert "pw" not in repr(where)


@pytest.mark.parametrize(("winrm", "user", "password", "words"), [
    ({"transport": "certificate"}, "u", "p", "not supported"),
    ({"transport": "basic"}, "u", "p", "not supported"),
    (None, None, "p", "username and a password"),
    (None, "u", None, "username and a password"),
])
def test_endpoint_refusals(winrm, user, password, words):
    with pytest.raises(PermanentError, match=words):
        endpoint("hv01", winrm, user, password, "HV01")


@pytest.mark.parametrize("transport", ["ntlm", "kerberos", "credssp"])
def test_pypsrp_wsman_gets_the_settings(transport):
    wsman = open_wsman(endpoint("hv01.yourdom.local", {"transport": transport, "validateCertificate": False},
                                "YOURDOM\\svc", "pw", "HV01"))
    transport_object = wsman.transport
    assert transport_object.endpoint == "https://hv01.yourdom.local:5986/wsman"
    assert (transport_object.auth, transport_object.cert_validation, transport_object.ssl) == (transport, False, True)
    assert transport_object.username == "YOURDOM\\svc"
    assert not transport_object.wrap_required  # TLS protects the messages; no second layer on HTTPS
    session = transport_object._build_session()  # what pypsrp builds for its first request
    assert session.verify is False and type(session.auth).__name__ in ("HTTPNegotiateAuth", "HttpCredSSPAuth")


def test_plain_http_gets_message_encryption():
    wsman = open_wsman(endpoint("hv01", {"ssl": False}, "u", "p", "HV01"))
    assert wsman.transport.endpoint == "http://hv01:5985/wsman" and wsman.transport.wrap_required
