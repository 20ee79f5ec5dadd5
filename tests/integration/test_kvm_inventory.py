"""A KVM task checked against what its host offers (network or bridge, storage pool, free space)
before it is accepted, the node's ``kvm`` options, and how a ``qemu+ssh`` node's key reaches ssh.
Against libvirt's built-in ``test:///default`` driver."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from octoprov.context import NodeInfo
from octoprov.errors import InvalidRequest, PermanentError
from octoprov.targets.libvirt import kvm_target
from octoprov.targets.libvirt.connection import connection_uri, with_query
from octoprov.taskspec import TaskSpec
from tests.support.examples import task_spec

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

URI = "test:///default"
HYPERVISORS = "/api/v1/provisioning/hypervisors"
TASKS = "/api/v1/provisioning/tasks"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"


@pytest.fixture
def compute(conn):
    return kvm_target(lambda _uri: conn).compute


def node(options=None, endpoint=URI) -> NodeInfo:
    return NodeInfo(1, "KVM01", "kvm", endpoint, {"kvm": options} if options else {}, {})


def config(vswitch=None, *sizes: int) -> TaskSpec:
    """A KVM request with these disks (the first holds the OS) on this network or bridge."""
    vm = {"disks": [{"sizeGb": size, "purpose": "os" if index == 0 else "data"}
                    for index, size in enumerate(sizes or (40,))]}
    if vswitch:
        vm["network"] = {"vswitch": vswitch}
    return task_spec("kvm", "web01", os_type="linux", vm=vm)


def refused(compute, cfg, node_info) -> dict:
    with pytest.raises(InvalidRequest) as caught:
        compute.validate(cfg, node_info)
    return caught.value.errors


def test_what_the_host_offers_is_accepted(compute):
    compute.validate(config("default", 60, 39), node())  # test host: network "default", 100 GiB pool
    compute.validate(config(None, 10), node({"storagePool": "default-pool"}))


def test_a_network_or_bridge_the_host_lacks_is_refused(compute):
    errors = refused(compute, config("vSwitch-Prod"), node())
    assert errors == {"vm.network.vswitch": "no libvirt network or host bridge called vSwitch-Prod on KVM01"}


def test_a_host_bridge_is_accepted(conn, compute):
    conn.interfaceDefineXML("<interface type='bridge' name='br7'><bridge><interface type='ethernet' name='eth9'/>"
                            "</bridge></interface>", 0)
    compute.validate(config("br7"), node())


def test_a_missing_or_inactive_pool_is_refused(conn, compute):
    errors = refused(compute, config("default"), node({"storagePool": "fast-ssd"}))
    assert errors == {"hypervisorNodeId": "storage pool fast-ssd does not exist on the host (on KVM01)"}
    conn.storagePoolDefineXML("<pool type='dir'><name>cold</name><target><path>/cold</path></target></pool>", 0)
    errors = refused(compute, config("default"), node({"storagePool": "cold"}))
    assert errors == {"hypervisorNodeId": "storage pool cold is not active (on KVM01)"}


def test_disks_must_fit_in_the_free_space(compute):
    errors = refused(compute, config("default", 60, 41), node())
    assert errors == {"vm.disks": "101 GiB of disks do not fit in storage pool default-pool on KVM01: 100.0 GiB free"}


def test_an_unreachable_host_does_not_refuse_the_task():
    """The worker retries an unreachable host; refusing the task now would lose it."""
    compute = kvm_target().compute
    compute.validate(config("anything", 10_000), node(endpoint="qemu+unix:///system?socket=/nonexistent/sock"))


def test_the_api_refuses_a_task_the_host_cannot_take(client, settings):
    (settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "Tiny", "osType": "linux", "imagePath": "tiny.img"}).json["id"]
    kvm = client.post(HYPERVISORS, json={"name": "KVM01", "kind": "kvm", "endpoint": URI,
                                         "kvm": {"storagePool": "default-pool", "domainType": "qemu"}}).json
    assert kvm["kvm"] == {"storagePool": "default-pool", "domainType": "qemu", "virtioDrivers": True, "hostKey": None,
                         "bootMode": "pxe", "installIso": None}
    body = {"hostname": "web01", "targetType": "kvm", "hypervisorNodeId": kvm["id"], "os": {"imageId": image},
            "vm": {"cpu": 1, "memoryGb": 1, "disks": [{"sizeGb": 500, "purpose": "os"}],
                   "network": {"vswitch": "nowhere"}}}
    response = client.post(TASKS, json=body)
    assert response.status_code == 400 and "vm.network.vswitch" in response.json["errors"], response.json
    body["vm"]["network"]["vswitch"] = "default"
    response = client.post(TASKS, json=body)
    assert response.status_code == 400 and "vm.disks" in response.json["errors"], response.json
    body["vm"]["disks"][0]["sizeGb"] = 50
    assert client.post(TASKS, json=body).status_code == 201
    assert client.get(TASKS).json["total"] == 1  # the refused ones left nothing behind


def test_iso_mode_refuses_a_task_whose_installation_iso_is_not_in_the_pool(client, settings):
    (settings.effective_images_dir / "install.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "Windows", "osType": "windows", "imagePath": "install.wim"}).json["id"]
    refused = client.post(HYPERVISORS, json={"name": "KVM-ISO", "kind": "kvm", "endpoint": URI,
                                             "kvm": {"bootMode": "iso"}})
    assert refused.status_code == 400 and "kvm.installIso" in refused.json["errors"], refused.json
    kvm = client.post(HYPERVISORS, json={"name": "KVM-ISO", "kind": "kvm", "endpoint": URI, "kvm": {
        "storagePool": "default-pool", "domainType": "qemu", "bootMode": "iso", "installIso": "WS2025.iso"}}).json
    body = {"hostname": "web01", "targetType": "kvm", "hypervisorNodeId": kvm["id"],
            "os": {"imageId": image, "adminPassword": "Iso-Mode-1"},
            "vm": {"cpu": 1, "memoryGb": 1, "disks": [{"sizeGb": 50, "purpose": "os"}],
                   "network": {"vswitch": "default"}}}
    response = client.post(TASKS, json=body)
    assert response.status_code == 400, response.json
    assert "WS2025.iso" in response.json["errors"]["hypervisorNodeId"], response.json
    assert client.get(TASKS).json["total"] == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "kvm", "endpoint": URI, "kvm": {"domainType": "xen"}}, "kvm.domainType"),
    ({"kind": "kvm", "endpoint": URI, "kvm": {"storagePool": "a/b"}}, "kvm.storagePool"),
    ({"kind": "fake", "endpoint": "fake://x", "kvm": {}}, "kvm"),
    ({"kind": "kvm", "endpoint": URI, "privateKey": KEY}, "privateKey"),
    ({"kind": "kvm", "endpoint": "qemu+ssh://root@kvm01/system", "privateKey": "hunter2"}, "privateKey"),
], ids=["domain-type", "pool-slash", "kvm-on-fake", "key-without-ssh", "not-a-key"])
def test_kvm_node_options_are_checked(client, body, field):
    response = client.post(HYPERVISORS, json={"name": "K", **body})
    assert response.status_code == 400 and field in response.json["errors"], response.json


def test_an_ssh_node_keeps_its_key_secret(client):
    created = client.post(HYPERVISORS, json={"name": "KVM02", "kind": "kvm", "endpoint": "qemu+ssh://root@kvm02/system",
                                             "privateKey": KEY})
    assert created.status_code == 201, created.json
    assert created.json["hasCredentials"] is True
    assert "PRIVATE KEY" not in str(client.get(f"{HYPERVISORS}/{created.json['id']}").json)


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbu2K2Hv0dUl/0aHaiUIoPPu6vZG8Gz8uhwm1tXzTz2 root@kvm01"


def query(uri: str) -> dict:
    return dict(parse_qsl(urlsplit(uri).query))


def test_a_stored_key_goes_to_libvirts_ssh_client_with_the_stored_host_key():
    with connection_uri("qemu+ssh://root@kvm01:2222/system?socket=/run/libvirt/libvirt-sock", KEY, HOST_KEY) as uri:
        assert uri.startswith("qemu+libssh://root@kvm01:2222/system?")
        params = query(uri)
        assert params["socket"] == "/run/libvirt/libvirt-sock"  # the node's own parameters are kept
        assert params["sshauth"] == "privkey" and params["known_hosts_verify"] == "normal"
        keyfile, known_hosts = Path(params["keyfile"]), Path(params["known_hosts"])
        assert keyfile.read_text() == KEY + "\n"  # OpenSSH-format keys need their last newline
        assert known_hosts.read_text() == "[kvm01]:2222 " + " ".join(HOST_KEY.split()[:2]) + "\n"
        for path in (keyfile, known_hosts):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(keyfile.parent.stat().st_mode) == 0o700
    assert not keyfile.exists() and not keyfile.parent.exists()  # only while connecting


def test_without_a_stored_key_the_uri_is_kept():
    with connection_uri("qemu+ssh://kvm01/system", None, None) as uri:
        assert uri == "qemu+ssh://kvm01/system?no_tty=1"  # ssh must never wait for a password prompt
    with connection_uri("qemu:///system", KEY, None) as uri:
        assert uri == "qemu:///system"
    with connection_uri("qemu+ssh://kvm01/system", KEY, None) as uri:
        assert "known_hosts=" not in uri and query(uri)["known_hosts_verify"] == "normal"  # never skipped


def test_query_parameters_are_encoded():
    assert with_query("qemu+ssh://kvm01/system?no_tty=0", keyfile="/tmp/k y&z", no_tty="1") == \
        "qemu+ssh://kvm01/system?keyfile=%2Ftmp%2Fk+y%26z&no_tty=1"
    assert with_query("qemu+ssh://kvm01/system", keyfile=None) == "qemu+ssh://kvm01/system"


def test_host_key_option_is_checked(client):
    body = {"name": "K", "kind": "kvm", "endpoint": "qemu+ssh://root@kvm01/system", "privateKey": KEY}
    for wrong in ("ssh-ed25519", "ssh-dss AAAAB3NzaC1kc3M=", "ssh-ed25519 AAAA!"):
        response = client.post(HYPERVISORS, json={**body, "kvm": {"hostKey": wrong}})
        assert response.status_code == 400 and "kvm.hostKey" in response.json["errors"], response.json
    created = client.post(HYPERVISORS, json={**body, "kvm": {"hostKey": HOST_KEY}})
    assert created.status_code == 201 and created.json["kvm"]["hostKey"] == HOST_KEY


def test_the_domain_type_option_reaches_the_xml(tmp_path, conn, compute):
    from tests.support.libvirt_ctx import make_ctx

    ctx = make_ctx(tmp_path, options={"kvm": {"domainType": "qemu"}})
    assert compute.planned_domain_xml(ctx).startswith('<domain type="qemu">')
    with pytest.raises(PermanentError):
        compute.planned_domain_xml(make_ctx(tmp_path, options={"kvm": {"storagePool": "nope"}}))
