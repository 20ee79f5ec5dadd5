"""Driver packs, templates and hypervisor nodes through the API."""

from __future__ import annotations

import pytest

DRIVERS = "/api/v1/provisioning/drivers"
TEMPLATES = "/api/v1/provisioning/templates"
HYPERVISORS = "/api/v1/provisioning/hypervisors"


def driver_folder(settings, name: str = "dell-r750"):
    folder = settings.effective_drivers_dir / name
    (folder / "net").mkdir(parents=True)
    (folder / "net" / "e1r.inf").write_text("[Version]\nSignature=\"$WINDOWS NT$\"\n")
    return folder


def test_driver_pack_lifecycle(client, settings):
    driver_folder(settings)
    body = {"name": "Dell PowerEdge R750", "vendor": "Dell", "modelPattern": "^PowerEdge R7[0-9]0$",
            "osType": "windows", "driverPath": "dell-r750"}
    created = client.post(DRIVERS, json=body)
    assert created.status_code == 201, created.json
    pack = created.json
    assert pack["driverPath"] == "dell-r750"
    assert client.get(f"{DRIVERS}/{pack['id']}").json == pack
    assert client.get(DRIVERS).json["total"] == 1
    assert client.delete(f"{DRIVERS}/{pack['id']}").status_code == 204
    assert client.get(f"{DRIVERS}/{pack['id']}").status_code == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"modelPattern": "PowerEdge (R750"}, "modelPattern"),
    ({"driverPath": "../etc"}, "driverPath"),
    ({"driverPath": "missing"}, "driverPath"),
    ({"osType": "beos"}, "osType"),
], ids=["bad-regex", "escape", "missing", "os"])
def test_driver_pack_validation(client, settings, change, field):
    driver_folder(settings)
    body = {"name": "Dell", "osType": "windows", "driverPath": "dell-r750", **change}
    response = client.post(DRIVERS, json=body)
    assert response.status_code == 400 and field in response.json["errors"], response.json


def test_template_lifecycle(client):
    body = {"name": "Standard SQL Server", "description": "SQL boxes", "defaultCpu": 8, "defaultMemoryGb": 32,
            "defaultDisks": [{"sizeGb": 100, "purpose": "os", "type": "dynamic"},
                             {"sizeGb": 200, "purpose": "data", "type": "fixed"}],
            "domainJoin": True, "domainName": "yourdom.local", "domainOu": "OU=Servers,DC=yourdom,DC=local",
            "postInstallPackages": [{"packageId": 1}, {"groupId": 5}]}
    created = client.post(TEMPLATES, json=body)
    assert created.status_code == 201, created.json
    template = created.json
    assert template["language"] == "de-DE" and template["timezone"] == "W. Europe Standard Time"
    assert template["domainJoinMethod"] == "offline"
    updated = client.put(f"{TEMPLATES}/{template['id']}", json={"defaultCpu": 16, "language": "en-US"})
    assert updated.status_code == 200, updated.json
    assert updated.json["defaultCpu"] == 16 and updated.json["defaultMemoryGb"] == 32
    assert updated.json["language"] == "en-US"
    bad = client.put(f"{TEMPLATES}/{template['id']}", json={"defaultCpu": 0})
    assert bad.status_code == 400 and "defaultCpu" in bad.json["errors"]
    assert client.get(f"{TEMPLATES}/{template['id']}").json["defaultCpu"] == 16  # nothing lost
    assert client.delete(f"{TEMPLATES}/{template['id']}").status_code == 204
    assert client.get(f"{TEMPLATES}/{template['id']}").status_code == 404
    assert client.put(f"{TEMPLATES}/{template['id']}", json={"defaultCpu": 2}).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"defaultCpu": 4}, "name"),
    ({"name": "t", "imageId": 4242}, "imageId"),
    ({"name": "t", "domainJoin": True}, "domainName"),
    ({"name": "t", "language": "klingon"}, "language"),
    ({"name": "t", "defaultDisks": [{"sizeGb": 10, "purpose": "data"}]}, "defaultDisks"),
], ids=["no-name", "no-image", "join-without-domain", "language", "no-os-disk"])
def test_template_validation(client, body, field):
    response = client.post(TEMPLATES, json=body)
    assert response.status_code == 400 and field in response.json["errors"], response.json


