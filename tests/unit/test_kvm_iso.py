"""KVM's ISO mode: the Windows installation ISO (a volume of the pool) first in the boot order with the
answer ISO beside it, no network boot, Secure Boot on from the start (the media is Microsoft-signed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from pydantic import ValidationError

from octoprov import secureboot
from octoprov.targets.libvirt.domain_xml import domain_xml, with_install_media
from octoprov.targets.libvirt.options import KvmOptions, boots_install_media
from tests.support.examples import task_spec
from tests.support.libvirt_ctx import make_ctx
from tests.unit.test_kvm import spec, validate

ISO = {"kvm": {"bootMode": "iso", "installIso": "WS2025.iso"}}


def boot_orders(root: ET.Element) -> list[tuple[str, str, str | None]]:
    return [(disk.get("device") or "", disk.find("source").get("volume"),
             boot.get("order") if (boot := disk.find("boot")) is not None else None)
            for disk in root.findall("devices/disk")]


def test_the_installation_iso_boots_first_and_the_answer_iso_sits_beside_it(tmp_path):
    root = validate(tmp_path, domain_xml(with_install_media(spec(secure_boot=True), "WS2025.iso")))
    assert boot_orders(root) == [("disk", "web01-os", "2"), ("disk", "web01-data", None),
                                 ("cdrom", "WS2025.iso", "1"), ("cdrom", "web01-answers", None)]
    assert root.find("devices/interface/boot") is None  # no network boot at all
    assert [c.find("target").get("bus") for c in root.findall("devices/disk[@device='cdrom']")] == ["sata", "sata"]
    assert root.find("os/loader").get("secure") == "yes"


def test_iso_mode_needs_an_iso_and_keeps_secure_boot_on():
    with pytest.raises(ValidationError) as refused:
        KvmOptions.model_validate({"bootMode": "iso"}, by_alias=True, by_name=True)
    assert "installIso" in str(refused.value)
    assert boots_install_media(ISO) and not boots_install_media({}) and not boots_install_media({"kvm": {}})
    windows = task_spec("kvm", "web01", vm={"generation": 2, "secureboot": True,
                                            "disks": [{"sizeGb": 60, "purpose": "os"}]})
    media = secureboot.signed_media("kvm", ISO)
    assert secureboot.during_install(windows, "windows", True, media=media)
    assert not secureboot.after_install(windows, "windows", True, media=media)


def test_create_and_power_on_in_iso_mode(tmp_path, conn, target):
    ctx = make_ctx(tmp_path, options=ISO)
    target.compute.create_machine(ctx)
    root = ET.fromstring(conn.lookupByName("web01").XMLDesc(0))  # noqa: S314 - libvirt's own output
    assert ("cdrom", "WS2025.iso", "1") in boot_orders(root) and ("cdrom", "web01-answers", None) in boot_orders(root)
    assert root.find("devices/interface/boot") is None
    assert target.power.power_on(ctx) == "Powered on; booting the installation DVD"  # Enter pressed for the DVD
