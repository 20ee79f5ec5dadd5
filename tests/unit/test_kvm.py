"""The KVM target against libvirt's built-in ``test:///default`` driver, and its domain XML
checked against libvirt's own schema with ``virt-xml-validate``."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from octoprov.errors import PermanentError, TargetUnreachable
from octoprov.targets.libvirt import kvm_target
from octoprov.targets.libvirt.domain_xml import (
    TASK_NS,
    LibvirtDomain,
    LibvirtVolume,
    domain_for,
    domain_xml,
    task_id_of,
)
from tests.support.examples import task_spec
from tests.support.libvirt_ctx import make_ctx

libvirt = pytest.importorskip("libvirt")

NS = {"o": TASK_NS}


# --- domain XML ---------------------------------------------------------------------------------

def validate(tmp_path, xml: str) -> ET.Element:
    if shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None:
        pytest.skip("virt-xml-validate (and the xmllint it runs) is not installed")
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    result = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return ET.fromstring(xml)  # noqa: S314


def spec(**changes) -> LibvirtDomain:
    values = {"name": "web01", "vcpus": 2, "memory_mib": 4096, "pool": "default-pool", "network": "default",
              "disks": [LibvirtVolume("web01-os", 60, "os"), LibvirtVolume("web01-data", 20, "data", "raw")],
              "task_id": 42, **changes}
    return LibvirtDomain(**values)


def test_generation_1_boots_bios_network_first(tmp_path):
    root = validate(tmp_path, domain_xml(spec(generation=1)))
    assert root.find("os/type").get("machine") == "pc"
    assert root.find("os/loader") is None and root.find("os/nvram") is None
    assert root.findtext("vcpu") == "2" and root.find("memory").text == "4096"
    assert root.find("memory").get("unit") == "MiB"
    disks = root.findall("devices/disk")
    assert [d.find("source").get("volume") for d in disks] == ["web01-os", "web01-data"]
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert {d.find("target").get("bus") for d in disks} == {"virtio"}
    assert [d.find("driver").get("type") for d in disks] == ["qcow2", "raw"]
    assert disks[0].find("boot").get("order") == "2" and disks[1].find("boot") is None
    nic = root.find("devices/interface")
    assert nic.find("boot").get("order") == "1"
    assert root.find("devices/serial").get("type") == "pty" and root.find("devices/console") is not None
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"
    assert root.find("metadata/o:task", NS).get("id") == "42"


def test_generation_2_uefi_without_secure_boot(tmp_path):
    root = validate(tmp_path, domain_xml(spec(generation=2)))
    assert root.find("os/type").get("machine") == "q35"
    assert root.findtext("os/loader") == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert root.find("os/loader").get("secure") == "no"
    assert root.find("os/nvram").get("template") == "/usr/share/OVMF/OVMF_VARS_4M.fd"
    assert root.find("features/smm") is None


def test_generation_2_secure_boot(tmp_path):
    root = validate(tmp_path, domain_xml(spec(generation=2, secure_boot=True)))
    assert root.findtext("os/loader") == "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
    assert root.find("os/loader").get("secure") == "yes"
    assert root.find("os/nvram").get("template") == "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    assert root.find("features/smm").get("state") == "on"


def test_secure_boot_needs_uefi():
    with pytest.raises(ValueError, match="generation 2"):
        domain_xml(spec(generation=1, secure_boot=True))


@pytest.mark.parametrize(("is_bridge", "kind"), [(False, "network"), (True, "bridge")])
def test_network_or_bridge(tmp_path, is_bridge, kind):
    root = validate(tmp_path, domain_xml(spec(network="br0", network_is_bridge=is_bridge)))
    nic = root.find("devices/interface")
    assert nic.get("type") == kind
    assert nic.find("source").attrib == {kind: "br0"}
    assert nic.find("model").get("type") == "virtio"
    assert nic.find("vlan") is None and nic.find("mac") is None


def test_vlan_and_mac(tmp_path):
    root = validate(tmp_path, domain_xml(spec(network="br0", network_is_bridge=True, vlan=120,
                                              mac_address="52:54:00:AA:BB:CC")))
    nic = root.find("devices/interface")
    assert nic.find("vlan/tag").get("id") == "120"
    assert nic.find("mac").get("address") == "52:54:00:aa:bb:cc"


def test_without_virtio_drivers_sata_and_e1000e(tmp_path):
    root = validate(tmp_path, domain_xml(spec(virtio_drivers=False)))
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["sda", "sdb"]
    assert {d.find("target").get("bus") for d in disks} == {"sata"}
    assert root.find("devices/interface/model").get("type") == "e1000e"


def test_names_are_escaped_not_pasted(tmp_path):
    root = validate(tmp_path, domain_xml(spec(network="net'><evil/>")))
    assert root.find("devices/interface/source").get("network") == "net'><evil/>"
    assert root.find(".//evil") is None


def test_spec_from_task_config(tmp_path):
    ctx = make_ctx(tmp_path, vm={"cpu": 8, "memoryGb": 32, "generation": 2, "network": {"vlan": 7},
                                 "disks": [{"sizeGb": 10, "purpose": "data"}, {"sizeGb": 80, "purpose": "os"},
                                           {"sizeGb": 30, "purpose": "data", "type": "fixed"},
                                           {"sizeGb": 5, "purpose": "log"}]}, mac="52:54:00:00:00:01")
    result = domain_for(ctx.spec.vm, name=ctx.hostname, task_id=ctx.task_id, mac_address=ctx.mac_address,
                        pool="default-pool", network="default", network_is_bridge=False)
    assert (result.name, result.vcpus, result.memory_mib, result.vlan) == ("web01", 8, 32768, 7)
    assert result.secure_boot is True  # generation 2 without an explicit choice, as the request model decides
    assert [(d.name, d.size_gb, d.format) for d in result.disks] == [
        ("web01-os", 80, "qcow2"), ("web01-data-1", 10, "qcow2"), ("web01-data-2", 30, "raw"),
        ("web01-log", 5, "qcow2")]
    assert result.mac_address == "52:54:00:00:00:01" and result.task_id == 42
    validate(tmp_path, domain_xml(result))


# --- the target on libvirt's test driver ----------------------------------------------------------

def volumes(conn) -> list[str]:
    return sorted(v.name() for v in conn.storagePoolLookupByName("default-pool").listAllVolumes())


def test_create_adopt_power_destroy(tmp_path, conn, target):
    ctx = make_ctx(tmp_path)
    machine = target.compute.create_machine(ctx)
    dom = conn.lookupByName("web01")
    assert machine.ref == dom.UUIDString()
    assert machine.detail.startswith("Created 2 vCPU, 4 GB RAM, 3 disks on default-pool")
    root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314
    assert root.findtext("vcpu") == "2" and int(root.findtext("memory")) == 4 * 1024 * 1024  # KiB
    assert root.find("devices/interface/mac").get("address") == machine.mac_address
    assert [d.find("source").get("volume") for d in root.findall("devices/disk")] == [
        "web01-os", "web01-data-1", "web01-data-2"]
    assert root.find("devices/interface/boot").get("order") == "1"
    assert root.find("devices/disk/boot").get("order") == "2"
    assert task_id_of(dom.XMLDesc(0)) == 42
    assert volumes(conn) == ["web01-data-1", "web01-data-2", "web01-os"]
    pool = conn.storagePoolLookupByName("default-pool")
    os_info = pool.storageVolLookupByName("web01-os").info()
    fixed_info = pool.storageVolLookupByName("web01-data-2").info()
    assert (os_info[1], os_info[2]) == (60 * 1024**3, 0)  # dynamic: nothing allocated up front
    assert fixed_info[1] == fixed_info[2] == 5 * 1024**3

    again = target.compute.create_machine(ctx)  # a redelivered step
    assert (again.ref, again.mac_address) == (machine.ref, machine.mac_address)
    assert again.detail.startswith("Adopted")
    assert [d.name() for d in conn.listAllDomains()].count("web01") == 1
    assert volumes(conn) == ["web01-data-1", "web01-data-2", "web01-os"]

    assert target.boot.prepare_boot(ctx) == "Network boot first"
    assert not dom.isActive()
    assert target.power.power_on(ctx).startswith("Powered on")
    assert dom.isActive()
    assert target.power.power_on(ctx) == "Already running"
    assert target.power.power_off(ctx) == "Powered off"
    assert not dom.isActive()
    assert target.boot.cleanup_boot(ctx)

    target.power.power_on(ctx)
    assert target.compute.destroy_machine(ctx) == "Removed web01 and 3 volumes"  # running: stopped first
    assert "web01" not in [d.name() for d in conn.listAllDomains()]
    assert volumes(conn) == []
    assert target.compute.destroy_machine(ctx) == "no machine to remove"


def test_mac_given_is_used(tmp_path, target):
    machine = target.compute.create_machine(make_ctx(tmp_path, mac="52:54:00:12:34:56"))
    assert machine.mac_address == "52:54:00:12:34:56"


def test_bridge_when_no_network_has_that_name(tmp_path, conn, target):
    vm = {"cpu": 1, "memoryGb": 1, "generation": 1, "network": {"vswitch": "br0", "vlan": 10},
          "disks": [{"sizeGb": 10, "purpose": "os"}]}
    target.compute.create_machine(make_ctx(tmp_path, vm=vm))
    nic = ET.fromstring(conn.lookupByName("web01").XMLDesc(0)).find("devices/interface")  # noqa: S314
    assert nic.get("type") == "bridge" and nic.find("source").get("bridge") == "br0"
    assert nic.find("vlan/tag").get("id") == "10"


def test_prepare_boot_restores_network_first(tmp_path, conn, target):
    ctx = make_ctx(tmp_path)
    target.compute.create_machine(ctx)
    root = ET.fromstring(conn.lookupByName("web01").XMLDesc(0))  # noqa: S314
    root.find("devices/interface/boot").set("order", "3")
    conn.defineXML(ET.tostring(root, encoding="unicode"))
    assert target.boot.prepare_boot(ctx) == "Boot order set: network first"
    root = ET.fromstring(conn.lookupByName("web01").XMLDesc(0))  # noqa: S314
    assert root.find("devices/interface/boot").get("order") == "1"
    assert root.find("devices/disk/boot").get("order") == "2"


def boot_orders(dom) -> dict[str, str | None]:
    """Each disk's volume and the NIC, with its boot order in the persistent definition."""
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314
    orders = {d.find("source").get("volume"): (d.find("boot").get("order") if d.find("boot") is not None else None)
              for d in root.iter("disk")}
    nic = root.find("devices/interface/boot")
    return {**orders, "nic": nic.get("order") if nic is not None else None}


