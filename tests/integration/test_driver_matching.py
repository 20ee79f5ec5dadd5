"""Driver packs: registration lists and counts their .inf files, refuses what would inject nothing or
break the WinPE script, and packs are matched to the SMBIOS strings a machine reported (or a VM's model)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from octoprov.drivers import HYPERV_MODEL, KVM_MODELS, machine_model, pack_matches
from octoprov.models import DriverPack, Task, TaskStep
from tests.support.library import winpe_image

DRIVERS = "/api/v1/provisioning/drivers"
PXE = "/api/v1/provisioning/pxe"


def _folder(settings, name: str, files: list[str]):
    folder = settings.effective_drivers_dir / name
    for relative in files:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text("[Version]\n")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_registration_lists_and_counts_the_inf_files(client, settings):
    _folder(settings, "dell-r750", ["storage/PERC.INF", "storage/perc.sys", "net/bcm.inf", "readme.txt"])
    response = client.post(DRIVERS, json={"name": "Dell PowerEdge R750", "vendor": "Dell",
                                          "modelPattern": "PowerEdge R7[0-9]0", "osType": "windows",
                                          "driverPath": "dell-r750"})
    assert response.status_code == 201, response.json
    assert response.json["infCount"] == 2
    assert response.json["infFiles"] == ["net/bcm.inf", "storage/PERC.INF"]
    listed = client.get(DRIVERS).json["items"]
    assert listed[0]["infCount"] == 2
    assert client.get(f"{DRIVERS}/{response.json['id']}").json["infFiles"] == ["net/bcm.inf", "storage/PERC.INF"]


def test_a_folder_without_inf_files_is_refused(client, settings):
    _folder(settings, "empty", ["readme.txt", "driver.sys"])
    response = client.post(DRIVERS, json={"name": "Empty", "osType": "windows", "driverPath": "empty"})
    assert response.status_code == 400 and "no .inf file" in response.json["errors"]["driverPath"]
    linux = client.post(DRIVERS, json={"name": "Modules", "osType": "linux", "driverPath": "empty"})
    assert linux.status_code == 201 and linux.json["infCount"] == 0  # .inf files are Windows drivers


def test_an_invalid_regex_is_refused(client, settings):
    _folder(settings, "hp", ["a.inf"])
    response = client.post(DRIVERS, json={"name": "HP", "vendor": "HP", "modelPattern": "ProLiant (DL3[68]0",
                                          "osType": "windows", "driverPath": "hp"})
    assert response.status_code == 400 and "not a valid regular expression" in response.json["errors"]["modelPattern"]


def test_an_inf_name_winpe_scripts_cannot_carry_is_refused(client, settings):
    _folder(settings, "odd", ["50% & more.inf"])
    response = client.post(DRIVERS, json={"name": "Odd", "osType": "windows", "driverPath": "odd"})
    assert response.status_code == 400 and "cannot be named in a WinPE script" in response.json["errors"]["driverPath"]


def _pack(vendor=None, pattern=None) -> DriverPack:
    return DriverPack(name="p", vendor=vendor, model_pattern=pattern, os_type="windows", driver_path="p")


@pytest.mark.parametrize(("vendor", "pattern", "manufacturer", "product", "matches"), [
    ("Dell", "PowerEdge R7[0-9]0", "Dell Inc.", "PowerEdge R750", True),
    ("Dell", "PowerEdge R7[0-9]0", "Dell Inc.", "PowerEdge R650", False),
    ("dell", None, "DELL", "anything", True),
    ("HP", None, "HPE", "ProLiant DL380 Gen10", False),  # HP is not HPE
    ("HP", None, "Hewlett-Packard", "ProLiant DL380 Gen9", True),
    ("HPE", "DL380", "HPE", "ProLiant DL380 Gen10", True),
    ("Lenovo", None, "LENOVO", "ThinkSystem SR650", True),
    ("Dell", None, None, None, False),  # a vendor pack needs the machine's manufacturer
    (None, "(?i)virtual machine", "Microsoft Corporation", "Virtual Machine", True),
    (None, None, None, None, True),  # no vendor, no pattern: every machine
    ("QEMU", "Q35", "QEMU", "Standard PC (Q35 + ICH9, 2009)", True),
])
def test_matching_by_vendor_and_model_pattern(vendor, pattern, manufacturer, product, matches):
    assert pack_matches(_pack(vendor, pattern), manufacturer, product) is matches


def test_a_vms_model_is_known_without_a_report():
    assert machine_model("kvm", 2, {}) == KVM_MODELS[2] == ("QEMU", "Standard PC (Q35 + ICH9, 2009)")
    assert machine_model("kvm", 1, None) == ("QEMU", "Standard PC (i440FX + PIIX, 1996)")
    assert machine_model("hyperv", 2, {}) == HYPERV_MODEL == ("Microsoft Corporation", "Virtual Machine")
    assert machine_model("baremetal", 2, {}) == (None, None)
    assert machine_model("kvm", 2, {"manufacturer": "QEMU", "product": "KVM Virtual Machine"}) == (
        "QEMU", "KVM Virtual Machine")


def test_the_machines_report_picks_the_packs_of_its_start_script(anonymous, client, database, runtime, settings):
    _folder(settings, "dell-r750", ["storage/perc.inf"])
    _folder(settings, "hpe", ["hpe.inf"])
    _folder(settings, "all", ["common.inf"])
    for body in ({"name": "Dell", "vendor": "Dell", "modelPattern": "R750", "driverPath": "dell-r750"},
                 {"name": "HPE", "vendor": "HPE", "driverPath": "hpe"},
                 {"name": "Everyone", "driverPath": "all"},
                 {"name": "Linux Dell", "vendor": "Dell", "driverPath": "dell-r750", "osType": "linux"}):
        assert client.post(DRIVERS, json={"osType": "windows", **body}).status_code == 201
    image = winpe_image(client, settings.effective_images_dir)
    task = client.post("/api/v1/provisioning/tasks", json={
        "hostname": "BM-01", "targetType": "baremetal", "macAddress": "00:11:22:33:44:55",
        "os": {"imageId": image, "adminPassword": "Pa55word!"}}).json
    with database.session() as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task["id"], TaskStep.name.in_(
            ["register_machine", "render_answers", "register_mac", "power_on"])).values(status="done"))
        token = runtime.vault.decrypt(session.get(Task, task["id"]).files_token_encrypted)
    anonymous.get(f"{PXE}/boot", query_string={"mac": "00-11-22-33-44-55", "manufacturer": "Dell Inc.",
                                               "product": "PowerEdge R750", "platform": "pcbios"})
    script = anonymous.get(f"{PXE}/files/{token}/startnet.cmd").get_data(as_text=True)
    assert 'drvload "Y:\\dell-r750\\storage\\perc.inf"' in script
    assert 'drvload "Y:\\all\\common.inf"' in script and "hpe" not in script
    assert 'dism /image:W:\\ /add-driver /driver:"Y:\\dell-r750" /recurse' in script
    assert script.count("/add-driver") == 2 and "/f BIOS" in script  # no VirtIO on bare metal; BIOS reported
