"""A vSphere task through the whole stack against govmomi's vCenter simulator: ``POST /tasks`` to the real API
server, the steps run by a Celery worker process of the ``vmware`` pool (the only queue it consumes) through
Redis, the VM it makes read back through the simulator's API with pyVmomi; ``DELETE /tasks/{id}`` then has the
worker roll it back, removing the VM and its disk files. The simulator boots no guest, so the task goes as far
as powered on and waiting for its installer (tests/integration/test_vsphere_pipeline.py covers the steps after)."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_vsphere_target import STANDARD, datastore_files, request, vm_named, vsphere
from tests.support.stack import start_stack

vim = pytest.importorskip("pyVmomi").vim
WORK_STEPS = ["create_vm", "render_answers", "register_mac", "power_on"]


@pytest.fixture
def stack(tmp_path, postgres_server, redis_url):
    running = start_stack(tmp_path, postgres_server, redis_url)
    try:
        yield running
    finally:
        running.stop()


def until(check, what: str, timeout: float = 30):
    """``check()``'s first true answer, polled."""
    deadline = time.monotonic() + timeout
    while not (answer := check()):
        assert time.monotonic() < deadline, f"still not {what} after {timeout} s"
        time.sleep(0.1)
    return answer


def test_a_vsphere_task_reaches_power_on_through_a_vmware_worker_and_cancel_removes_it(stack, vcsim, tmp_path):
    worker_log = tmp_path / "worker.log"
    stack.start_worker(concurrency=2, queues="vmware", log=worker_log)
    node = stack.call("POST", "/hypervisors", 201, json={
        "name": "VC-STACK", "kind": "vsphere", "endpoint": vcsim.url, "username": vcsim.username,
        "password": vcsim.password, "vsphere": {"thumbprint": vcsim.thumbprint}}).json()
    body = request(node["id"], stack.image(), "vs-stack01", cpu=2, memoryGb=4,
                   disks=[{"sizeGb": 30, "purpose": "os"}, {"sizeGb": 8, "purpose": "data", "type": "fixed"}])
    started = time.monotonic()
    task = stack.call("POST", "/tasks", 201, json=body).json()
    booting = stack.wait_for(task["id"], {"booting", "failed", "cancelled"}, timeout=60)
    elapsed = time.monotonic() - started
    assert booting["status"] == "booting", booting
    assert [s["name"] for s in booting["steps"] if s["status"] == "done"] == WORK_STEPS
    with vsphere(vcsim) as content:
        vm = vm_named(content, "vs-stack01")
        assert vm is not None and vm.runtime.powerState == "poweredOn"
        assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (2, 4096)
        assert (vm.config.firmware, vm.config.annotation) == ("efi", f"octoprov-task:{task['id']}")
        disks = sorted((d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)),
                       key=lambda d: d.key)
        assert [(d.backing.fileName, d.capacityInKB // (1024 * 1024), d.backing.thinProvisioned) for d in disks] == [
            ("[LocalDS_0] vs-stack01/vs-stack01-os.vmdk", 30, True),
            ("[LocalDS_0] vs-stack01/vs-stack01-data.vmdk", 8, False)]
        [nic] = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        assert nic.backing.deviceName == STANDARD and nic.macAddress.lower() == booting["macAddress"]
        assert isinstance(vm.config.bootOptions.bootOrder[0], vim.vm.BootOptions.BootableEthernetDevice)
        assert {"vs-stack01-os.vmdk", "vs-stack01-data.vmdk"} <= set(datastore_files(content, "vs-stack01"))

    cancelled = stack.call("DELETE", f"/tasks/{task['id']}", 200).json()
    assert cancelled["status"] == "cancelled", cancelled

    def rolled_back() -> bool:
        logs = stack.call("GET", f"/tasks/{task['id']}/logs", 200).json()
        return "Rollback: Removed vs-stack01 and its 2 disk(s)" in [entry["message"] for entry in logs]

    until(rolled_back, "rolled back by the worker")
    with vsphere(vcsim) as content:
        assert vm_named(content, "vs-stack01") is None
        assert datastore_files(content, "vs-stack01") == []  # the VM's folder and its disks are gone
    assert stack.get(task["id"])["status"] == "cancelled"
    log = worker_log.read_text(errors="replace")
    # the worker process did the steps and the rollback
    assert all(f"task {task['id']}: {step} done by w0@" in log for step in WORK_STEPS), log[-3000:]
    assert "Task octoprov.rollback[" in log and "'Removed vs-stack01 and its 2 disk(s)'" in log, log[-3000:]
    assert vcsim.password not in log and "Pa55word!" not in log
    print(f"\nvs-stack01: POST /tasks to powered on in {elapsed:.1f} s through a vmware worker")
