"""A vSphere task through the pipeline against govmomi's vCenter simulator: the API creates it, the real
step functions run in this process (tests/support/inline_pipeline.py), and the VM they make is read back
through the simulator's API. The simulator boots no guest, so a task goes as far as powered on and
waiting for its installer; cancel then removes the VM and its disks. The broker and a worker process are
left out here; tests/integration/test_vsphere_stack.py runs a vSphere task through them."""

from __future__ import annotations

import base64
import http.client
import json
import time

import pytest

from octoprov.context import load_context
from octoprov.errors import PermanentError
from octoprov.targets.vmware import vmware_target
from octoprov.targets.vmware.connection import ssl_context
from octoprov.targets.vmware.options import VsphereOptions
from tests.integration.test_vsphere_target import (
    API,
    DISTRIBUTED,
    GIB,
    STANDARD,
    TASKS,
    datastore_files,
    register,
    request,
    vm_named,
    vsphere,
    windows_image,
)

vim = pytest.importorskip("pyVmomi").vim


def devices(vm, kind) -> list:
    return [d for d in vm.config.hardware.device if isinstance(d, kind)]


def boot_kinds(vm) -> list[str]:
    return [type(item).__name__.rpartition(".")[2] for item in vm.config.bootOptions.bootOrder]


def context(runtime, task_id: int):
    with runtime.database.session() as session:
        return load_context(session, task_id, runtime.settings, runtime.database, runtime.vault)