def test_hypervisor_register_update_remove(client, token):
    body = {"name": "YOURHOST01", "kind": "hyperv", "endpoint": "https://yourhost01.yourdom.local:5986/wsman",
            "username": "YOURDOM\\svc", "password": "hv-secret-1", "winrm": {"transport": "kerberos"}}
    created = client.post(HYPERVISORS, json=body)
    assert created.status_code == 201, created.json
    node = created.json
    assert node["hasCredentials"] is True and "password" not in node
    assert node["winrm"]["transport"] == "kerberos"
    assert client.post(HYPERVISORS, json=body).status_code == 409  # same name
    update = {**body, "endpoint": "yourhost02.yourdom.local"}
    del update["password"]
    changed = client.put(f"{HYPERVISORS}/{node['id']}", json=update)
    assert changed.status_code == 200 and changed.json["hasCredentials"] is True  # kept
    assert client.get(HYPERVISORS, query_string={"kind": "hyperv"}).json["total"] == 1
    assert client.get(HYPERVISORS, query_string={"kind": "kvm"}).json["total"] == 0
    assert client.delete(f"{HYPERVISORS}/{node['id']}").status_code == 204
    assert client.get(f"{HYPERVISORS}/{node['id']}").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "k", "kind": "kvm", "endpoint": "https://host"}, "endpoint"),
    ({"name": "h", "kind": "hyperv", "endpoint": "ftp://host"}, "endpoint"),
    ({"name": "h", "kind": "hyperv", "endpoint": "bad host name"}, "endpoint"),
    ({"name": "h", "kind": "xen", "endpoint": "host"}, "kind"),
    ({"name": "h", "kind": "hyperv", "endpoint": "host", "winrm": {"transport": "telnet"}}, "winrm.transport"),
    ({"name": "k", "kind": "kvm", "endpoint": "test:///default", "winrm": {}}, "winrm"),
], ids=["kvm-not-libvirt", "hyperv-ftp", "hyperv-space", "kind", "transport", "winrm-on-kvm"])
def test_hypervisor_validation(client, body, field):
    response = client.post(HYPERVISORS, json=body)
    assert response.status_code == 400 and field in response.json["errors"], response.json


def test_kvm_inventory_through_libvirt(client):
    """libvirt's built-in test driver: a real libvirt connection without a daemon."""
    node = client.post(HYPERVISORS, json={"name": "KVM01", "kind": "kvm", "endpoint": "test:///default"}).json
    networks = client.get(f"{HYPERVISORS}/{node['id']}/networks")
    assert networks.status_code == 200, networks.json
    assert {"name": "default", "type": "libvirt-network", "active": True, "bridge": "virbr0",
            "vlanCapable": False} in networks.json
    storage = client.get(f"{HYPERVISORS}/{node['id']}/storage").json
    pool = next(p for p in storage if p["name"] == "default-pool")
    assert pool["capacityBytes"] > 0 and pool["freeBytes"] <= pool["capacityBytes"]


def test_inventory_errors_are_clear(client):
    unreachable = client.post(HYPERVISORS, json={"name": "KVM02", "kind": "kvm",
                                                 "endpoint": "qemu+unix:///system?socket=/nonexistent/sock"}).json
    response = client.get(f"{HYPERVISORS}/{unreachable['id']}/networks")
    assert response.status_code == 502 and "cannot connect" in response.json["message"]
    hyperv = client.post(HYPERVISORS, json={"name": "HV", "kind": "hyperv", "endpoint": "127.0.0.1"}).json
    no_login = client.get(f"{HYPERVISORS}/{hyperv['id']}/storage")
    assert no_login.status_code == 409 and "needs a username and a password" in no_login.json["message"]
    closed = client.post(HYPERVISORS, json={"name": "HV-CLOSED", "kind": "hyperv", "endpoint": "127.0.0.1",
                                            "username": "u", "password": "p", "winrm": {"port": 9}}).json
    refused = client.get(f"{HYPERVISORS}/{closed['id']}/storage")
    assert refused.status_code == 502 and "connection to WinRM on HV-CLOSED" in refused.json["message"]
    assert client.get(f"{HYPERVISORS}/4242/networks").status_code == 404
