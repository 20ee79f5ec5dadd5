"""ProxyDHCP on an isolated boot network: no default route, and no OCTOPROV_PROXYDHCP_INTERFACE.

Found with real firmware: there every OFFER failed with "Network is unreachable" (a broadcast to
255.255.255.255 without an interface needs a route) and the machine said "Nothing to boot". Here
the real `octoprov pxe` runs in the lab's boot namespace (tests/support/netlab.py: 198.51.100.2 on
a veth to the site's bridge, no default route) and a client in the site namespace replays the
packets recorded from real firmware (tests/support/dhcpclient.py), on real sockets: the OFFER must
arrive as a broadcast, the port-4011 ACK as unicast, and the interface setting must still restrict.
Needs root; skipped without it, except in CI, where it must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from octoprov.netboot import dhcp
from octoprov.netboot.dhcp import DhcpPacket
from tests.support import ROOT, netlab
from tests.support.bootservices import unusable
from tests.support.captures import recorded
from tests.support.dhcpclient import Seen

PUBLIC_URL = f"http://{netlab.BOOT_ADDRESS}:8080"
CLIENT_ADDRESS = netlab.SITE_ADDRESS  # the address the site's DHCP server would have leased
OTHER, OTHER_PEER = "vother", "vother2"  # a second network in the boot namespace
OTHER_ADDRESS = "198.51.100.200"
NO_ANSWER_WAIT = 3.0  # seconds a client waits where no answer may come


def unusable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and port 67 need root"
    if shutil.which("ip") is None or shutil.which("ss") is None:
        return "ip or ss (iproute2) is not installed"
    probe = f"{netlab.PREFIX}{os.getpid()}probe"  # netlab's stale-namespace sweep knows this name
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"ip netns add does not work here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[netlab.Lab]:
    """The e2e lab's two namespaces, plus a second network in the boot namespace (``vother``, a veth
    whose peer stays there too) for the tests about which interface answers."""
    reason = unusable_reason()
    if reason:
        unusable(reason)
    with netlab.Lab(tmp_path_factory.mktemp("proxydhcp-netns")) as lab:
        lab.run(lab.boot, "ip", "link", "add", OTHER, "type", "veth", "peer", "name", OTHER_PEER)
        lab.run(lab.boot, "ip", "addr", "add", f"{OTHER_ADDRESS}/32", "dev", OTHER)
        for link in (OTHER, OTHER_PEER):
            lab.run(lab.boot, "ip", "link", "set", link, "up")
        yield lab


@contextlib.contextmanager
def proxydhcp(lab: netlab.Lab, **settings: str) -> Iterator[Path]:
    """`octoprov pxe --no-tftp` in the boot namespace, answering every PXE client; yields its log."""
    data_dir = Path(tempfile.mkdtemp(prefix="var-", dir=lab.workdir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPROV_")}  # no interface setting
    env.update(OCTOPROV_DATA_DIR=str(data_dir), OCTOPROV_SECRET_KEY=Fernet.generate_key().decode(),
               OCTOPROV_PUBLIC_URL=PUBLIC_URL, OCTOPROV_BOOT_SERVER_ADDRESS=netlab.BOOT_ADDRESS,
               OCTOPROV_BOOT_UNKNOWN_MACHINES="true", OCTOPROV_LOG_LEVEL="DEBUG")
    env.update({f"OCTOPROV_{name.upper()}": value for name, value in settings.items()})
    # an empty database: ProxyDHCP asks it for each MAC's boot chain (iPXE, or the signed one) before answering
    subprocess.run([sys.executable, "-m", "cli", "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    output = f"pxe-{data_dir.name}.out"
    process = lab.start(lab.boot, [sys.executable, "-m", "cli", "pxe", "--no-tftp"], output, env=env, cwd=ROOT)
    try:
        lab.wait_listening(lab.boot, "u", {dhcp.SERVER_PORT, dhcp.PXE_PORT}, process=process)
        yield data_dir / "log" / "pxe.log"
    finally:
        lab.stop(process)


def client(lab: netlab.Lab, *args: str, timeout: float = 5.0) -> Seen | None:
    result = lab.run(lab.site, sys.executable, "-m", "tests.support.dhcpclient", "--timeout", str(timeout), *args,
                     cwd=ROOT)
    seen: Seen | None = json.loads(result.stdout)
    return seen


def discover(lab: netlab.Lab, request: DhcpPacket, timeout: float = 5.0) -> Seen | None:
    return client(lab, "discover", netlab.BRIDGE, request.to_bytes().hex(), timeout=timeout)


def default_routes(lab: netlab.Lab) -> str:
    return str(lab.run(lab.boot, "ip", "-4", "route", "show", "default").stdout).strip()


def diagnostics(lab: netlab.Lab, log: Path) -> str:
    """The server's output and log (its data folder is the log's grandparent)."""
    output = lab.log(f"pxe-{log.parent.parent.name}.out")
    return f"--- output ---\n{output[-3000:]}\n--- pxe.log ---\n" + (
        log.read_text(errors="replace")[-3000:] if log.exists() else "")


CLIENTS = [
    pytest.param("bios-direct", True, id="ipxe-bios"),
    pytest.param("uefi-chain", False, id="ovmf-pxe"),
]


@pytest.mark.parametrize("capture, ipxe", CLIENTS)
def test_offer_is_broadcast_on_a_network_without_default_route(lab, capture, ipxe):
    assert default_routes(lab) == "", "the boot namespace must have no default route"
    request = recorded(capture, dhcp.SERVER_PORT, ipxe)
    with proxydhcp(lab) as log:
        seen = discover(lab, request)
        assert seen is not None, "no OFFER reached the client\n" + diagnostics(lab, log)
        text = log.read_text()
    # Broadcast on the wire: the client has no address yet.
    assert (seen["eth_dst"], seen["ip_dst"], seen["src_port"], seen["dst_port"]) == (
        "ff:ff:ff:ff:ff:ff", "255.255.255.255", dhcp.SERVER_PORT, dhcp.CLIENT_PORT)
    assert seen["ip_src"] == netlab.BOOT_ADDRESS  # from the address the boot network knows
    offer = dhcp.parse(bytes.fromhex(seen["payload"]))
    assert (offer.message_type, offer.xid, offer.chaddr) == (dhcp.DHCPOFFER, request.xid, request.chaddr)
    if ipxe:
        assert offer.siaddr == netlab.BOOT_ADDRESS
        assert offer.file == f"{PUBLIC_URL}/api/v1/provisioning/pxe/chain.ipxe?mac={request.mac}"
    else:
        assert (offer.siaddr, offer.file) == (netlab.BOOT_ADDRESS, "")  # the file comes on 4011
    assert f"OFFER {request.mac} " in text and f" on {netlab.BOOT_VETH}" in text, text
    assert "Network is unreachable" not in text


def test_4011_request_is_answered_by_unicast(lab):
    # OVMF, after its lease from the site server: REQUEST from its port 4011 with ciaddr set.
    request = replace(recorded("uefi-chain", dhcp.PXE_PORT, ipxe=False), ciaddr=CLIENT_ADDRESS)
    assert request.message_type == dhcp.DHCPREQUEST
    assert default_routes(lab) == ""
    with proxydhcp(lab) as log:
        seen = client(lab, "request", CLIENT_ADDRESS, netlab.BOOT_ADDRESS, request.to_bytes().hex())
        assert seen is not None, "no ACK reached the client\n" + diagnostics(lab, log)
    assert (seen["ip_src"], seen["src_port"]) == (netlab.BOOT_ADDRESS, dhcp.PXE_PORT)
    ack = dhcp.parse(bytes.fromhex(seen["payload"]))
    assert (ack.message_type, ack.xid, ack.ciaddr) == (dhcp.DHCPACK, request.xid, CLIENT_ADDRESS)
    assert (ack.siaddr, ack.sname, ack.file) == (netlab.BOOT_ADDRESS, netlab.BOOT_ADDRESS, "ipxe.efi")


def test_offer_leaves_by_the_arrival_interface_not_the_default_route(lab):
    # A host on several networks: the default route leads to the other one. A broadcast sent by the
    # routing table would leave there, and the PXE client would never see it.
    lab.run(lab.boot, "ip", "route", "add", "default", "dev", OTHER)
    try:
        request = recorded("bios-direct", dhcp.SERVER_PORT, ipxe=True)
        with proxydhcp(lab) as log:
            seen = discover(lab, request)
            assert seen is not None, "the OFFER left by the default route\n" + diagnostics(lab, log)
        assert dhcp.parse(bytes.fromhex(seen["payload"])).xid == request.xid
        assert seen["ip_dst"] == "255.255.255.255"
    finally:
        lab.run(lab.boot, "ip", "route", "del", "default", "dev", OTHER)


@pytest.mark.parametrize("interface, answered", [
    pytest.param(netlab.BOOT_VETH, True, id="the-boot-network"),
    pytest.param(OTHER, False, id="another-network"),
])
def test_interface_setting_restricts_who_is_answered(lab, interface, answered):
    request = recorded("uefi-chain", dhcp.SERVER_PORT, ipxe=False)
    with proxydhcp(lab, proxydhcp_interface=interface) as log:
        seen = discover(lab, request, timeout=5.0 if answered else NO_ANSWER_WAIT)
        assert (seen is not None) == answered, diagnostics(lab, log)
    if answered:
        assert seen is not None and dhcp.parse(bytes.fromhex(seen["payload"])).xid == request.xid
