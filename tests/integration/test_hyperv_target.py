"""The Hyper-V drivers (compute, power, boot, offline join, inventory, validation, dry run) against
the fake hosts of tests/support/fake_pypsrp.py, through the real API, database and pypsrp."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pycdlib
import pytest

from octoprov.errors import PermanentError, TargetUnreachable
from octoprov.targets.hyperv import commands
from octoprov.targets.hyperv.dryrun import planned_commands
from octoprov.targets.registry import target_for
from tests.conftest import sqlite_database
from tests.support.fake_pypsrp import ADMIN_PASSWORD, DJOIN_PASSWORD, NODE_PASSWORD, lab_settings, make_lab

pytestmark = pytest.mark.filterwarnings("ignore::pypsrp.negotiate.NoCertificateRetrievedWarning")
API = "/api/v1/provisioning"
VHD = r"D:\Hyper-V\Virtual Hard Disks"
CREATE = ["Read-OctoprovHostStorage", "Read-OctoprovVM", "Test-Path", "New-VM", "Set-VM", "Set-VMProcessor",
          "New-VHD", "Add-VMHardDiskDrive", "New-VHD", "Add-VMHardDiskDrive", "Connect-VMNetworkAdapter",
          "Set-VMNetworkAdapterVlan", "Set-VMNetworkAdapter", "Set-VMFirmware", "Set-OctoprovFirstBootDevice",
          "Set-VM", "Read-OctoprovVM"]


@pytest.fixture
def settings(tmp_path):
    return lab_settings(tmp_path / "var")


@pytest.fixture
def database(settings):
    """SQLite only: these tests are about the target, not the database."""
    yield from sqlite_database(settings)


@pytest.fixture
def lab(client, runtime, monkeypatch):
    return make_lab(client, runtime, monkeypatch)


def target():
    return target_for("hyperv")


def created(lab, **changes):
    task = lab.task(**changes)
    lab.hv.calls.clear()
    ctx = lab.ctx(task["id"])
    return ctx, target().compute.create_machine(ctx)


# --- compute --------------------------------------------------------------------------------------

def test_create_runs_the_spec_script_and_returns_the_canonical_mac(lab):
    ctx, machine = created(lab)
    assert lab.hv.names() == CREATE
    vm = lab.hv.vms["SQL-01"]
    assert machine.ref == vm["Id"] and machine.mac_address == commands.task_mac(ctx.task_id)
    assert vm["Adapters"][0]["MacAddress"] == machine.mac_address.replace(":", "").upper()
    assert vm["Notes"] == f"octoprov-task:{ctx.task_id}" and vm["Cpu"] == 4 and vm["Memory"] == 16 * commands.GIB
    assert vm["Disks"] == [VHD + r"\SQL-01-os.vhdx", VHD + r"\SQL-01-data.vhdx"]
    assert vm["Adapters"][0]["SwitchName"] == "vSwitch-Prod" and vm["Adapters"][0]["VlanId"] == 100
    # WinPE over PXE is unsigned: the VM installs with Secure Boot off; enable_secure_boot turns it on after
    assert ctx.secure_boot_after_install and vm["SecureBoot"] == "Off" and vm["FirstBoot"] == "Network"
    assert machine.detail == (f"Created 4 vCPU, 16 GB RAM, 2 disks in {VHD} on HV01; MAC {machine.mac_address}")


def test_a_mac_in_the_request_is_set_as_static_mac(lab):
    _ctx, machine = created(lab, macAddress="00-15-5D-AA-BB-CC")
    assert machine.mac_address == "00:15:5d:aa:bb:cc"
    assert lab.hv.vms["SQL-01"]["Adapters"][0]["MacAddress"] == "00155DAABBCC"


def test_storage_path_holds_vm_and_disks_and_spares_the_host_lookup(lab):
    vm = lab.body()["vm"]
    _ctx, _machine = created(lab, vm={**vm, "storagePath": r"D:\SQL"})
    assert lab.hv.names()[0] == "Read-OctoprovVM"
    assert lab.hv.calls[2].parameters["Path"] == r"D:\SQL"  # New-VM -Path
    assert lab.hv.vms["SQL-01"]["Disks"][0] == r"D:\SQL\SQL-01-os.vhdx"


def test_a_repeated_step_adopts_the_vm(lab):
    ctx, machine = created(lab)
    again = target().compute.create_machine(ctx)
    assert (again.ref, again.mac_address) == (machine.ref, machine.mac_address)
    assert again.detail == "Adopted SQL-01 created by an earlier attempt"
    assert "New-VM" not in lab.hv.names()[len(CREATE):]


def test_a_connection_dropped_mid_creation_is_retried_from_a_clean_slate(lab):
    task = lab.task()
    ctx = lab.ctx(task["id"])
    lab.hv.drop_after = "Add-VMHardDiskDrive"
    with pytest.raises(TargetUnreachable):
        target().compute.create_machine(ctx)
    assert lab.hv.vms["SQL-01"]["Notes"].endswith(" creating")
    lab.hv.calls.clear()
    machine = target().compute.create_machine(ctx)
    assert lab.hv.names()[:6] == ["Read-OctoprovHostStorage", "Read-OctoprovVM", "Test-Path", "Remove-VM",
                                  "Remove-Item", "Test-Path"]
    assert machine.detail.startswith("Created")
    assert sorted(lab.hv.files) == [VHD + r"\SQL-01-data.vhdx", VHD + r"\SQL-01-os.vhdx"]


@pytest.mark.parametrize(("notes", "owner"), [("", "no Octoprov task"), ("octoprov-task:999", "task 999")])
def test_a_vm_of_that_name_made_by_something_else_is_refused_and_kept(lab, notes, owner):
    task = lab.task()
    lab.hv.vms["SQL-01"] = {"Id": "x", "Name": "SQL-01", "Notes": notes, "State": "Running", "Disks": [],
                            "Dvds": [], "Adapters": []}
    ctx = lab.ctx(task["id"])
    with pytest.raises(PermanentError, match=f"already exists on HV01 and belongs to {owner}"):
        target().compute.create_machine(ctx)
    with pytest.raises(PermanentError):
        target().compute.destroy_machine(ctx)
    assert lab.hv.vms["SQL-01"]["State"] == "Running" and "Remove-VM" not in lab.hv.names()


def test_leftover_vhd_files_are_refused_not_overwritten(lab):
    task = lab.task()
    lab.hv.files[VHD + r"\SQL-01-data.vhdx"] = b"someone's data"
    with pytest.raises(PermanentError, match=r"SQL-01-data.vhdx already exist\(s\) on HV01 without a VM"):
        target().compute.create_machine(lab.ctx(task["id"]))
    assert "New-VM" not in lab.hv.names() and lab.hv.files[VHD + r"\SQL-01-data.vhdx"] == b"someone's data"


def test_new_vm_name_clash_fails_the_step_with_the_hosts_message(lab):
    task = lab.task()
    lab.hv.errors["New-VM"] = "Failed to create a new virtual machine. The operation failed because the file exists."
    with pytest.raises(PermanentError, match="New-VM on HV01: Failed to create a new virtual machine"):
        target().compute.create_machine(lab.ctx(task["id"]))
    assert lab.hv.vms == {}


def test_destroy_stops_removes_and_deletes_only_what_the_task_made(lab):
    ctx, _machine = created(lab)
    lab.hv.files[r"D:\ISO\WS2025.iso"] = b"install"
    lab.hv.vms["SQL-01"]["Dvds"] = [r"D:\ISO\WS2025.iso", VHD + r"\SQL-01-answer.iso"]
    lab.hv.files[VHD + r"\SQL-01-answer.iso"] = b"answers"
    target().power.power_on(ctx)
    lab.hv.calls.clear()
    assert target().compute.destroy_machine(ctx) == "Removed SQL-01 and 3 file(s) on HV01"
    assert [(call.name, call.parameters) for call in lab.hv.calls] == [
        ("Read-OctoprovVM", {"Name": "SQL-01"}),
        ("Stop-VM", {"Name": "SQL-01", "TurnOff": True, "Force": True}),
        ("Remove-VM", {"Name": "SQL-01", "Force": True}),
        ("Remove-Item", {"LiteralPath": VHD + r"\SQL-01-os.vhdx", "Force": True}),
        ("Remove-Item", {"LiteralPath": VHD + r"\SQL-01-data.vhdx", "Force": True}),
        ("Remove-Item", {"LiteralPath": VHD + r"\SQL-01-answer.iso", "Force": True})]
    assert lab.hv.vms == {} and list(lab.hv.files) == [r"D:\ISO\WS2025.iso"]  # not the task's: kept
    assert target().compute.destroy_machine(ctx) == "no machine to remove"


# --- power and boot -------------------------------------------------------------------------------

def test_power(lab):
    ctx, _machine = created(lab)
    power = target().power
    assert power.power_on(ctx) == "Powered on; booting from the network"
    assert power.power_on(ctx) == "Already running"
    assert power.power_off(ctx) == "Powered off"
    assert power.power_off(ctx) == "Already off"
    assert lab.hv.names().count("Start-VM") == 1 and lab.hv.names().count("Stop-VM") == 1


def test_pxe_boot_puts_the_network_first_again(lab):
    ctx, _machine = created(lab)
    lab.hv.vms["SQL-01"]["FirstBoot"] = "disk"
    assert target().boot.prepare_boot(ctx) == "Network boot first"
    assert lab.hv.vms["SQL-01"]["FirstBoot"] == "Network"
    assert target().boot.cleanup_boot(ctx) == "Nothing to remove: the boot order goes with the machine"


def test_boot_from_disk_puts_the_os_disk_first(lab):
    """Set-VMFirmware -FirstBootDevice with the VM's OS disk, found by its path inside the fixed script:
    every call bound against the documented parameter sets by the fake host (a call that does not bind is
    refused and runs nothing)."""
    ctx, _machine = created(lab)
    assert lab.hv.vms["SQL-01"]["FirstBoot"] == "Network"
    lab.hv.calls.clear()
    assert target().boot.boot_from_disk(ctx) == rf"Boot order set: {VHD}\SQL-01-os.vhdx first"
    assert lab.hv.vms["SQL-01"]["FirstBoot"] == VHD + r"\SQL-01-os.vhdx"
    assert lab.hv.names() == ["Read-OctoprovHostStorage", "Read-OctoprovVM", "Set-OctoprovFirstBootDevice"]
    assert lab.hv.calls[-1].bound == {"VMName": "SQL-01", "Device": "Disk", "Path": VHD + r"\SQL-01-os.vhdx"}
    assert target().boot.boot_from_disk(ctx).startswith("Boot order set")  # a redelivered step: the same again
    assert lab.hv.refused == []
    lab.hv.vms["SQL-01"]["Disks"] = [VHD + r"\SQL-01-data.vhdx"]  # the OS disk gone: the script throws
    with pytest.raises(PermanentError, match="SQL-01 has no Disk device to boot from"):
        target().boot.boot_from_disk(ctx)


@pytest.mark.parametrize(("node_options", "order"), [
    ({}, ["IDE", "LegacyNetworkAdapter", "CD", "Floppy"]),
    ({"bootMode": "iso", "installIso": r"D:\ISO\WS2025.iso"}, ["IDE", "CD", "LegacyNetworkAdapter", "Floppy"]),
], ids=["pxe", "iso"])
def test_boot_from_disk_on_generation_1_puts_ide_first(lab, node_options, order):
    """Generation 1 has a BIOS startup order by device class; the OS disk is IDE 0:0."""
    changes = {"vm": {**lab.body()["vm"], "generation": 1}}
    if node_options:
        lab.hv.files[r"D:\ISO\WS2025.iso"] = b"the installation DVD"
        changes.update(hypervisorNodeId=lab.node("HV-ISO", hyperv=node_options), domain={"join": False})
    ctx, _machine = created(lab, **changes)
    assert target().boot.boot_from_disk(ctx) == "Boot order set: IDE (the OS disk) first"
    assert lab.hv.vms["SQL-01"]["BootOrder"] == order
    assert lab.hv.calls[-1].name == "Set-VMBios" and lab.hv.refused == []


def test_generation_1_boots_the_network_through_a_legacy_adapter(lab):
    vm = {**lab.body()["vm"], "generation": 1}
    _ctx, machine = created(lab, vm=vm)
    adapters = lab.hv.vms["SQL-01"]["Adapters"]
    assert [(a["Name"], a["IsLegacy"], a["SwitchName"]) for a in adapters] == [
        ("Legacy Network Adapter", True, "vSwitch-Prod")]
    assert lab.hv.vms["SQL-01"]["BootOrder"] == ["LegacyNetworkAdapter", "IDE", "CD", "Floppy"]
    assert "SecureBoot" not in lab.hv.vms["SQL-01"] and machine.mac_address.startswith("02:")


def iso_node(lab) -> int:
    lab.hv.files[r"D:\ISO\WS2025.iso"] = b"the installation DVD"
    return lab.node("HV-ISO", hyperv={"bootMode": "iso", "installIso": r"D:\ISO\WS2025.iso"})


def test_iso_mode_needs_the_installation_iso_on_the_host(lab):
    node = lab.node("HV-ISO", hyperv={"bootMode": "iso", "installIso": r"D:\ISO\missing.iso"})
    response = lab.client.post(API + "/tasks", json=lab.body(hypervisorNodeId=node))
    assert response.status_code == 400
    assert response.json["errors"] == {
        "hypervisorNodeId": r"the installation ISO D:\ISO\missing.iso of node HV-ISO does not exist on the host"}
    bad = lab.client.post(API + "/hypervisors", json={"name": "HV-BAD", "kind": "hyperv", "endpoint": "hv01",
                                                      "hyperv": {"bootMode": "iso"}})
    assert bad.status_code == 400 and bad.json["errors"] == {"hyperv.installIso": "required when bootMode is iso"}


def test_iso_mode_builds_copies_and_attaches_the_answer_iso(lab):
    node = iso_node(lab)
    task = lab.task(hypervisorNodeId=node, domain={"join": False})  # the pipeline test covers the join
    ctx = lab.ctx(task["id"])
    target().compute.create_machine(ctx)
    lab.hv.calls.clear()
    assert target().boot.prepare_boot(ctx) == (rf"Answer ISO {VHD}\SQL-01-answer.iso attached beside "
                                               r"D:\ISO\WS2025.iso; DVD first")
    assert lab.hv.names() == ["Read-OctoprovHostStorage", "Read-OctoprovVM", "Write-OctoprovFileChunk",
                              "Get-FileHash", "Select-Object", "Add-VMDvdDrive", "Add-VMDvdDrive",
                              "Set-OctoprovFirstBootDevice"]
    vm = lab.hv.vms["SQL-01"]
    assert vm["Dvds"] == [r"D:\ISO\WS2025.iso", VHD + r"\SQL-01-answer.iso"] and vm["FirstBoot"] == r"D:\ISO\WS2025.iso"
    xml = read_iso(lab.hv.files[VHD + r"\SQL-01-answer.iso"])
    assert "<ComputerName>SQL-01</ComputerName>" in xml
    assert "<Path>" not in xml.split("<InstallFrom>")[1].split("</InstallFrom>")[0]  # the DVD's own image
    logon = xml.split("<FirstLogonCommands>")[1]
    assert logon.index("installer_started") < logon.index("os_installed") < logon.index("first_boot")
    assert target().boot.prepare_boot(ctx).startswith("Answer ISO")  # again: no second pair of drives
    assert lab.hv.vms["SQL-01"]["Dvds"] == vm["Dvds"]
    lab.hv.calls.clear()
    target().power.power_on(ctx)
    assert lab.hv.names() == ["Read-OctoprovVM", "Start-VM", "Send-OctoprovEnterKey"]
    target().compute.destroy_machine(ctx)
    assert VHD + r"\SQL-01-answer.iso" not in lab.hv.files
    assert target().boot.cleanup_boot(ctx) == "no answer ISO to remove"


def test_iso_mode_without_an_answer_file_says_why(lab):
    node = iso_node(lab)
    task = lab.task(hypervisorNodeId=node, os={"imageId": lab.image_id})  # no admin password
    ctx = lab.ctx(task["id"])
    target().compute.create_machine(ctx)
    with pytest.raises(PermanentError, match=r"no answer file for the answer ISO: .*adminPassword"):
        target().boot.prepare_boot(ctx)


def read_iso(data: bytes) -> str:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, joliet_path="/autounattend.xml")
    iso.close()
    return out.getvalue().decode("utf-8")


# --- offline domain join --------------------------------------------------------------------------

def test_offline_join_on_the_management_host(lab):
    ctx = lab.ctx(lab.task()["id"])
    lab.hv.calls.clear()
    join = target().domain
    blob = join.provision_offline_join(ctx)
    assert blob == "T0RKIGJsb2IgZm9yIFNRTC0wMSBpbiB5b3VyZG9tLmxvY2Fs"  # BOM and NUL of the save file dropped
    assert [(call.name, call.parameters) for call in lab.dc.calls] == [
        ("Find-OctoprovComputerAccount", {"Name": "SQL-01", "Server": "yourdom.local"}),
        ("Invoke-OctoprovDjoin", {"Domain": "yourdom.local", "Machine": "SQL-01",
                                  "MachineOU": "OU=SQL Servers,DC=yourdom,DC=local", "Reuse": False}),
        ("Set-ADComputer", {"Identity": "SQL-01", "Server": "yourdom.local",
                            "Description": f"octoprov-task:{ctx.task_id}"})]
    assert lab.hv.calls == []  # the Hyper-V host has nothing to do with it
    assert join.provision_offline_join(ctx) == blob  # a repeated step re-provisions its own account
    assert lab.dc.calls[4].parameters["Reuse"] is True
    assert join.remove_computer_account(ctx) == "Removed computer account SQL-01 from yourdom.local"
    assert lab.dc.accounts == {}
    assert join.remove_computer_account(ctx) == "no computer account SQL-01 in yourdom.local"


def test_an_account_this_task_did_not_create_is_neither_taken_over_nor_removed(lab):
    ctx = lab.ctx(lab.task()["id"])
    lab.dc.accounts["SQL-01"] = {"Name": "SQL-01", "DistinguishedName": "CN=SQL-01,OU=Prod,DC=yourdom,DC=local",
                                 "Description": "finance SQL server"}
    with pytest.raises(PermanentError, match=r"already exists in yourdom.local \(CN=SQL-01,OU=Prod"):
        target().domain.provision_offline_join(ctx)
    assert target().domain.remove_computer_account(ctx) == "computer account SQL-01 kept: this task did not create it"
    assert "SQL-01" in lab.dc.accounts and "Invoke-OctoprovDjoin" not in lab.dc.names()


def test_djoin_failure_and_missing_management_host(lab, monkeypatch):
    ctx = lab.ctx(lab.task()["id"])
    lab.dc.errors["Invoke-OctoprovDjoin"] = "djoin.exe failed with exit code 5: Access is denied."
    with pytest.raises(PermanentError, match=r"Invoke-OctoprovDjoin on management host dc01\.yourdom\.test: djoin"):
        target().domain.provision_offline_join(ctx)
    bare = replace(ctx, settings=ctx.settings.model_copy(update={"djoin_host": ""}))
    with pytest.raises(PermanentError, match="set OCTOPROV_DJOIN_HOST"):
        target().domain.provision_offline_join(bare)


# --- validation at POST /tasks, inventory, dry run ------------------------------------------------

@pytest.mark.parametrize(("vm", "field", "words"), [
    ({"network": {}}, "vm.network.vswitch", "required for Hyper-V: the virtual switch the VM connects to"),
    ({"network": {"vswitch": "vSwitch-Test"}}, "vm.network.vswitch",
     "no virtual switch called vSwitch-Test on HV01 (it has: vSwitch-Prod, Lab Internal)"),
    ({"disks": [{"sizeGb": 900, "purpose": "os"}, {"sizeGb": 100, "purpose": "data"}]}, "vm.disks",
     "1000 GiB of disks do not fit on D:\\ of HV01: 900.0 GiB free"),
    ({"storagePath": "Q:\\VMs"}, "vm.storagePath", "Q:\\VMs is on no local volume of HV01"),
])
def test_requests_are_checked_against_the_host(lab, vm, field, words):
    body = lab.body()
    response = lab.client.post(API + "/tasks", json={**body, "vm": {**body["vm"], **vm}})
    assert response.status_code == 400, response.json
    assert response.json["errors"][field] == words


def test_a_host_refusing_the_login_is_named_and_an_unreachable_one_is_no_reason_to_refuse(lab):
    lab.hv.refuse_login = True
    refused = lab.client.post(API + "/tasks", json=lab.body())
    assert refused.status_code == 400 and "refused the login" in refused.json["errors"]["hypervisorNodeId"]
    assert NODE_PASSWORD not in json.dumps(refused.json)
    lab.hv.refuse_login = False
    lab.hv.drop_after = "Read-OctoprovSwitches"
    assert lab.client.post(API + "/tasks", json=lab.body()).status_code == 201


def test_inventory(lab):
    networks = lab.client.get(f"{API}/hypervisors/{lab.node_id}/networks")
    assert networks.status_code == 200, networks.json
    assert networks.json == [
        {"name": "vSwitch-Prod", "type": "vswitch-external", "active": True, "bridge": "Intel(R) Ethernet X710",
         "vlanCapable": True},
        {"name": "Lab Internal", "type": "vswitch-internal", "active": True, "bridge": None, "vlanCapable": False}]
    storage = lab.client.get(f"{API}/hypervisors/{lab.node_id}/storage").json
    assert storage[0] == {"name": "default", "type": "vhd-path", "active": True, "path": VHD,
                          "capacityBytes": 2 * 2**40, "freeBytes": 900 * 2**30}
    assert [entry["name"] for entry in storage[1:]] == ["C:\\ (System)", "D:\\ (VMs)"]
    lab.hv.refuse_login = True
    assert lab.client.get(f"{API}/hypervisors/{lab.node_id}/networks").status_code == 409


def test_dry_run_lists_the_commands_every_step_runs(lab):
    plan = lab.client.post(API + "/tasks", query_string={"dryRun": "true"}, json=lab.body())
    assert plan.status_code == 200, plan.json
    listed = json.loads(plan.json["artifacts"]["hyperv-commands.json"])
    steps = {step["step"]: step for step in listed["steps"]}
    assert list(steps) == ["create_vm", "prepare_domain_join", "register_mac", "power_on", "enable_secure_boot",
                           "boot_from_disk"]
    assert [c.get("cmdlet") or c.get("script") or c["pipeline"][0]["cmdlet"]
            for c in steps["enable_secure_boot"]["commands"]] == [
        "Read-OctoprovHostStorage", "Read-OctoprovVM", "Read-OctoprovVM", "Set-VMFirmware",
        "Set-OctoprovFirstBootDevice", "Start-VM"]
    assert steps["boot_from_disk"]["commands"][-1] == {"script": "Set-OctoprovFirstBootDevice", "parameters": {
        "VMName": "SQL-01", "Device": "Disk", "Path": VHD + r"\SQL-01-os.vhdx"}}
    assert steps["prepare_domain_join"]["host"] == "management host dc01.yourdom.test"
    new_vm = steps["create_vm"]["commands"][3]["pipeline"][0]
    assert new_vm == {"cmdlet": "New-VM", "parameters": {"Name": "SQL-01", "Generation": 2,
                                                         "MemoryStartupBytes": 16 * commands.GIB, "NoVHD": True,
                                                         "ErrorAction": "Stop"}}
    tagged = steps["create_vm"]["commands"][3]["pipeline"][1]
    assert tagged == {"cmdlet": "Set-VM", "parameters": {"Notes": "octoprov-task:<task id> creating"}}
    assert steps["create_vm"]["commands"][-5]["parameters"]["StaticMacAddress"] == "<MAC derived from the task id>"
    notes = json.loads(plan.json["artifacts"]["plan.json"])["notes"]
    assert any(note.startswith("Secure Boot is off while WinPE installs") for note in notes), notes
    text = json.dumps(plan.json)
    for secret in (ADMIN_PASSWORD, NODE_PASSWORD, DJOIN_PASSWORD):
        assert secret not in text
    assert lab.hv.vms == {} and lab.dc.accounts == {}  # nothing made

    # the same commands, in the same order, as the steps then run on the host
    task = lab.task()
    ctx = lab.ctx(task["id"])
    lab.hv.calls.clear()
    drivers = target()
    drivers.compute.create_machine(ctx)
    drivers.domain.provision_offline_join(ctx)
    drivers.boot.prepare_boot(ctx)
    drivers.power.power_on(ctx)
    assert lab.hv.names() == _expand(steps, ("create_vm", "register_mac", "power_on"))
    assert lab.dc.names() == _expand(steps, ("prepare_domain_join",))
    rollback = {step["step"]: step for step in listed["rollback"]}
    lab.hv.calls.clear()
    lab.dc.calls.clear()
    drivers.compute.destroy_machine(ctx)
    drivers.domain.remove_computer_account(ctx)
    assert lab.hv.names() == _expand(rollback, ("destroy_machine",))
    assert lab.dc.names() == _expand(rollback, ("remove_computer_account",))


def _expand(steps: dict, names: tuple) -> list[str]:
    """Every cmdlet of the listed steps, pipelines expanded, in order."""
    found = []
    for name in names:
        for entry in steps[name]["commands"]:
            parts = entry.get("pipeline", [entry])
            found += [part.get("cmdlet") or part.get("script") for part in parts]
    return found


def test_dry_run_without_the_host_says_what_stands_in(lab):
    task = lab.task()
    lab.hv.refuse_login = True
    text, notes = planned_commands(lab.ctx(task["id"]))
    assert "<VirtualHardDiskPath of the host>\\\\SQL-01-os.vhdx" in text
    assert "stands for the host's folder" in notes[0] and "refused the login" in notes[0]


@pytest.mark.parametrize(("body", "errors"), [
    ({"kind": "hyperv", "winrm": {"transport": "certificate"}},
     {"winrm.transport": "certificate authentication is not available yet; use ntlm, kerberos or credssp"}),
    ({"kind": "kvm", "endpoint": "test:///default", "hyperv": {"bootMode": "pxe"}},
     {"hyperv": "only for nodes of kind hyperv"}),
    ({"kind": "hyperv", "hyperv": {"bootMode": "iso", "installIso": "D:\\ISO\\WS2025.img"}},
     {"hyperv.installIso": "must name an .iso file"}),
], ids=["certificate", "hyperv-on-kvm", "not-an-iso"])
def test_node_options_are_checked_at_registration(lab, body, errors):
    response = lab.client.post(API + "/hypervisors", json={"name": "N", "endpoint": "hv09", **body})
    assert response.status_code == 400 and response.json["errors"] == errors


def test_node_view_shows_options_never_the_password(lab):
    node = lab.node("HV-VIEW", hyperv={"bootMode": "pxe"}, winrm={"transport": "credssp", "port": 15986})
    view = lab.client.get(f"{API}/hypervisors/{node}").json
    assert view["hyperv"] == {"bootMode": "pxe", "installIso": None}
    assert view["winrm"] == {"transport": "credssp", "ssl": True, "port": 15986, "validateCertificate": True}
    assert view["hasCredentials"] is True and NODE_PASSWORD not in json.dumps(view)


def test_dry_run_with_the_samba_backend_lists_no_djoin_commands(lab):
    """With OCTOPROV_DOMAIN_JOIN_BACKEND=samba the worker makes the blob itself: no step runs on the DC host."""
    import dataclasses

    task = lab.task()
    ctx = lab.ctx(task["id"])
    ctx = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"domain_join_backend": "samba"}))
    text, notes = planned_commands(ctx)
    steps = {step["step"] for step in json.loads(text)["steps"]}
    rollback = {step["step"] for step in json.loads(text)["rollback"]}
    assert "prepare_domain_join" not in steps and "remove_computer_account" not in rollback
    assert "create_vm" in steps and "destroy_machine" in rollback
    assert any("net offlinejoin" in note for note in notes), notes
    assert lab.dc.calls == []
