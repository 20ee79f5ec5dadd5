"""Virtual-media installs through the API: what POST /tasks refuses before anything runs, and the boot
ISO's URL, which answers only under the task's latest token and only while the task is active. The
install itself (sushy-tools inserting the ISO into a QEMU machine of the lab's libvirtd, the machine
booting from it without DHCP boot options) is in tests/e2e/test_baremetal_e2e.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from octoprov.context import load_context
from octoprov.models import Node
from octoprov.targets import virtualmedia
from tests.support.library import tiny_linux_image

MACHINES = "/api/v1/provisioning/machines"
TASKS = "/api/v1/provisioning/tasks"
MAC = "52:54:00:0d:00:01"


@pytest.fixture
def linux_image(client, settings) -> int:
    return tiny_linux_image(client, settings.effective_images_dir, "console=ttyS0")


@pytest.fixture
def windows_image(client, settings) -> int:
    (settings.effective_images_dir / "ws.wim").write_bytes(b"wim")
    return client.post("/api/v1/provisioning/images", json={
        "name": "WS2025", "osType": "windows", "imagePath": "ws.wim"}).json["id"]


def machine(client, **changes) -> dict:
    body = {"name": "vm-rack-1", "macAddresses": [MAC], "bmc": {"address": "https://198.51.100.60"},
            "username": "root", "password": "bmc-Secret-1", "bootMethod": "virtualMedia", **changes}
    response = client.post(MACHINES, json=body)
    assert response.status_code == 201, response.json
    return response.json


def task(client, image_id: int, **changes):
    return client.post(TASKS, json={"hostname": "vm-rack-1", "targetType": "baremetal", "macAddress": MAC,
                                    "os": {"imageId": image_id}, **changes})


def test_a_machine_booting_by_virtual_media_needs_a_redfish_bmc(client):
    refused = client.post(MACHINES, json={"name": "m", "macAddresses": [MAC], "bootMethod": "virtualMedia"})
    assert refused.status_code == 400 and "Redfish BMC" in refused.json["errors"]["bootMethod"]
    refused = client.post(MACHINES, json={"name": "m", "macAddresses": [MAC], "bootMethod": "floppy"})
    assert refused.status_code == 400 and "bootMethod" in refused.json["errors"]
    shown = machine(client)
    assert shown["bootMethod"] == "virtualMedia" and shown["kind"] == "redfish"


def test_post_tasks_refuses_what_virtual_media_cannot_boot(client, linux_image, windows_image, database):
    nobody = task(client, linux_image, options={"bootMethod": "virtualMedia"})  # no machine with that MAC
    assert nobody.status_code == 400 and "Redfish BMC" in nobody.json["errors"]["options.bootMethod"]
    node = client.post("/api/v1/provisioning/hypervisors", json={"name": "LAB", "kind": "fake",
                                                                "endpoint": "fake://lab"}).json["id"]
    vm = client.post(TASKS, json={"hostname": "vm-1", "targetType": "fake", "hypervisorNodeId": node,
                                  "vm": {"cpu": 1, "memoryGb": 1, "disks": [{"sizeGb": 10, "purpose": "os"}]},
                                  "options": {"bootMethod": "virtualMedia"}, "os": {"imageId": linux_image}})
    assert vm.status_code == 400 and "options.bootMethod" in vm.json["errors"], vm.json
    registered = machine(client)
    windows = task(client, windows_image)
    assert windows.status_code == 400 and "installIsoPath" in windows.json["errors"]["os.imageId"], windows.json
    # the machine's BMC reported its virtual media: a floppy only
    with database.session() as session:
        node = session.get(Node, registered["id"])
        node.options = {**node.options, "hardware": {"virtualMedia": ["Floppy", "USBStick"]}}
    no_cd = task(client, linux_image)  # the machine's own bootMethod: the error names the MAC
    assert no_cd.status_code == 400, no_cd.json
    assert "reports no virtual CD or DVD drive" in no_cd.json["errors"]["macAddress"], no_cd.json
    # the task may choose the network instead
    assert task(client, linux_image, options={"bootMethod": "pxe"}).status_code == 201


def test_the_boot_isos_url_answers_under_the_latest_token_while_the_task_is_active(
        client, anonymous, linux_image, database, runtime, settings):
    machine(client)
    created = task(client, linux_image)
    assert created.status_code == 201, created.json
    with database.session() as session:
        ctx = load_context(session, created.json["id"], settings, database, runtime.vault)
    assert virtualmedia.uses_virtual_media(ctx)
    assert virtualmedia.build_media(ctx).startswith("Boot ISO built")
    iso = virtualmedia.media_file(settings, ctx.task_id, "boot.iso")
    urls = virtualmedia.mint_urls(ctx)
    assert list(urls) == ["boot.iso"]  # Linux: no answer floppy
    first = urls["boot.iso"]
    assert first.startswith(f"{settings.effective_media_url}/boot/media/") and first.endswith("/boot.iso")
    path = first.removeprefix(settings.effective_media_url)
    served = anonymous.get(path)
    assert served.status_code == 200 and served.get_data() == iso.read_bytes()
    ranged = anonymous.get(path, headers={"Range": "bytes=32768-32773"})  # the ISO 9660 volume descriptor
    assert ranged.status_code == 206 and ranged.get_data() == b"\x01CD001"
    second = virtualmedia.mint_urls(ctx)["boot.iso"]  # a retried power-on: the earlier URL is dead
    assert anonymous.get(path).status_code == 404
    assert anonymous.get(second.removeprefix(settings.effective_media_url)).status_code == 200
    assert anonymous.get("/boot/media/not-a-token/boot.iso").status_code == 404
    assert anonymous.get(second.removeprefix(settings.effective_media_url).replace("boot.iso", "answers.img")
                         ).status_code == 404  # a Linux task has no answer floppy
    assert client.delete(f"{TASKS}/{ctx.task_id}").status_code == 200  # cancelled: dead although still on disk
    assert iso.is_file() and anonymous.get(second.removeprefix(settings.effective_media_url)).status_code == 404
    virtualmedia.forget(ctx)  # what the rollback does after ejecting
    assert not iso.exists()


def test_windows_boots_its_installation_iso_with_the_answer_file_on_a_floppy(
        client, anonymous, database, runtime, settings, tmp_path):
    """The installation ISO from the images folder into the virtual CD, Autounattend.xml (adapted to an
    install from the DVD) on a floppy image for the virtual floppy or USB stick; Secure Boot stays on."""
    (settings.effective_images_dir / "ws2025.iso").write_bytes(b"CD001" * 4096)
    (settings.effective_images_dir / "install.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "WS2025 DVD", "osType": "windows", "imagePath": "install.wim", "installIsoPath": "ws2025.iso"})
    assert image.status_code == 201 and image.json["installIsoPath"] == "ws2025.iso", image.json
    missing = client.post("/api/v1/provisioning/images", json={
        "name": "WS2025 no DVD", "osType": "windows", "imagePath": "install.wim", "installIsoPath": "none.iso"})
    assert missing.status_code == 400 and "installIsoPath" in missing.json["errors"]
    registered = machine(client, secureBoot=True)
    with database.session() as session:  # what its BMC listed: a CD and a USB stick
        node = session.get(Node, registered["id"])
        node.options = {**node.options, "hardware": {"virtualMedia": ["CD", "DVD", "USBStick"]}}
    created = task(client, image.json["id"], os={"imageId": image.json["id"], "adminPassword": "Pa55word!"})
    assert created.status_code == 201, created.json
    names = [step["name"] for step in created.json["steps"]]
    assert "enable_secure_boot" not in names  # Microsoft-signed media: Secure Boot stays on throughout
    with database.session() as session:
        ctx = load_context(session, created.json["id"], settings, database, runtime.vault)
    assert not ctx.secure_boot_after_install
    assert virtualmedia.build_media(ctx).startswith("Answer floppy built (autounattend.xml)")
    urls = virtualmedia.mint_urls(ctx)
    assert list(urls) == ["boot.iso", "answers.img"]
    dvd = anonymous.get(urls["boot.iso"].removeprefix(settings.effective_media_url))
    assert dvd.status_code == 200 and dvd.get_data() == b"CD001" * 4096  # the image's installation ISO
    floppy = anonymous.get(urls["answers.img"].removeprefix(settings.effective_media_url))
    assert floppy.status_code == 200 and len(floppy.get_data()) == 1440 * 1024
    (tmp_path / "answers.img").write_bytes(floppy.get_data())
    answer = subprocess.run(["mtype", "-i", str(tmp_path / "answers.img"), "::/autounattend.xml"],
                            capture_output=True, text=True, check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    assert "Report that Setup started" in answer.stdout and "<Path>" not in answer.stdout  # the DVD's own image
    assert "Pa55word!" not in answer.stdout  # Setup's encoded form only
    virtualmedia.forget(ctx)
    assert not virtualmedia.media_file(settings, ctx.task_id, "answers.img").exists()
    assert (settings.effective_images_dir / "ws2025.iso").is_file()  # the image's ISO stays
    # a BMC with a CD only cannot take the answer floppy
    with database.session() as session:
        node = session.get(Node, registered["id"])
        node.options = {**node.options, "hardware": {"virtualMedia": ["CD", "DVD"]}}
    refused = task(client, image.json["id"], os={"imageId": image.json["id"], "adminPassword": "Pa55word!"})
    assert refused.status_code == 400 and "floppy or USB stick" in refused.json["errors"]["macAddress"]


def test_an_unsigned_kernel_is_refused_for_a_secure_boot_machine(client, settings):
    folder = settings.effective_images_dir / "unsigned"
    folder.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.gz"):
        (folder / name).write_bytes(b"x" * 100)
    image = client.post("/api/v1/provisioning/images", json={
        "name": "Unsigned", "osType": "linux", "imagePath": "unsigned/initrd.gz", "kernelPath": "unsigned/vmlinuz",
        "initrdPath": "unsigned/initrd.gz", "signedKernel": False}).json["id"]
    machine(client, secureBoot=True)
    refused = task(client, image)
    assert refused.status_code == 400 and "install it by pxe" in refused.json["errors"]["os.imageId"]
    assert task(client, image, options={"bootMethod": "pxe"}).status_code == 201  # Secure Boot off and on again

