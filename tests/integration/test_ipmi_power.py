"""The IPMI power driver against a real IPMI service: virtualbmc in front of a QEMU domain in the lab's own
libvirtd (tests/support/libvirtlab.py). What the driver asks for is read back from both sides: the BMC's
power state and boot device over IPMI, and the domain's state and definition from libvirt.

Needs root (the lab's namespaces and libvirtd); skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET

import pytest

from octoprov.context import NodeInfo, TaskContext
from octoprov.errors import PermanentError, TargetUnreachable
from octoprov.settings import Settings
from octoprov.targets import ipmi
from octoprov.targets.baremetal import baremetal_target
from tests.support import libvirtlab, netlab
from tests.support.examples import task_spec
from tests.support.live import free_port
from tests.support.virtual_bmc import HOST, PASSWORD, USER, VirtualBmc, virtual_bmc

MAC = "52:54:00:6f:70:c1"
DOMAIN = "ipmi-server"


def domain_xml(name: str) -> str:
    """A small server that boots its (absent) disk unless told otherwise: SeaBIOS is all that runs."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <devices/>
</domain>"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    libvirtlab.require_lab()
    workdir = tmp_path_factory.mktemp("ipmi")
    with netlab.Lab(workdir) as network, libvirtlab.Libvirtd(network, f"opv{os.getpid()}") as daemon:
        (workdir / "domain.xml").write_text(domain_xml(DOMAIN))
        daemon.virsh("define", str(workdir / "domain.xml"))
        with virtual_bmc(workdir / "vbmc", DOMAIN, libvirtlab.URI) as bmc:
            yield daemon, bmc


def ctx(tmp_path, bmc, password: str | None = None, address: str | None = None,
        secure_boot_after_install: bool = False) -> TaskContext:
    address = address or bmc.address
    node = NodeInfo(7, "R640-IPMI", "ipmi", address, {"bmc": {"address": address, "protocol": "ipmi"}},
                    {"password": password or bmc.password}, bmc.username, (MAC,))
    return TaskContext(task_id=1, hostname="bm01", target_type="baremetal", os_type="linux",
                       spec=task_spec("baremetal", "bm01", os_type="linux", macAddress=MAC),
                       mac_address=MAC, machine_ref=None, node=node, settings=Settings(data_dir=tmp_path),
                       database=None, vault=None, secure_boot_after_install=secure_boot_after_install)


def state(daemon) -> str:
    return daemon.virsh("domstate", DOMAIN).strip()


def defined_boot_devices(daemon) -> list[str]:
    """The boot devices of the domain's definition, the one its next start uses."""
    defined = ET.fromstring(daemon.virsh("dumpxml", DOMAIN, "--inactive"))  # noqa: S314 - libvirt's own output
    return [boot.get("dev") for boot in defined.findall("os/boot")]


def test_power_on_boots_the_network_once_then_power_off(lab, tmp_path):
    daemon, bmc = lab
    target, context = baremetal_target(), ctx(tmp_path, bmc)
    assert state(daemon) == "shut off" and ipmi.power_state(context) == "off"
    assert target.power.power_on(context) == "Powered on through the BMC (IPMI) into a one-time network boot"
    assert state(daemon) == "running" and ipmi.power_state(context) == "on"
    assert ipmi.boot_device(context)["bootdev"] == "network"
    assert defined_boot_devices(daemon) == ["network"]
    # already running (a machine left on): a hard reset into the network boot
    assert target.power.power_on(context) == "Restarted through the BMC (IPMI) into a one-time network boot"
    assert state(daemon) == "running"
    # the rollback of a cancelled task: powered off, and a second time nothing to do
    assert target.compute.destroy_machine(context) == "Powered off through the BMC (IPMI)"
    assert state(daemon) == "shut off" and ipmi.power_state(context) == "off"
    assert target.power.power_off(context) == "Already off"


def test_once_installed_the_bmc_boots_the_hard_disk_for_good(lab, tmp_path):
    daemon, bmc = lab
    target, context = baremetal_target(), ctx(tmp_path, bmc)
    target.power.power_on(context)
    assert ipmi.boot_device(context)["bootdev"] == "network"
    assert target.boot.boot_from_disk(context) == "Boot device set through the BMC (IPMI): hard disk, persistent"
    assert defined_boot_devices(daemon) == ["hd"]  # the next start's; virtualbmc reports the running one's
    target.power.power_off(context)
    assert ipmi.boot_device(context)["bootdev"] == "hd"


def test_refused_credentials_are_permanent_and_never_echo_the_password(lab, tmp_path):
    _, bmc = lab
    with pytest.raises(PermanentError, match=f"the BMC at {bmc.address} refused the credentials of machine "
                                             "R640-IPMI") as refused:
        baremetal_target().power.power_on(ctx(tmp_path, bmc, password="wrong-Secret-1"))
    assert "wrong-Secret-1" not in str(refused.value) and bmc.password not in str(refused.value)


def test_a_bmc_that_does_not_answer_is_transient(tmp_path):
    silent = VirtualBmc(HOST, free_port(socket.SOCK_DGRAM), USER, PASSWORD)  # pyghmi's login gives up in seconds
    with pytest.raises(TargetUnreachable, match=f"the BMC at {silent.address} does not answer"):
        baremetal_target().power.power_off(ctx(tmp_path, silent))


def test_an_installer_that_needs_secure_boot_off_is_refused_before_the_bmc_is_asked(lab, tmp_path):
    daemon, bmc = lab
    target, context = baremetal_target(), ctx(tmp_path, bmc, secure_boot_after_install=True)
    with pytest.raises(PermanentError, match="Secure Boot cannot be switched through an IPMI BMC"):
        target.power.power_on(context)
    assert state(daemon) == "shut off"
    assert target.boot.cleanup_boot(context) == "Boot config removed with the task"  # never switched
