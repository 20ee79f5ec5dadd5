"""End to end on a real libvirtd with QEMU: a KVM task defines a domain with its volume in a
storage pool, starts it, and the VM network-boots through Octoprov (ProxyDHCP, iPXE, the task's
boot script) into the tiny Linux, which writes its stand-in OS (a boot sector) to the disk and whose
callbacks carry the task to completed; the domain then boots that disk first, both the running one
(reset, as a reboot does) and its definition (started again), with no task to answer its network boot.
A second task, cancelled while its UEFI VM boots, leaves no domain, no volume and no NVRAM file behind.

The lab is tests/support/netlab.py (namespaces, bridge, site DHCP), the daemon tests/support/libvirtlab.py, the
services tests/support/bootservices.py. QEMU emulates (TCG): the node's ``domainType`` is ``qemu``.
Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pycdlib
import pytest
import yaml

from octoprov.answerfiles.dvd import answer_iso
from octoprov.targets.libvirt import kvm_target
from octoprov.targets.libvirt.domain_xml import serial_log_path
from tests.support import esp, libvirtlab, netlab, sshd, tinycloud, tinylinux
from tests.support.bootservices import BOOT_TIMEOUT, boot_services, steps, unusable
from tests.support.libvirt_ctx import make_ctx

EVENTS = "installer_started,os_installed,first_boot"
DISK_BOOT_S = 10  # network first, with no task to answer it, the BIOS reaches the disk after ~20 s (TCG)


@pytest.fixture(scope="module")
def kvm(tmp_path_factory):
    libvirtlab.require_lab()
    # the stand-in installer writes its OS to the (VirtIO) disk and keeps running, as an installed machine does
    kernel_args = f"{tinylinux.KERNEL_ARGS} octoprov.events={EVENTS} octoprov.install=vda octoprov.after=wait"
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


def boot_orders(xml: str) -> dict[str, str | None]:
    """The boot order of the OS disk and of the NIC in a domain definition."""
    devices = ET.fromstring(xml).find("devices")  # noqa: S314 - libvirt's own output
    assert devices is not None
    return {name: (boot.get("order") if (boot := devices.find(f"{path}/boot")) is not None else None)
            for name, path in (("disk", "disk[@device='disk']"), ("nic", "interface"))}


def disk_boot_after(daemon, serial: Path, *virsh_commands: tuple[str, ...]) -> float:
    """Seconds from the commands (a reset, a start) until the installed stand-in OS prints its marker again."""
    seen = serial.read_text(errors="replace").count(tinylinux.DISK_MARKER)
    started = time.monotonic()
    for command in virsh_commands:
        daemon.virsh(*command)
    while serial.read_text(errors="replace").count(tinylinux.DISK_MARKER) == seen:
        assert time.monotonic() - started < 60, serial.read_text(errors="replace")[-3000:]
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_kvm_task_netboots_its_vm_and_completes(kvm, tmp_path):
    daemon = kvm.daemon
    serial = Path(serial_log_path("tiny-kvm"))
    serial.unlink(missing_ok=True)  # a log of an earlier run would be appended to
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

    # installed and finished: the disk goes first, in the definition and in the running domain
    console = serial.read_text(errors="replace")
    assert f"{tinylinux.MARKER}: installed on /dev/vda" in console and tinylinux.DISK_MARKER not in console, console
    assert daemon.virsh("domstate", "tiny-kvm").strip() == "running"
    assert boot_orders(xml) == {"disk": "1", "nic": "2"}, xml
    boot_step = next(step for step in task["steps"] if step["name"] == "boot_from_disk")
    assert boot_step["detail"] == "Boot order set: disk first; set in the running domain too, for its next reboot"
    # the step again (a redelivered message) changes nothing; after a worker died half-way through the running
    # domain's part (the NIC's index given up, not yet taken again), it finishes that part
    ctx = make_ctx(tmp_path, task_id=task_id, hostname="tiny-kvm", uri=libvirtlab.URI)
    boot = kvm_target().boot
    assert boot.boot_from_disk(ctx) == "Disk first already; already so in the running domain"
    daemon.virsh("qemu-monitor-command", "tiny-kvm", json.dumps({"execute": "qom-set", "arguments": {
        "path": "/machine/peripheral/net0", "property": "bootindex", "value": -1}}))
    assert boot.boot_from_disk(ctx) == "Disk first already; set in the running domain too, for its next reboot"
    # the task is over, so the PXE services no longer answer this MAC: a machine still network-first would wait
    # ~20 s for its network boot to give up; the disk boots at once
    reset = disk_boot_after(daemon, serial, ("reset", "tiny-kvm"))  # the running QEMU, as a reboot resets it
    assert reset < DISK_BOOT_S, reset
    cold = disk_boot_after(daemon, serial, ("destroy", "tiny-kvm"), ("start", "tiny-kvm"))  # from the definition
    assert cold < DISK_BOOT_S, cold
    daemon.virsh("destroy", "tiny-kvm")
    print(f"tiny-kvm: reset to its disk's boot sector in {reset:.2f} s, power cycle in {cold:.2f} s (TCG)")


def secure_task_body(octo, hostname: str) -> dict:
    body = task_body(octo, hostname, generation=2)
    body["vm"]["secureboot"] = True
    body["os"] = {"imageId": esp.unsigned_image(octo)}
    return body


def validate_domain_xml(xml: str, path: Path) -> None:
    path.write_text(xml)
    checked = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_secure_boot_is_turned_on_before_the_installed_os_first_boots(kvm, tmp_path):
    """vm.secureboot with an installer firmware would refuse: the VM installs with Secure Boot off, powers off
    after reporting the OS installed, and Octoprov starts it again with Microsoft's keys enforced; the
    installed OS (shim, the signed GRUB and kernel on its ESP) reports its first boot with Secure Boot on."""
    daemon = kvm.daemon
    serial = Path(serial_log_path("tiny-sb"))
    serial.unlink(missing_ok=True)
    started = time.monotonic()
    task = kvm.call("POST", "/tasks", 201, json=secure_task_body(kvm, "tiny-sb"))
    task_id = task["id"]
    names = [s["name"] for s in task["steps"]]
    assert names[names.index("os_install"):][:3] == ["os_install", "enable_secure_boot", "first_boot"], names
    esp.publish_installed_os(kvm, task_id, tmp_path)  # what the "installer" writes; its first boot reports here
    kvm.wait_task(task_id, lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 120)
    before = daemon.virsh("dumpxml", "tiny-sb", "--inactive")
    assert "secure='no'" in before and "OVMF_CODE_4M.fd" in before, before
    validate_domain_xml(before, tmp_path / "before.xml")

    task = kvm.wait_task(task_id, lambda t: t["status"] in ("completed", "failed"), 2 * BOOT_TIMEOUT)
    elapsed = time.monotonic() - started
    assert task["status"] == "completed", (task, kvm.daemon.lab.log("libvirtd.log")[-2000:])
    after = daemon.virsh("dumpxml", "tiny-sb", "--inactive")
    assert "secure='yes'" in after and "OVMF_CODE_4M.secboot.fd" in after and "OVMF_VARS_4M.ms.fd" in after
    assert "<smm state='on'/>" in after, after
    assert boot_orders(after) == {"disk": "1", "nic": "2"}, after
    validate_domain_xml(after, tmp_path / "after.xml")
    step = next(step for step in task["steps"] if step["name"] == "enable_secure_boot")
    assert step["detail"].startswith("Secure Boot on"), step
    console = serial.read_text(errors="replace")
    installer, installed = console.split(f"{tinylinux.MARKER}: installed {esp.ESP_URL}", 1)
    assert "secureboot: Secure boot disabled" in installer, installer[-3000:]
    assert "secureboot: Secure boot enabled" in installed and "callback first_boot answered" in installed, installed
    daemon.virsh("destroy", "tiny-sb")
    print(f"\ntiny-sb: installed with Secure Boot off, first boot with it enforced; completed in {elapsed:.1f} s (TCG)")


def test_cancelling_mid_boot_leaves_nothing_behind(kvm):
    """Cancelled while it installs with Secure Boot off, before Octoprov turned it on."""
    daemon = kvm.daemon
    task_id = kvm.call("POST", "/tasks", 201, json=secure_task_body(kvm, "tiny-cancel"))["id"]
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


def test_iso_mode_boots_the_installation_dvd_with_its_answer_iso_and_secure_boot_on(kvm, tmp_path):
    """A node in ISO mode: the answer ISO goes into the pool through libvirt, the installation ISO (here a
    stand-in: no Windows media on this machine) boots first, Secure Boot is on from the start (Microsoft signs
    the media), and cancelling removes the answer ISO but keeps the pool's installation ISO."""
    daemon = kvm.daemon
    media = tmp_path / "media.iso"
    media.write_bytes(answer_iso("<unattend/>"))  # any ISO 9660 image stands for the installation media
    daemon.virsh("vol-create-as", daemon.pool_name, "media.iso", str(media.stat().st_size), "--format", "raw")
    daemon.virsh("vol-upload", "--pool", daemon.pool_name, "media.iso", str(media))
    try:
        node = kvm.call("POST", "/hypervisors", 201, json={
            "name": "KVM-ISO", "kind": "kvm", "endpoint": libvirtlab.URI,
            "kvm": {"storagePool": daemon.pool_name, "domainType": "qemu", "bootMode": "iso",
                    "installIso": "media.iso"}})["id"]
        (kvm.data_dir / "images" / "tiny" / "install.wim").write_bytes(b"wim")
        image = kvm.call("POST", "/images", 201, json={"name": "Windows", "osType": "windows",
                                                         "imagePath": "tiny/install.wim"})["id"]
        body = task_body(kvm, "tiny-iso", generation=2)
        body.update(hypervisorNodeId=node, os={"imageId": image, "adminPassword": "Iso-Mode-1"})
        body["vm"]["secureboot"] = True
        task = kvm.call("POST", "/tasks", 201, json=body)
        assert "enable_secure_boot" not in [step["name"] for step in task["steps"]]  # on throughout
        kvm.wait_task(task["id"], lambda t: steps(t)["power_on"] == "done" or t["status"] == "failed", 120)
        assert kvm.task(task["id"])["status"] != "failed", kvm.task(task["id"])
        xml = daemon.virsh("dumpxml", "tiny-iso")
        root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
        assert root.find("os/loader").get("secure") == "yes", xml
        cdroms = {disk.find("source").get("volume"): disk.find("boot") for disk in
                  root.findall("devices/disk[@device='cdrom']")}
        assert set(cdroms) == {"media.iso", "tiny-iso-answers"} and cdroms["media.iso"].get("order") == "1", xml
        assert root.find("devices/interface/boot") is None
        assert daemon.virsh("domstate", "tiny-iso").strip() == "running"
        # the answer ISO, as Windows Setup would read it: the task's Autounattend.xml with its reports
        written = tmp_path / "answers.iso"
        daemon.virsh("vol-download", "--pool", daemon.pool_name, "tiny-iso-answers", str(written))
        answers = pycdlib.PyCdlib()
        answers.open(str(written))
        found = io.BytesIO()
        answers.get_file_from_iso_fp(found, joliet_path="/autounattend.xml")
        answers.close()
        unattend = found.getvalue().decode()
        assert f"taskId={task['id']};" in unattend and "event='os_installed'" in unattend, unattend[:2000]

        kvm.call("DELETE", f"/tasks/{task['id']}", 200)
        deadline = time.monotonic() + 120
        while "tiny-iso" in daemon.domains():
            assert time.monotonic() < deadline, "the cancelled task's domain is still there after 120 s"
            time.sleep(0.5)
        assert "tiny-iso-answers" not in daemon.volumes() and "media.iso" in daemon.volumes()
    finally:
        daemon.virsh("vol-delete", "--pool", daemon.pool_name, "media.iso", check=False)
