"""End to end on a real libvirtd with QEMU: a KVM task defines a domain with its volume in a
storage pool, starts it, and the VM network-boots through Octoprov (ProxyDHCP, iPXE, the task's
boot script) into the tiny Linux, whose callbacks carry the task to completed. A second task,
cancelled while its UEFI VM boots, leaves no domain, no volume and no NVRAM file behind.

The lab is tests/support/netlab.py (namespaces, bridge, site DHCP), the daemon tests/support/libvirtlab.py, the
services tests/support/bootservices.py. QEMU emulates (TCG): the node's ``domainType`` is ``qemu``.
Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from octoprov.targets.libvirt.domain_xml import serial_log_path
from tests.support import libvirtlab, netlab, sshd, tinycloud, tinylinux
from tests.support.bootservices import BOOT_TIMEOUT, boot_services, steps, unusable

EVENTS = "installer_started,os_installed,first_boot"


@pytest.fixture(scope="module")
def kvm(tmp_path_factory):
    reason = netlab.unusable_reason() or libvirtlab.unusable_reason()
    if reason:
        unusable(reason)
    kernel_args = f"{tinylinux.KERNEL_ARGS} octoprov.events={EVENTS}"
    with boot_services(tmp_path_factory.mktemp("kvm"), "default,kvm", kernel_args) as octo:
        pool = f"opv{os.getpid()}"
        with libvirtlab.Libvirtd(octo.lab, pool) as daemon:
            octo.node_id = octo.call("POST", "/hypervisors", 201, json={
                "name": "KVM-LAB", "kind": "kvm", "endpoint": libvirtlab.URI,
                "kvm": {"storagePool": pool, "domainType": "qemu"}})["id"]
            octo.daemon = daemon
            yield octo


def task_body(octo, hostname: str, generation: int) -> dict:
    return {"hostname": hostname, "targetType": "kvm", "hypervisorNodeId": octo.node_id,
            "os": {"imageId": octo.image_id},
            "vm": {"cpu": 1, "memoryGb": 1, "generation": generation, "secureboot": False,
                   "disks": [{"sizeGb": 2, "purpose": "os"}], "network": {"vswitch": netlab.BRIDGE}},
            "postInstall": {"installAgent": False}}


def test_a_kvm_task_netboots_its_vm_and_completes(kvm):
    daemon = kvm.daemon
    started = time.monotonic()
    task_id = kvm.call("POST", "/tasks", 201, json=task_body(kvm, "tiny-kvm", generation=1))["id"]
    task = kvm.wait_task(task_id, lambda t: t["status"] in ("completed", "failed"), BOOT_TIMEOUT + 60)
    elapsed = time.monotonic() - started
    assert task["status"] == "completed", (task, kvm.daemon.lab.log("libvirtd.log")[-2000:])
    assert set(steps(task).values()) == {"done"}, steps(task)
    # the machine is there, tagged with its task, its disk a sparse qcow2 volume in the node's pool
    assert "tiny-kvm" in daemon.domains()
    xml = daemon.virsh("dumpxml", "tiny-kvm", "--inactive")
    assert f'id="{task_id}"' in xml and "<type arch='x86_64' machine='pc" in xml
    assert daemon.volumes() == ["tiny-kvm-os"]
    info = daemon.virsh("vol-info", "--pool", daemon.pool_name, "tiny-kvm-os")
    assert "2.00 GiB" in info, info
    mac = task["macAddress"]
    assert mac and mac.lower() in xml
    assert f"chain.ipxe?mac={mac.lower()}" in kvm.log("pxe.log").lower(), kvm.log("pxe.log")[-2000:]
    logs = kvm.call("GET", f"/tasks/{task_id}/logs", 200)
    messages = [entry["message"] for entry in (logs["items"] if isinstance(logs, dict) else logs)]
    assert any("tiny linux: first_boot" in message for message in messages), messages
    print(f"\ntiny-kvm: POST /tasks to completed in {elapsed:.1f} s (TCG)")


def test_cancelling_mid_boot_leaves_nothing_behind(kvm):
    daemon = kvm.daemon
    task_id = kvm.call("POST", "/tasks", 201, json=task_body(kvm, "tiny-cancel", generation=2))["id"]
    kvm.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 120)
    assert daemon.virsh("domstate", "tiny-cancel").strip() == "running"
    nvram = libvirtlab.NVRAM_DIR / "tiny-cancel_VARS.fd"
    assert nvram.is_file(), sorted(p.name for p in libvirtlab.NVRAM_DIR.glob("*"))
    assert "tiny-cancel-os" in daemon.volumes()
    kvm.call("DELETE", f"/tasks/{task_id}", 200)
    deadline = time.monotonic() + 120
    while "tiny-cancel" in daemon.domains():
        assert time.monotonic() < deadline, "the cancelled task's domain is still there after 120 s"
        time.sleep(0.5)
    assert "tiny-cancel-os" not in daemon.volumes()
    assert not nvram.exists()
    assert kvm.task(task_id)["status"] == "cancelled"


def test_a_remote_host_over_ssh_with_a_stored_key(kvm, tmp_path):
    """The worker's way to a remote KVM host: qemu+ssh with the key and host key stored with the node
    (here an sshd on loopback in front of the lab's libvirtd)."""
    reason = sshd.unusable_reason()
    if reason:
        unusable(reason)
    pool = kvm.daemon.pool_name
    with sshd.sshd(tmp_path / "sshd") as server:
        node = kvm.call("POST", "/hypervisors", 201, json={
            "name": "KVM-SSH", "kind": "kvm", "endpoint": f"qemu+ssh://root@127.0.0.1:{server.port}/system",
            "privateKey": server.private_key, "kvm": {"storagePool": pool, "domainType": "qemu",
                                                       "hostKey": server.host_key}})
        # read-only (inventory) and read-write (the dry run asks the host for its pool and bridge)
        storage = kvm.call("GET", f"/hypervisors/{node['id']}/storage", 200)
        assert pool in [entry["name"] for entry in storage]
        body = task_body(kvm, "tiny-ssh", generation=2)
        body["hypervisorNodeId"] = node["id"]
        plan = kvm.call("POST", "/tasks?dryRun=true", 200, json=body)
        assert f'pool="{pool}"' in plan["artifacts"].get("domain.xml", ""), plan
        assert "tiny-ssh" not in kvm.daemon.domains()  # a dry run creates nothing
        # a host showing another host key is refused, never trusted on first use
        other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbu2K2Hv0dUl/0aHaiUIoPPu6vZG8Gz8uhwm1tXzTz2"
        kvm.call("PUT", f"/hypervisors/{node['id']}", 200, json={
            "name": "KVM-SSH", "kind": "kvm", "endpoint": f"qemu+ssh://root@127.0.0.1:{server.port}/system",
            "kvm": {"storagePool": pool, "domainType": "qemu", "hostKey": other}})
        refused = kvm.call("GET", f"/hypervisors/{node['id']}/storage", 502)
        assert "cannot connect" in refused["message"], refused


def test_a_cloud_image_boots_as_an_overlay_with_its_seed(kvm):
    """The image goes to the host through a libvirt stream, the OS disk is a copy-on-write overlay on
    it, and the VM finds its NoCloud seed (the tiny cloud image prints it on the serial console, which
    the domain logs to a file, then powers off). Cancelling removes the overlay and the seed and keeps
    the base, which other tasks share."""
    missing = tinycloud.missing_tools()
    if missing:
        unusable(f"missing to build the cloud image: {', '.join(missing)}")
    daemon = kvm.daemon
    built = tinycloud.build()
    shutil.copyfile(built.image, kvm.data_dir / "images" / "tiny" / "cloud.qcow2")
    image = kvm.call("POST", "/images", 201, json={"name": "Tiny Cloud", "osType": "linux",
                                                   "imagePath": "tiny/cloud.qcow2"})
    assert image["cloudImage"] is True, image
    serial = Path(serial_log_path("tiny-cloud"))
    serial.unlink(missing_ok=True)  # a log of an earlier run would be appended to
    body = task_body(kvm, "tiny-cloud", generation=1)
    body["os"] = {"imageId": image["id"], "adminPassword": "Cloud-Pass-1"}
    task_id = kvm.call("POST", "/tasks", 201, json=body)["id"]
    kvm.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 180)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while daemon.virsh("domstate", "tiny-cloud").strip() != "shut off":  # it powers itself off
        assert time.monotonic() < deadline, serial.read_text(errors="replace")[-3000:] if serial.exists() else ""
        time.sleep(0.5)
    files, _sums, device = tinycloud.seed_from_console(serial.read_text(errors="replace"))
    assert device.startswith("/dev/sr"), device
    user_data = yaml.safe_load(files["user-data"])
    assert user_data["hostname"] == "tiny-cloud" and "Cloud-Pass-1" not in files["user-data"]
    assert yaml.safe_load(files["meta-data"])["instance-id"] == f"octoprov-task-{task_id}"
    assert yaml.safe_load(files["network-config"])["version"] == 2
    volumes = daemon.volumes()
    base = next(name for name in volumes if name.startswith("octoprov-image-") and not name.endswith(".ready"))
    overlay = daemon.virsh("vol-dumpxml", "--pool", daemon.pool_name, "tiny-cloud-os")
    assert "<backingStore>" in overlay and base in overlay, overlay
    assert "tiny-cloud-cidata" in volumes
    kvm.call("DELETE", f"/tasks/{task_id}", 200)
    deadline = time.monotonic() + 120
    while "tiny-cloud" in daemon.domains():
        assert time.monotonic() < deadline, "the cancelled task's domain is still there after 120 s"
        time.sleep(0.5)
    left = daemon.volumes()
    assert "tiny-cloud-os" not in left and "tiny-cloud-cidata" not in left and base in left, left
