"""A machine's inventory read from its BMC before it is provisioned: sushy-tools' Redfish emulator in
front of libvirt's test driver (a real Redfish service over a real libvirt API, whose default domain
has known CPUs, memory and network card), the inspection run by the real Celery task function; the
task checks against what the BMC said. Disks of real pool volumes are compared with virsh in
tests/e2e/test_baremetal_e2e.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest
from sqlalchemy import update

from octoprov.models import Node, Task, TaskStep
from tests.support import redfish_bmc
from tests.support.library import tiny_linux_image, winpe_image
from tests.support.live import free_port

MACHINES = "/api/v1/provisioning/machines"
TASKS = "/api/v1/provisioning/tasks"
PXE = "/api/v1/provisioning/pxe"
TEST_URI = "test:///default"  # libvirt's test driver: one running domain, "test"
REGISTERED_MAC = "52:54:00:1e:00:01"


@pytest.fixture(scope="module")
def bmc(tmp_path_factory):
    with redfish_bmc.emulator(tmp_path_factory.mktemp("inventory-bmc"), libvirt_uri=TEST_URI) as running:
        yield running


@pytest.fixture(scope="module")
def domain() -> dict:
    """What libvirt itself says of the test domain: the facts the inventory must agree with."""
    connection = libvirt.open(TEST_URI)
    try:
        found = connection.lookupByName("test")
        _state, max_kib, _memory, cpus, _time = found.info()
        xml = ET.fromstring(found.XMLDesc())  # noqa: S314 - libvirt's own output
        macs = [mac.get("address").lower() for mac in xml.iterfind("devices/interface/mac")]
        return {"uuid": found.UUIDString(), "cpus": cpus, "memoryBytes": max_kib * 1024, "macs": macs}
    finally:
        connection.close()


def register(client, bmc, **changes) -> dict:
    body = {"name": "rack-1", "macAddresses": [REGISTERED_MAC], "username": bmc.username, "password": bmc.password,
            "bmc": {"address": bmc.url, "systemId": "test"}, **changes}
    response = client.post(MACHINES, json=body)
    assert response.status_code == 201, response.json
    return response.json


def test_registration_reads_the_bmcs_inventory(client, queue, bmc, domain):
    machine = register(client, bmc)
    assert machine["inspection"]["state"] == "queued" and machine["hardware"] is None
    assert queue.messages[0] == ("inspect", machine["id"])
    queue.deliver()
    shown = client.get(f"{MACHINES}/{machine['id']}").json
    hardware = shown["hardware"]
    assert shown["inspection"]["state"] == "done", shown["inspection"]
    assert hardware["uuid"] == domain["uuid"] and hardware["manufacturer"] == "Sushy Emulator"
    assert hardware["cpus"] == domain["cpus"] and hardware["memoryBytes"] == domain["memoryBytes"]
    assert [nic["mac"] for nic in hardware["nics"]] == domain["macs"]
    assert hardware["powerState"] == "On" and hardware["secureBoot"] is False and "CD" in hardware["virtualMedia"]
    assert hardware["biosVersion"] and hardware["inspectedAt"]
    # the BMC's cards that are not registered are offered, not added
    assert shown["offeredMacs"] == domain["macs"] and shown["macAddresses"] == [REGISTERED_MAC]
    assert bmc.password not in str(shown)


def test_a_task_for_a_card_the_bmc_does_not_list_is_refused(client, queue, bmc, domain, linux_image):
    machine = register(client, bmc)
    queue.deliver()
    refused = client.post(TASKS, json={"hostname": "rack-1", "targetType": "baremetal", "macAddress": REGISTERED_MAC,
                                       "os": {"imageId": linux_image}})
    assert refused.status_code == 400 and "no such card" in refused.json["errors"]["macAddress"], refused.json
    # the operator adds the offered card (and keeps the stored password): the task for it is accepted
    offered = domain["macs"][0]
    updated = client.put(f"{MACHINES}/{machine['id']}", json={
        "name": "rack-1", "macAddresses": [offered], "username": bmc.username,
        "bmc": {"address": bmc.url, "systemId": "test"}})
    assert updated.status_code == 200 and updated.json["offeredMacs"] == []
    queue.deliver()
    accepted = client.post(TASKS, json={"hostname": "rack-1", "targetType": "baremetal", "macAddress": offered,
                                        "os": {"imageId": linux_image}})
    assert accepted.status_code == 201, accepted.json


def test_an_os_disk_larger_than_the_machines_disks_is_refused(client, database, linux_image):
    """The disks as an inspection stores them (the emulated libvirt pool volumes are in the e2e test)."""
    from octoprov.inventory import store_inventory

    machine = client.post(MACHINES, json={"name": "rack-2", "macAddresses": [REGISTERED_MAC]}).json
    with database.session() as session:
        node = session.get(Node, machine["id"])
        options = dict(node.options or {})
        disks = [{"name": "sda", "sizeBytes": 240 << 30}, {"name": "sdb", "sizeBytes": 480 << 30}]
        store_inventory(options, {"disks": disks, "nics": [{"mac": REGISTERED_MAC}]})
        node.options = options

    def task(size_gb: int):
        return client.post(TASKS, json={"hostname": "rack-2", "targetType": "baremetal", "macAddress": REGISTERED_MAC,
                                        "osDiskGb": size_gb, "os": {"imageId": linux_image}})

    refused = task(500)
    assert refused.status_code == 400, refused.json
    assert "largest disk (480.0 GB" in refused.json["errors"]["osDiskGb"], refused.json
    assert task(480).status_code == 201
    # a template's OS disk is what the machine's must hold
    template = client.post("/api/v1/provisioning/templates", json={
        "name": "Big OS", "imageId": linux_image, "defaultDisks": [{"sizeGb": 600, "purpose": "os"}]})
    assert template.status_code == 201, template.json
    from_template = client.post(TASKS, json={"hostname": "rack-2", "targetType": "baremetal",
                                             "macAddress": REGISTERED_MAC, "templateId": template.json["id"]})
    assert from_template.status_code == 400 and "600 GB" in from_template.json["errors"]["osDiskGb"]


def test_an_unreachable_bmc_fails_the_inspection_not_the_registration(client, queue):
    machine = client.post(MACHINES, json={"name": "rack-3", "macAddresses": [REGISTERED_MAC], "username": "root",
                                          "password": "never-Shown-9",
                                          "bmc": {"address": f"http://127.0.0.1:{free_port()}"}}).json
    queue.deliver()
    shown = client.get(f"{MACHINES}/{machine['id']}").json
    assert shown["inspection"]["state"] == "failed" and "does not answer" in shown["inspection"]["message"]
    assert "never-Shown-9" not in str(shown)
    # asked again: queued again
    again = client.post(f"{MACHINES}/{machine['id']}/inspect")
    assert again.status_code == 202 and again.json["inspection"]["state"] == "queued"


def test_a_machine_without_a_redfish_bmc_cannot_be_inspected(client, queue):
    machine = client.post(MACHINES, json={"name": "rack-4", "macAddresses": [REGISTERED_MAC]}).json
    assert machine["inspection"] is None and not queue.messages
    refused = client.post(f"{MACHINES}/{machine['id']}/inspect")
    assert refused.status_code == 409 and "no Redfish BMC" in refused.json["message"]
    assert client.post(f"{MACHINES}/999999/inspect").status_code == 404


def test_the_inventory_picks_the_driver_packs_before_any_network_boot(client, queue, bmc, database, runtime,
                                                                      settings, anonymous):
    """A machine that never reports to iPXE (virtual media) still gets the packs of its model."""
    folder = settings.effective_drivers_dir / "emulated"
    folder.mkdir(parents=True)
    (folder / "sushy.inf").write_text("[Version]\n")
    assert client.post("/api/v1/provisioning/drivers", json={
        "name": "Emulated", "vendor": "Sushy", "driverPath": "emulated", "osType": "windows"}).status_code == 201
    image = winpe_image(client, settings.effective_images_dir)
    register(client, bmc, macAddresses=["aa:bb:cc:dd:ee:ff"])
    queue.deliver()
    task = client.post(TASKS, json={"hostname": "BM-INV", "targetType": "baremetal", "macAddress": "aa:bb:cc:dd:ee:ff",
                                    "os": {"imageId": image, "adminPassword": "Pa55word!"}}).json
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task["id"], TaskStep.name.in_(
            ["register_machine", "render_answers", "register_mac", "power_on"])).values(status="done"))
        token = runtime.vault.decrypt(session.get(Task, task["id"]).files_token_encrypted)
    script = anonymous.get(f"{PXE}/files/{token}/startnet.cmd").get_data(as_text=True)
    assert 'drvload "Y:\\emulated\\sushy.inf"' in script, script


@pytest.fixture
def linux_image(client, settings) -> int:
    return tiny_linux_image(client, settings.effective_images_dir)
