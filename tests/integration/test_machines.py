"""Bare-metal machines through the API, and the Redfish power driver against a real Redfish
service (sushy-tools' emulator with in-memory systems; the libvirt-backed boot is in
test_baremetal_e2e.py). The IPMI driver's own tests are in test_ipmi_power.py."""

from __future__ import annotations

import time

import pytest
import requests

from octoprov import secureboot
from octoprov.context import NodeInfo, TaskContext, load_context
from octoprov.errors import PermanentError, TargetUnreachable, TransientError
from octoprov.machines import ipmi_endpoint
from octoprov.models import Node
from octoprov.settings import Settings
from octoprov.targets import redfish
from octoprov.targets.baremetal import baremetal_target
from tests.support import redfish_bmc
from tests.support.examples import task_spec
from tests.support.live import free_port

MACHINES = "/api/v1/provisioning/machines"
MAC_A, MAC_B, MAC_C = "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"
MAC_D, MAC_E = "52:54:00:aa:00:04", "52:54:00:aa:00:05"
SYSTEMS = [
    {"uuid": "11111111-1111-4111-8111-111111111111", "name": "blade-1", "power_state": "Off",
     "external_notifier": False, "nics": [{"mac": MAC_A, "ip": "198.51.100.11"}]},
    {"uuid": "22222222-2222-4222-8222-222222222222", "name": "blade-2", "power_state": "Off",
     "external_notifier": False, "nics": [{"mac": MAC_B, "ip": "198.51.100.12"}]},
    {"uuid": "33333333-3333-4333-8333-333333333333", "name": "blade-3", "power_state": "On",
     "external_notifier": False, "nics": [{"mac": MAC_C, "ip": "198.51.100.13"}]},
    # Secure Boot on, as servers ship: one off, one still running its (unsigned) installer with it off
    {"uuid": "44444444-4444-4444-8444-444444444444", "name": "blade-4", "power_state": "Off", "secure_boot": True,
     "external_notifier": False, "nics": [{"mac": MAC_D, "ip": "198.51.100.14"}]},
    {"uuid": "55555555-5555-4555-8555-555555555555", "name": "blade-5", "power_state": "On", "secure_boot": False,
     "external_notifier": False, "nics": [{"mac": MAC_E, "ip": "198.51.100.15"}]},
]


def machine_body(**changes) -> dict:
    return {"name": "R740-01", "macAddresses": [MAC_A], "bmc": {"address": "https://198.51.100.50"},
            "username": "root", "password": "calvin-Secret", **changes}


def test_register_show_update_remove(client):
    created = client.post(MACHINES, json=machine_body(macAddresses=["52-54-00-AA-00-01", MAC_B]))
    assert created.status_code == 201, created.json
    machine = created.json
    assert machine["macAddresses"] == [MAC_A, MAC_B] and machine["kind"] == "redfish"
    assert machine["hasCredentials"] is True and "password" not in machine
    assert machine["bmc"] == {"address": "https://198.51.100.50", "protocol": "redfish", "systemId": None,
                              "verifyCertificate": True}
    assert "calvin-Secret" not in str(client.get(f"{MACHINES}/{machine['id']}").json)
    updated = client.put(f"{MACHINES}/{machine['id']}", json=machine_body(password=None, name="R740-01b"))
    assert updated.status_code == 200 and updated.json["hasCredentials"] is True  # password kept
    manual = client.put(f"{MACHINES}/{machine['id']}", json={"name": "R740-01b", "macAddresses": [MAC_A]})
    assert manual.json["kind"] == "manual" and manual.json["bmc"] is None and manual.json["hasCredentials"] is False
    assert client.get(MACHINES).json["total"] == 1
    assert client.delete(f"{MACHINES}/{machine['id']}").status_code == 204
    assert client.get(f"{MACHINES}/{machine['id']}").status_code == 404