def test_boot_from_disk_redefines_the_domain_with_the_os_disk_first(tmp_path, conn, target):
    ctx = make_ctx(tmp_path)
    target.compute.create_machine(ctx)
    dom = conn.lookupByName("web01")
    assert boot_orders(dom) == {"web01-os": "2", "web01-data-1": None, "web01-data-2": None, "nic": "1"}
    assert target.boot.boot_from_disk(ctx) == "Boot order set: disk first"
    # the NIC stays after the disk: a disk that does not boot still reaches the PXE services
    assert boot_orders(dom) == {"web01-os": "1", "web01-data-1": None, "web01-data-2": None, "nic": "2"}
    validate(tmp_path, dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert target.boot.boot_from_disk(ctx) == "Disk first already"  # a redelivered step
    # a running domain on a driver without a QEMU monitor: its definition changes, the detail says what does not
    assert target.boot.prepare_boot(ctx) == "Boot order set: network first"  # a retry that installs again
    target.power.power_on(ctx)
    detail = target.boot.boot_from_disk(ctx)
    assert detail.startswith("Boot order set: disk first; the running domain keeps its boot order until"), detail
    assert boot_orders(dom)["web01-os"] == "1"


def test_boot_from_disk_needs_the_task_domain(tmp_path, target):
    with pytest.raises(PermanentError, match="no domain called web01"):
        target.boot.boot_from_disk(make_ctx(tmp_path))


def test_untagged_domain_of_that_name_is_refused_and_kept(tmp_path, conn, target):
    ctx = make_ctx(tmp_path, hostname="test")  # the test driver's own domain
    with pytest.raises(PermanentError, match="belongs to no Octoprov task"):
        target.compute.create_machine(ctx)
    with pytest.raises(PermanentError):
        target.compute.destroy_machine(ctx)  # a rollback never removes what it did not create
    assert conn.lookupByName("test").isActive()


def test_domain_of_another_task_is_refused(tmp_path, target):
    target.compute.create_machine(make_ctx(tmp_path, task_id=1))
    with pytest.raises(PermanentError, match="belongs to task 1"):
        target.compute.create_machine(make_ctx(tmp_path, task_id=2))


def test_leftover_volume_without_domain_is_refused(tmp_path, conn, target):
    pool = conn.storagePoolLookupByName("default-pool")
    pool.createXML("<volume><name>web01-os</name><capacity>1024</capacity></volume>", 0)
    with pytest.raises(PermanentError, match="web01-os"):
        target.compute.create_machine(make_ctx(tmp_path))
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName("web01")


def test_storage_pool_option(tmp_path, target):
    with pytest.raises(PermanentError, match="storage pool nope"):
        target.compute.create_machine(make_ctx(tmp_path, options={"kvm": {"storagePool": "nope"}}))
    machine = target.compute.create_machine(make_ctx(tmp_path, options={"kvm": {"storagePool": "default-pool"}}))
    assert "on default-pool" in machine.detail


def test_power_without_domain(tmp_path, target):
    with pytest.raises(PermanentError, match="no domain"):
        target.power.power_on(make_ctx(tmp_path))


def test_unreachable_host_is_transient(tmp_path):
    ctx = make_ctx(tmp_path, uri="qemu+unix:///system?socket=/nonexistent")
    with pytest.raises(TargetUnreachable, match="cannot connect"):
        kvm_target().compute.create_machine(ctx)


def test_real_connection_is_opened_and_closed(tmp_path):
    target = kvm_target()
    assert target.compute.destroy_machine(make_ctx(tmp_path)) == "no machine to remove"


def test_offline_join_and_post_install_are_the_shared_ones(tmp_path):
    from octoprov.domainjoin import SettingsChosen
    from octoprov.domainjoin.djoin import DjoinDomainJoin
    from octoprov.postinstall import MachinePostInstall

    target = kvm_target()
    assert isinstance(target.domain, SettingsChosen)  # the task's settings choose the backend, as for Hyper-V
    assert isinstance(target.domain.backend(make_ctx(tmp_path).settings), DjoinDomainJoin)  # by default djoin
    with pytest.raises(PermanentError, match="DJOIN_HOST"):
        target.domain.provision_offline_join(dataclasses.replace(make_ctx(tmp_path), spec=task_spec(
            "kvm", "web01", os_type="linux", domain={"join": True, "name": "yourdom.local", "method": "offline"})))
    assert isinstance(target.post_install, MachinePostInstall)  # SSH for Linux, WinRM for Windows