def test_a_task_reaches_power_on_with_the_hardware_it_asked_for_and_cancel_removes_it(client, runtime, queue, vcsim):
    node = register(client, vcsim)
    body = request(node["id"], windows_image(client, runtime), "vs-web01", cpu=3, memoryGb=5,
                   disks=[{"sizeGb": 40, "purpose": "os"}, {"sizeGb": 12, "purpose": "data", "type": "fixed"}])
    created = client.post(TASKS, json=body)
    assert created.status_code == 201, created.json
    task_id = created.json["id"]
    queue.deliver()  # the work steps; the chain stops at the wait for the installer
    task = client.get(f"{TASKS}/{task_id}").json
    assert task["status"] == "booting", task
    assert [s["name"] for s in task["steps"] if s["status"] == "done"] == [
        "create_vm", "render_answers", "register_mac", "power_on"]
    with vsphere(vcsim) as content:
        vm = vm_named(content, "vs-web01")
        assert vm is not None
        hardware = vm.config.hardware
        assert (hardware.numCPU, hardware.memoryMB) == (3, 5 * 1024)
        assert vm.config.firmware == "efi"
        assert vm.config.bootOptions.efiSecureBootEnabled is False  # WinPE is unsigned: turned on after install
        assert boot_kinds(vm) == ["BootableEthernetDevice", "BootableDiskDevice"]
        disks = sorted(devices(vm, vim.vm.device.VirtualDisk), key=lambda d: d.key)
        assert [(d.capacityInKB // (1024 * 1024), d.backing.thinProvisioned) for d in disks] == [(40, True),
                                                                                                (12, False)]
        assert [d.backing.fileName for d in disks] == ["[LocalDS_0] vs-web01/vs-web01-os.vmdk",
                                                       "[LocalDS_0] vs-web01/vs-web01-data.vmdk"]
        [nic] = devices(vm, vim.vm.device.VirtualEthernetCard)
        assert isinstance(nic, vim.vm.device.VirtualE1000e) and nic.backing.deviceName == STANDARD
        assert nic.macAddress.lower() == task["macAddress"]  # the MAC vSphere generated, registered with the task
        assert vm.runtime.powerState == "poweredOn"
        assert vm.config.annotation == f"octoprov-task:{task_id}"
        assert {"vs-web01-os.vmdk", "vs-web01-data.vmdk"} <= set(datastore_files(content, "vs-web01"))

    cancelled = client.delete(f"{TASKS}/{task_id}")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled", cancelled.json
    queue.deliver()  # the rollback
    with vsphere(vcsim) as content:
        assert vm_named(content, "vs-web01") is None
        assert datastore_files(content, "vs-web01") == []  # the VM's folder and its disks are gone
    logs = [entry["message"] for entry in client.get(f"{TASKS}/{task_id}/logs").json]
    assert "Rollback: Removed vs-web01 and its 2 disk(s)" in logs


def test_bios_on_a_distributed_port_group_and_a_repeated_step_adopts_the_vm(client, runtime, queue, vcsim):
    node = register(client, vcsim)
    body = request(node["id"], windows_image(client, runtime), "vs-bios01", generation=1,
                   network={"vswitch": DISTRIBUTED}, disks=[{"sizeGb": 20, "purpose": "os", "type": "fixed"}])
    task_id = client.post(TASKS, json=body).json["id"]
    queue.deliver(stop_after="create_vm")
    target = vmware_target()
    ctx = context(runtime, task_id)
    again = target.compute.create_machine(ctx)  # a redelivered step: the same VM, not a second one
    assert again.detail == "Adopted vs-bios01 created by an earlier attempt"
    with vsphere(vcsim) as content:
        vm = vm_named(content, "vs-bios01")
        assert vm.config.firmware == "bios" and not vm.config.bootOptions.efiSecureBootEnabled
        [nic] = devices(vm, vim.vm.device.VirtualEthernetCard)
        group = next(n for n in vm.network if n.name == DISTRIBUTED)
        assert nic.backing.port.portgroupKey == group.key
        assert nic.backing.port.switchUuid == group.config.distributedVirtualSwitch.uuid
        [disk] = devices(vm, vim.vm.device.VirtualDisk)
        assert disk.capacityInKB * 1024 == 20 * GIB and disk.backing.thinProvisioned is False
        assert again.mac_address == nic.macAddress.lower()
    # once installed, the OS disk goes first; a repeated step changes nothing
    assert target.boot.boot_from_disk(ctx) == "Boot order set: disk first"
    assert target.boot.boot_from_disk(ctx) == "Disk first already"
    with vsphere(vcsim) as content:
        assert boot_kinds(vm_named(content, "vs-bios01")) == ["BootableDiskDevice", "BootableEthernetDevice"]
    assert target.boot.prepare_boot(ctx) == "Boot order set: network first"
    assert target.compute.destroy_machine(ctx) == "Removed vs-bios01 and its 1 disk(s)"
    assert target.compute.destroy_machine(ctx) == "no machine to remove"


def test_secure_boot_comes_on_while_the_vm_is_off(client, runtime, queue, vcsim):
    node = register(client, vcsim)
    task_id = client.post(TASKS, json=request(node["id"], windows_image(client, runtime), "vs-sb01")).json["id"]
    queue.deliver()
    target = vmware_target()
    ctx = context(runtime, task_id)
    assert ctx.secure_boot_after_install
    assert target.power.power_off(ctx) == "Powered off"  # what WinPE does once Windows is applied
    assert target.boot.enable_secure_boot(ctx) == "Secure Boot on, disk first; VM started"
    with vsphere(vcsim) as content:
        vm = vm_named(content, "vs-sb01")
        assert vm.config.bootOptions.efiSecureBootEnabled is True and vm.runtime.powerState == "poweredOn"
        assert boot_kinds(vm) == ["BootableDiskDevice", "BootableEthernetDevice"]
    assert target.boot.enable_secure_boot(ctx) == "Secure Boot on already; the VM is running"
    target.compute.destroy_machine(ctx)


def test_a_vm_of_that_name_made_by_someone_else_is_never_touched(client, runtime, queue, vcsim):
    node = register(client, vcsim)
    with vsphere(vcsim) as content:
        dc = content.rootFolder.childEntity[0]
        pool = dc.hostFolder.childEntity[0].resourcePool
        task = dc.vmFolder.CreateVM_Task(config=vim.vm.ConfigSpec(
            name="vs-theirs", guestId="otherLinux64Guest", files=vim.vm.FileInfo(vmPathName="[LocalDS_0]")),
            pool=pool)
        while task.info.state not in ("success", "error"):
            pass
    task_id = client.post(TASKS, json=request(node["id"], windows_image(client, runtime), "vs-theirs")).json["id"]
    queue.deliver()
    task = client.get(f"{TASKS}/{task_id}").json
    assert task["status"] == "failed", task
    create = next(s for s in task["steps"] if s["name"] == "create_vm")
    assert "already exists on the node and belongs to no Octoprov task" in create["detail"], create
    with vsphere(vcsim) as content:
        theirs = vm_named(content, "vs-theirs")
        assert theirs is not None  # the rollback left it alone
        task = theirs.Destroy_Task()
        while task.info.state not in ("success", "error"):
            pass


def test_the_dry_run_writes_the_vm_spec_it_would_send(client, runtime, vcsim):
    node = register(client, vcsim)
    body = request(node["id"], windows_image(client, runtime), "vs-plan01", generation=1,
                   network={"vswitch": DISTRIBUTED})
    response = client.post(TASKS, query_string={"dryRun": "true"}, json=body)
    assert response.status_code == 200, response.json
    planned = json.loads(response.json["artifacts"]["vsphere-vm.json"])
    create = planned["createVm"]
    assert (create["datastore"], create["portGroup"], create["portGroupKind"]) == ("LocalDS_0", DISTRIBUTED,
                                                                                    "distributed")
    config = create["config"]
    assert (config["name"], config["numCPUs"], config["memoryMB"], config["firmware"]) == ("vs-plan01", 2, 3072,
                                                                                            "bios")
    assert config["annotation"] == "octoprov-task:<task id> creating"
    [disk] = [c["device"] for c in config["deviceChange"] if c["device"]["_vimtype"] == "vim.vm.device.VirtualDisk"]
    assert disk["capacityInKB"] == 30 * 1024 * 1024 and disk["backing"]["thinProvisioned"] is True
    assert planned["steps"][0] == {"step": "create_vm", "calls": [
        "SearchDatastore_Task: [LocalDS_0] vs-plan01/*.vmdk (leftover disks refused)", "CreateVM_Task",
        "ReconfigVM_Task: bootOrder network, disk; annotation octoprov-task:<task id>"]}
    assert client.get(TASKS).json["total"] == 0
    with vsphere(vcsim) as content:
        assert vm_named(content, "vs-plan01") is None
    assert API in TASKS



def put_datastore_file(sim, path: str) -> None:
    """A file written into the simulator's datastore over its HTTP file access (``/folder``), as an upload
    from the vSphere client or another tool leaves one; its certificate pinned as a node pins it."""
    pinned = ssl_context(VsphereOptions(thumbprint=sim.thumbprint))
    connection = http.client.HTTPSConnection("127.0.0.1", sim.port, context=pinned, timeout=10)
    credentials = base64.b64encode(f"{sim.username}:{sim.password}".encode()).decode()
    try:
        connection.request("PUT", f"/folder/{path}?dcPath=DC0&dsName=LocalDS_0", body=b"someone's data",
                           headers={"Authorization": f"Basic {credentials}"})
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
    finally:
        connection.close()


def test_disk_files_left_in_the_vms_folder_are_refused_not_overwritten(client, runtime, queue, vcsim):
    """No VM of the task, but its folder on the datastore holds a VMDK of a name the task would create
    (someone else's, or an earlier run's): create_vm fails naming it, no VM is made and the files stay. A
    lone extent (``-flat.vmdk``) counts as the disk, as does its descriptor."""
    node = register(client, vcsim)
    put_datastore_file(vcsim, "vs-left01/vs-left01-data-flat.vmdk")
    body = request(node["id"], windows_image(client, runtime), "vs-left01",
                   disks=[{"sizeGb": 20, "purpose": "os"}, {"sizeGb": 10, "purpose": "data"}])
    task_id = client.post(TASKS, json=body).json["id"]
    queue.deliver()
    task = client.get(f"{TASKS}/{task_id}").json
    assert task["status"] == "failed", task
    create = next(s for s in task["steps"] if s["name"] == "create_vm")
    assert create["detail"] == ("[LocalDS_0] vs-left01/vs-left01-data.vmdk already exist(s) on datastore LocalDS_0 "
                                "without a VM of this task; remove them or choose another hostname"), create
    put_datastore_file(vcsim, "vs-left01/vs-left01-os.vmdk")
    with pytest.raises(PermanentError, match=r"^\[LocalDS_0\] vs-left01/vs-left01-os.vmdk, \[LocalDS_0\] vs-left01/"
                                             r"vs-left01-data.vmdk already exist\(s\)"):
        vmware_target().compute.create_machine(context(runtime, task_id))
    with vsphere(vcsim) as content:
        assert vm_named(content, "vs-left01") is None
        assert sorted(datastore_files(content, "vs-left01")) == ["vs-left01-data-flat.vmdk", "vs-left01-os.vmdk"]
        content.fileManager.DeleteDatastoreFile_Task(name="[LocalDS_0] vs-left01",
                                                     datacenter=content.rootFolder.childEntity[0])
        deadline = time.monotonic() + 10
        while datastore_files(content, "vs-left01"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