@pytest.mark.parametrize(("changes", "field"), [
    ({"macAddresses": []}, "macAddresses"),
    ({"macAddresses": ["ff:ff:ff:ff:ff:ff"]}, "macAddresses[0]"),
    ({"macAddresses": [MAC_A, "52-54-00-aa-00-01"]}, "macAddresses"),
    ({"bmc": {"address": "ftp://bmc"}}, "bmc.address"),
    ({"bmc": {"address": "https://bmc/redfish/v1"}}, "bmc.address"),
    ({"bmc": {"address": "https://bmc:99999"}}, "bmc.address"),
    ({"bmc": {"address": "https://root:calvin@bmc"}}, "bmc.address"),
    ({"bmc": {"address": "https://bmc", "protocol": "amt"}}, "bmc.protocol"),
    ({"bmc": {"address": "https://bmc", "protocol": "ipmi"}}, "bmc.address"),
    ({"bmc": {"address": "198.51.100.60:623", "protocol": "ipmi"}}, "bmc.address"),
    ({"bmc": {"address": "ipmi://bmc:0", "protocol": "ipmi"}}, "bmc.address"),
    ({"bmc": {"address": "ipmi://bmc/x", "protocol": "ipmi"}}, "bmc.address"),
    ({"bmc": {"address": "ipmi://bmc", "protocol": "ipmi", "systemId": "1"}}, "bmc.systemId"),
    ({"bmc": {"address": "ipmi://bmc", "protocol": "ipmi", "verifyCertificate": False}}, "bmc.verifyCertificate"),
    ({"bmc": {"address": "ipmi://bmc"}}, "bmc.address"),
    ({"bmc": None}, "bmc"),
], ids=["no-mac", "broadcast", "twice", "scheme", "path", "port", "userinfo", "protocol", "ipmi-https", "ipmi-bare",
        "ipmi-port", "ipmi-path", "ipmi-system", "ipmi-certificate", "redfish-ipmi-scheme", "creds-without-bmc"])
def test_bad_machines_are_refused_naming_the_field(client, changes, field):
    response = client.post(MACHINES, json=machine_body(**changes))
    assert response.status_code == 400 and field in response.json["errors"], response.json


def test_an_ipmi_machine_keeps_its_credentials_encrypted_and_only_ipmi_settings(client, runtime):
    body = machine_body(bmc={"address": "ipmi://[2001:db8::60]:6230/", "protocol": "ipmi"}, password="ipmi-Secret")
    created = client.post(MACHINES, json=body)
    assert created.status_code == 201, created.json
    machine = created.json
    assert machine["kind"] == "ipmi" and machine["hasCredentials"] is True
    assert machine["bmc"] == {"address": "ipmi://[2001:db8::60]:6230", "protocol": "ipmi"}
    assert "ipmi-Secret" not in str(client.get(MACHINES).json) + str(client.get(f"{MACHINES}/{machine['id']}").json)
    with runtime.database.session() as session:
        stored = session.get(Node, machine["id"]).credentials_encrypted
    assert "ipmi-Secret" not in stored and runtime.vault.decrypt_json(stored) == {"password": "ipmi-Secret"}
    assert ipmi_endpoint(machine["bmc"]["address"]) == ("2001:db8::60", 6230)
    assert ipmi_endpoint("ipmi://bmc-host") == ("bmc-host", 623)  # IPMI's port unless given
    # kept when an update leaves the password out, like a Redfish machine's
    updated = client.put(f"{MACHINES}/{machine['id']}", json={**body, "password": None})
    assert updated.status_code == 200 and updated.json["hasCredentials"] is True and updated.json["kind"] == "ipmi"


def test_a_mac_belongs_to_one_machine(client):
    assert client.post(MACHINES, json=machine_body()).status_code == 201
    response = client.post(MACHINES, json=machine_body(name="other", macAddresses=[MAC_B, MAC_A]))
    assert response.status_code == 400
    assert response.json["errors"] == {"macAddresses[1]": f"{MAC_A} belongs to machine R740-01 already"}
    assert client.post(MACHINES, json=machine_body(macAddresses=[MAC_C])).status_code == 409  # same name


