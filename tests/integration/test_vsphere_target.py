"""The vSphere target against govmomi's vCenter simulator (tests/support/vcsim.py): node registration
and certificate trust, inventory, the checks at POST /tasks, and a task's VM through the real step
functions run in this process (tests/support/inline_pipeline.py), read back through the simulator's API."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pyVmomi = pytest.importorskip("pyVmomi")
from pyVim.connect import Disconnect, SmartConnect  # noqa: E402
from pyVmomi import vim  # noqa: E402

API = "/api/v1/provisioning"
HYPERVISORS = API + "/hypervisors"
TASKS = API + "/tasks"
STANDARD, DISTRIBUTED = "VM Network", "DC0_DVPG0"  # the simulator's port groups
GIB = 1024**3


@contextmanager
def vsphere(sim) -> Iterator[Any]:
    """The simulator's API, as a test reads it back (pyVmomi, certificate pinned by hand)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    si = SmartConnect(host="127.0.0.1", port=sim.port, user=sim.username, pwd=sim.password, sslContext=context)
    try:
        yield si.RetrieveContent()
    finally:
        Disconnect(si)


def vm_named(content, name: str):
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next((vm for vm in view.view if vm.name == name), None)
    finally:
        view.Destroy()


def datastore_files(content, folder: str) -> list[str]:
    """The files in ``[LocalDS_0] folder``, by the datastore browser; none when the folder is gone."""
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
    store = view.view[0]
    view.Destroy()
    task = store.browser.SearchDatastore_Task(f"[{store.name}] {folder}",
                                              vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"]))
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    if task.info.state == "error":
        assert isinstance(task.info.error, vim.fault.FileNotFound), task.info.error
        return []
    return [f.path for f in task.info.result.file or []]


def register(client, sim, name: str = "VC01", **vsphere_options) -> dict:
    options = {"thumbprint": sim.thumbprint, **vsphere_options}
    created = client.post(HYPERVISORS, json={"name": name, "kind": "vsphere", "endpoint": sim.url,
                                             "username": sim.username, "password": sim.password,
                                             "vsphere": options})
    assert created.status_code == 201, created.json
    return created.json


def windows_image(client, runtime) -> int:
    (runtime.settings.effective_images_dir / "ws2025.wim").write_bytes(b"wim")
    image = client.post(API + "/images", json={"name": "Windows Server 2025", "osType": "windows",
                                               "imagePath": "ws2025.wim"})
    assert image.status_code == 201, image.json
    return image.json["id"]


def request(node_id: int, image_id: int, hostname: str, **vm) -> dict:
    return {"hostname": hostname, "targetType": "vmware", "hypervisorNodeId": node_id,
            "os": {"imageId": image_id, "adminPassword": "Pa55word!"},
            "vm": {"cpu": 2, "memoryGb": 3, "disks": [{"sizeGb": 30, "purpose": "os"}],
                   "network": {"vswitch": STANDARD}, **vm}}


# --- the node -------------------------------------------------------------------------------------


def test_a_vsphere_node_keeps_its_password_secret(client, runtime, vcsim):
    node = register(client, vcsim)
    assert node["kind"] == "vsphere" and node["hasCredentials"] is True
    assert node["vsphere"]["thumbprint"] == vcsim.thumbprint and node["vsphere"]["verifyCertificate"] is True
    shown = json.dumps(client.get(f"{HYPERVISORS}/{node['id']}").json) + json.dumps(client.get(HYPERVISORS).json)
    assert vcsim.password not in shown
    with runtime.database.session() as session:
        from octoprov.models import Node

        stored = session.get(Node, node["id"])
        assert vcsim.password.encode() not in (stored.credentials_encrypted or "").encode()
        assert runtime.vault.decrypt_json(stored.credentials_encrypted) == {"password": vcsim.password}


@pytest.mark.parametrize(("body", "field"), [
    ({"endpoint": "http://vc01/sdk"}, "endpoint"),
    ({"endpoint": "https://user@vc01/sdk"}, "endpoint"),
    ({"endpoint": "vc 01"}, "endpoint"),
    ({"username": None}, "username"),
    ({"vsphere": {"thumbprint": "zz" * 32}}, "vsphere.thumbprint"),
    ({"vsphere": {"thumbprint": "ab" * 20}}, "vsphere.thumbprint"),  # SHA-1: not accepted
    ({"vsphere": {"datastore": "a/b"}}, "vsphere.datastore"),
    ({"vsphere": {"guestId": "bad id"}}, "vsphere.guestId"),
    ({"privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----"}, "privateKey"),
    ({"kind": "kvm", "endpoint": "test:///default", "username": None, "vsphere": {}}, "vsphere"),
], ids=["http", "user-in-url", "space", "no-user", "not-hex", "sha1", "slash", "guest-id", "ssh-key", "on-kvm"])
def test_vsphere_node_registrations_are_checked(client, body, field):
    base = {"name": "VC-BAD", "kind": "vsphere", "endpoint": "https://vc01.example.com/sdk", "username": "u",
            "password": "p"}
    response = client.post(HYPERVISORS, json={**base, **body})
    assert response.status_code == 400 and field in response.json["errors"], response.json


def test_a_thumbprint_with_colons_is_stored_as_hex(client, vcsim):
    spaced = ":".join(vcsim.thumbprint[i:i + 2] for i in range(0, 64, 2)).upper()
    node = register(client, vcsim, name="VC-COLONS", thumbprint=spaced)
    assert node["vsphere"]["thumbprint"] == vcsim.thumbprint


# --- inventory and the checks at POST /tasks ----------------------------------------------------------


def test_the_inventory_lists_port_groups_and_datastores_with_free_space(client, vcsim):
    node = register(client, vcsim)
    networks = client.get(f"{HYPERVISORS}/{node['id']}/networks")
    assert networks.status_code == 200, networks.json
    by_name = {n["name"]: n for n in networks.json}
    assert by_name[STANDARD]["type"] == "vsphere-standard-portgroup"
    assert by_name[DISTRIBUTED]["type"] == "vsphere-distributed-portgroup"
    assert not any("DVUplinks" in name for name in by_name)
    storage = client.get(f"{HYPERVISORS}/{node['id']}/storage")
    assert storage.status_code == 200, storage.json
    [store] = storage.json
    with vsphere(vcsim) as content:
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
        real = view.view[0].summary
        view.Destroy()
    assert store["name"] == "LocalDS_0" and store["capacityBytes"] == real.capacity
    assert 0 < store["freeBytes"] <= real.capacity


def test_the_api_refuses_what_the_node_cannot_take(client, runtime, vcsim):
    node = register(client, vcsim)
    image = windows_image(client, runtime)
    cases = [
        ({"network": {"vswitch": "nowhere"}}, "vm.network.vswitch", "no port group called nowhere"),
        ({"network": {"vswitch": STANDARD, "vlan": 42}}, "vm.network.vlan", "carries no VLAN, not VLAN 42"),
        ({"network": {"vlan": 42}}, "vm.network.vlan", "no port group of DC0_C0 carries VLAN 42"),
        ({"network": {}}, "vm.network.vswitch", "required for vSphere"),
        ({"disks": [{"sizeGb": 65536, "purpose": "os"}]}, "vm.disks", "do not fit on datastore LocalDS_0 of VC01"),
    ]
    for vm, field, message in cases:
        response = client.post(TASKS, json=request(node["id"], image, "vs-refused", **vm))
        assert response.status_code == 400, response.json
        assert message in response.json["errors"][field], response.json
    assert client.get(TASKS).json["total"] == 0  # the refused ones left nothing behind


@pytest.mark.parametrize(("options", "message"), [
    ({"datastore": "NoSuchDS"}, "no datastore called NoSuchDS in DC0_C0 (it has: LocalDS_0)"),
    ({"computeResource": "C9"}, "no cluster or host called C9 in datacenter DC0"),
    ({"datacenter": "DC9"}, "no datacenter called DC9"),
    ({"thumbprint": "00" * 32}, "is not trusted"),
    ({"thumbprint": None}, "is not trusted"),  # the simulator's self-signed certificate, checked against the CAs
], ids=["datastore", "cluster", "datacenter", "wrong-pin", "ca-check"])
def test_a_node_that_does_not_fit_is_refused_naming_the_node(client, runtime, vcsim, options, message):
    node = register(client, vcsim, name="VC-OPT", **options)
    response = client.post(TASKS, json=request(node["id"], windows_image(client, runtime), "vs-node"))
    assert response.status_code == 400, response.json
    assert message in response.json["errors"]["hypervisorNodeId"], response.json


def test_a_wrong_password_is_refused_without_showing_it(client, runtime, vcsim):
    created = client.post(HYPERVISORS, json={"name": "VC-PW", "kind": "vsphere", "endpoint": vcsim.url,
                                             "username": vcsim.username, "password": "not-the-Password-1",
                                             "vsphere": {"thumbprint": vcsim.thumbprint}})
    response = client.post(TASKS, json=request(created.json["id"], windows_image(client, runtime), "vs-pw"))
    assert response.status_code == 400, response.json
    assert "refused the node's user name or password" in response.json["errors"]["hypervisorNodeId"]
    assert "not-the-Password-1" not in json.dumps(response.json)


def test_an_unreachable_node_does_not_refuse_the_task(client, runtime):
    """The worker retries an unreachable node; refusing the task now would lose it."""
    node = client.post(HYPERVISORS, json={"name": "VC-DOWN", "kind": "vsphere", "endpoint": "https://127.0.0.1:9/sdk",
                                          "username": "u", "password": "p"}).json
    response = client.post(TASKS, json=request(node["id"], windows_image(client, runtime), "vs-down"))
    assert response.status_code == 201, response.json