def test_a_machine_being_installed_cannot_be_removed(client, settings):
    machine = client.post(MACHINES, json=machine_body()).json
    (settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    image = client.post("/api/v1/provisioning/images", json={"name": "Tiny", "osType": "linux",
                                                              "imagePath": "tiny.img"}).json["id"]
    task = client.post("/api/v1/provisioning/tasks", json={"hostname": "bm01", "targetType": "baremetal",
                                                           "macAddress": MAC_A, "os": {"imageId": image}})
    assert task.status_code == 201, task.json
    response = client.delete(f"{MACHINES}/{machine['id']}")
    assert response.status_code == 409 and f"task {task.json['id']}" in response.json["message"]


def test_firmware_facts_become_the_machines_inventory(client, settings):
    machine = client.post(MACHINES, json=machine_body()).json
    (settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    image = client.post("/api/v1/provisioning/images", json={"name": "Tiny", "osType": "linux",
                                                              "imagePath": "tiny.img"}).json["id"]
    client.post("/api/v1/provisioning/tasks", json={"hostname": "bm01", "targetType": "baremetal",
                                                    "macAddress": MAC_A, "os": {"imageId": image}})
    client.get("/api/v1/provisioning/pxe/boot", query_string={
        "mac": MAC_A, "manufacturer": "Dell Inc.", "product": "PowerEdge R740"})
    hardware = client.get(f"{MACHINES}/{machine['id']}").json["hardware"]
    assert hardware["manufacturer"] == "Dell Inc." and hardware["product"] == "PowerEdge R740", hardware


# --- the Redfish driver against sushy-tools' emulator ------------------------------------------------


@pytest.fixture(scope="module")
def bmc(tmp_path_factory):
    with redfish_bmc.emulator(tmp_path_factory.mktemp("bmc"), fake_systems=SYSTEMS) as server:
        yield server


def ctx(tmp_path, bmc, mac=MAC_B, password=redfish_bmc.PASSWORD, address=None, system_id=None) -> TaskContext:
    node = NodeInfo(7, "R740-01", "redfish", address or bmc.url,
                    {"bmc": {"address": address or bmc.url, "systemId": system_id, "verifyCertificate": True}},
                    {"password": password}, bmc.username, (mac,))
    return TaskContext(task_id=1, hostname="bm01", target_type="baremetal", os_type="linux",
                       spec=task_spec("baremetal", "bm01", os_type="linux", macAddress=mac),
                       mac_address=mac, machine_ref=None, node=node, settings=Settings(data_dir=tmp_path),
                       database=None, vault=None)


def system(bmc, uuid: str) -> dict:
    return requests.get(f"{bmc.url}/redfish/v1/Systems/{uuid}", auth=(bmc.username, bmc.password), timeout=10).json()


def test_power_on_sets_a_one_time_network_boot_on_the_system_with_the_mac(tmp_path, bmc):
    message = baremetal_target().power.power_on(ctx(tmp_path, bmc))
    assert message == "Powered on through the BMC into a one-time network boot"
    blade = system(bmc, SYSTEMS[1]["uuid"])
    assert blade["Boot"]["BootSourceOverrideTarget"] == "Pxe"  # (the emulator reports any override as Continuous)
    assert system(bmc, SYSTEMS[0]["uuid"])["Boot"]["BootSourceOverrideTarget"] != "Pxe"  # the other blade


def test_once_installed_the_bmc_boots_the_hard_disk_for_good(tmp_path, bmc):
    """The one-time PXE of power_on is replaced by a persistent override to the hard disk (the emulator,
    like some BMCs, never drops an override by itself); repeated, it changes nothing."""
    target, context = baremetal_target(), ctx(tmp_path, bmc, mac=MAC_A)  # blade-1
    target.power.power_on(context)
    assert system(bmc, SYSTEMS[0]["uuid"])["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    assert target.boot.boot_from_disk(context) == "Boot override set through the BMC: hard disk, persistent"
    boot = system(bmc, SYSTEMS[0]["uuid"])["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("Hdd", "Continuous")
    assert target.boot.boot_from_disk(context) == "The BMC boots the hard disk already (persistent override)"
    manual = TaskContext(**{**context.__dict__, "node": None})
    assert target.boot.boot_from_disk(manual).startswith("No BMC configured: set the machine's firmware to boot")


def test_a_named_system_is_used_as_named(tmp_path, bmc):
    target = baremetal_target()
    assert "one-time network boot" in target.power.power_on(ctx(tmp_path, bmc, mac=MAC_B,
                                                                system_id=SYSTEMS[0]["uuid"]))
    assert system(bmc, SYSTEMS[0]["uuid"])["Boot"]["BootSourceOverrideTarget"] == "Pxe"


def test_no_system_with_the_mac_is_a_clear_error(tmp_path, bmc):
    with pytest.raises(PermanentError, match="none of the BMC's 5 systems has a network card with MAC 52:54:00:aa:00"):
        baremetal_target().power.power_on(ctx(tmp_path, bmc, mac="52:54:00:aa:00:09"))


def test_wrong_credentials_are_permanent(tmp_path, bmc):
    with pytest.raises(PermanentError, match="refused the credentials of machine R740-01"):
        baremetal_target().power.power_on(ctx(tmp_path, bmc, password="wrong"))


def test_a_bmc_that_does_not_answer_is_transient(tmp_path, bmc):
    with pytest.raises(TargetUnreachable, match="does not answer"):
        baremetal_target().power.power_on(ctx(tmp_path, bmc, address=f"http://127.0.0.1:{free_port()}"))


def test_rollback_powers_the_machine_off(tmp_path, bmc):
    target = baremetal_target()
    context = ctx(tmp_path, bmc, mac=MAC_C)  # blade-3 is running
    assert target.compute.destroy_machine(context) == "Powered off through the BMC"
    # the emulator, like real hardware, applies a power change after a moment
    assert system(bmc, SYSTEMS[2]["uuid"])["PowerState"] in ("On", "Off")


def test_without_a_bmc_the_operator_is_asked(tmp_path, bmc):
    context = ctx(tmp_path, bmc)
    manual = TaskContext(**{**context.__dict__, "node": None})
    assert baremetal_target().power.power_on(manual).startswith("No BMC configured: power on the machine now")
    assert baremetal_target().compute.destroy_machine(manual) == "Nothing to remove on a bare-metal machine"


# --- Secure Boot after the install, through the BMC --------------------------------------------------


def secure_boot_of(bmc, uuid: str) -> bool:
    resource = requests.get(f"{bmc.url}/redfish/v1/Systems/{uuid}/SecureBoot", auth=(bmc.username, bmc.password),
                            timeout=10)
    assert resource.status_code == 200, resource.text
    return resource.json()["SecureBootEnable"]


def secure_boot_task(client, mac: str, bmc=None, signed_kernel: bool = False) -> dict:
    """A machine registered with secureBoot (with the emulator as its BMC, or none) and a Linux task for it."""
    machine = {"name": f"bm-{mac[-2:]}", "macAddresses": [mac], "secureBoot": True}
    if bmc is not None:
        machine.update(bmc={"address": bmc.url}, username=bmc.username, password=bmc.password)
    assert client.post(MACHINES, json=machine).status_code == 201
    image = client.post("/api/v1/provisioning/images", json={
        "name": f"Tiny {signed_kernel}", "osType": "linux", "imagePath": "tiny.img", "kernelPath": "tiny.img",
        "initrdPath": "tiny.img", "signedKernel": signed_kernel})
    assert image.status_code == 201, image.json
    task = client.post("/api/v1/provisioning/tasks", json={"hostname": f"bm{mac[-2:]}", "targetType": "baremetal",
                                                           "macAddress": mac, "os": {"imageId": image.json["id"]},
                                                           "postInstall": {"installAgent": False}})
    assert task.status_code == 201, task.json
    return task.json


def loaded(runtime, task_id: int) -> TaskContext:
    with runtime.database.session() as session:
        return load_context(session, task_id, runtime.settings, runtime.database, runtime.vault)


def test_an_unsigned_installer_runs_with_secure_boot_off_and_rollback_turns_it_on(client, runtime, bmc):
    """The task's power-on turns Secure Boot off through the BMC before the one-time network boot, the
    plan turns it on after the OS reports installed, and a rollback (a cancel) restores it."""
    (runtime.settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    task = secure_boot_task(client, MAC_D, bmc)
    names = [step["name"] for step in task["steps"]]
    assert names[names.index("os_install"):][:3] == ["os_install", "enable_secure_boot", "first_boot"], names
    ctx, target = loaded(runtime, task["id"]), baremetal_target()
    assert ctx.secure_boot_after_install
    blade = SYSTEMS[3]["uuid"]
    assert secure_boot_of(bmc, blade) is True  # as registered
    done = target.power.power_on(ctx)
    # the blade may still run from the other database's run of this test (the emulator is the module's)
    assert done.startswith(("Powered on through the BMC", "Restarted through the BMC")), done
    assert done.endswith("into a one-time network boot, Secure Boot off for the unsigned installer (on again before "
                         "the OS first boots)"), done
    assert secure_boot_of(bmc, blade) is False
    assert system(bmc, blade)["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    assert target.boot.cleanup_boot(ctx) == "Boot config removed with the task; Secure Boot on again through the BMC"
    assert secure_boot_of(bmc, blade) is True
    assert target.boot.cleanup_boot(ctx) == "Boot config removed with the task; Secure Boot on already"


def test_a_signed_kernel_installs_with_secure_boot_on_untouched(client, runtime, bmc):
    (runtime.settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    task = secure_boot_task(client, MAC_A, bmc, signed_kernel=True)
    assert "enable_secure_boot" not in [step["name"] for step in task["steps"]]
    ctx = loaded(runtime, task["id"])
    assert not ctx.secure_boot_after_install
    before = secure_boot_of(bmc, SYSTEMS[0]["uuid"])
    assert baremetal_target().power.power_on(ctx).endswith("through the BMC into a one-time network boot")
    assert baremetal_target().boot.cleanup_boot(ctx) == "Boot config removed with the task"
    assert secure_boot_of(bmc, SYSTEMS[0]["uuid"]) is before  # never written


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # waits on the emulator's power changes: once
def test_secure_boot_is_turned_on_once_the_installer_has_powered_off(client, runtime, bmc, monkeypatch):
    """A machine still running is a transient failure (retried); once it is off (the emulator, like real
    hardware, applies a power change seconds later), Secure Boot on, the disk for good, powered on; the
    step again changes nothing."""
    (runtime.settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    ctx, target, blade = loaded(runtime, secure_boot_task(client, MAC_E, bmc)["id"]), baremetal_target(), \
        SYSTEMS[4]["uuid"]
    monkeypatch.setattr(redfish, "POWER_POLL_S", 0.2)
    monkeypatch.setattr(secureboot, "POWER_OFF_WAIT_S", 1)
    with pytest.raises(TransientError, match="bm05 is still running 1 s after its installer reported the OS"):
        target.boot.enable_secure_boot(ctx)
    assert secure_boot_of(bmc, blade) is False and system(bmc, blade)["PowerState"] == "On"
    monkeypatch.setattr(secureboot, "POWER_OFF_WAIT_S", 60)
    reset = requests.post(f"{bmc.url}/redfish/v1/Systems/{blade}/Actions/ComputerSystem.Reset",
                          json={"ResetType": "ForceOff"}, auth=(bmc.username, bmc.password), timeout=10)
    assert reset.status_code == 204, reset.text  # the installer powers the machine off
    assert target.boot.enable_secure_boot(ctx) == ("Secure Boot on through the BMC, boot override to the hard "
                                                   "disk (persistent); powered on")
    assert secure_boot_of(bmc, blade) is True
    boot = system(bmc, blade)["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("Hdd", "Continuous")
    deadline = time.monotonic() + 30
    while system(bmc, blade)["PowerState"] != "On":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert target.boot.enable_secure_boot(ctx) == "Secure Boot on already; the machine is running"


def test_ipmi_cannot_switch_secure_boot_so_an_unsigned_installer_is_refused(client, runtime):
    """Powered on over IPMI with Secure Boot still enforced, the firmware would refuse the installer: refused
    at POST /tasks, naming the image, and saying what to do; a signed kernel installs with Secure Boot on."""
    (runtime.settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    assert client.post(MACHINES, json={"name": "bm-ipmi", "macAddresses": [MAC_C], "secureBoot": True,
                                       "bmc": {"address": "ipmi://198.51.100.60", "protocol": "ipmi"},
                                       "username": "admin", "password": "ipmi-Secret"}).status_code == 201
    images = {signed: client.post("/api/v1/provisioning/images", json={
        "name": f"Tiny {signed}", "osType": "linux", "imagePath": "tiny.img", "kernelPath": "tiny.img",
        "initrdPath": "tiny.img", "signedKernel": signed}).json["id"] for signed in (False, True)}
    body = {"hostname": "bmipmi", "targetType": "baremetal", "macAddress": MAC_C,
            "postInstall": {"installAgent": False}}
    refused = client.post("/api/v1/provisioning/tasks", json={**body, "os": {"imageId": images[False]}})
    assert refused.status_code == 400, refused.json
    reason = refused.json["errors"]["os.imageId"]
    assert "machine bm-ipmi enforces Secure Boot" in reason and "through its IPMI BMC" in reason, reason
    assert "use an image with a signed kernel" in reason, reason
    assert client.get("/api/v1/provisioning/tasks").json["total"] == 0  # nothing stored
    task = client.post("/api/v1/provisioning/tasks", json={**body, "os": {"imageId": images[True]}})
    assert task.status_code == 201, task.json
    assert "enable_secure_boot" not in [step["name"] for step in task.json["steps"]]


def test_without_a_bmc_the_operator_switches_secure_boot(client, runtime):
    """Accepted like any manual machine: the steps say when to turn Secure Boot off and on in the firmware."""
    (runtime.settings.effective_images_dir / "tiny.img").write_bytes(b"image")
    task = secure_boot_task(client, MAC_B)
    assert "enable_secure_boot" in [step["name"] for step in task["steps"]]
    ctx, target = loaded(runtime, task["id"]), baremetal_target()
    assert ctx.node is not None and ctx.node.kind == "manual" and ctx.secure_boot_after_install
    assert target.power.power_on(ctx).startswith("No BMC configured: turn Secure Boot off in the machine's firmware")
    assert target.boot.enable_secure_boot(ctx).startswith(
        "No BMC configured: once the installer has powered the machine off, turn Secure Boot on in its firmware")
    assert target.boot.cleanup_boot(ctx) == ("Boot config removed with the task; no BMC configured: turn Secure Boot "
                                             "on again in the machine's firmware setup")
