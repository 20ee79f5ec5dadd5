"""The metrics `octoprov pxe` serves itself: the service's TFTP server and ProxyDHCP responder
with one PxeMetrics, its exporter on a free port, a real tftpy client and DHCP requests recorded
from real firmware, replayed over the loopback; the exporter's answer read with prometheus_client's parser.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import tftpy
from prometheus_client.parser import text_string_to_metric_families

from octoprov.crypto import Vault
from octoprov.netboot import dhcp, grub
from octoprov.netboot.chain import BootChain
from octoprov.netboot.metrics import BOOT_KINDS, DHCP_OUTCOMES, PxeMetrics
from octoprov.netboot.proxydhcp import BootConfig, ProxyDhcpServer
from octoprov.netboot.service import grub_configs
from octoprov.netboot.tftp import TftpServer
from tests.conftest import sqlite_database
from tests.support import TESTS
from tests.support.captures import recorded
from tests.support.live import free_port
from tests.support.processes import start_octoprov, stop_group
from tests.support.prom import sample

CAPTURES = Path(os.environ.get("OCTOPROV_NETBOOT_CAPTURES") or TESTS / "data/captures")
SCRIPT_URL = "http://192.0.2.1:8080/api/v1/provisioning/pxe/chain.ipxe"


@pytest.fixture
def database(settings):
    yield from sqlite_database(settings)


@pytest.fixture
def pxe(settings, database, tmp_path):
    """The service's parts as `octoprov pxe` composes them, on the loopback and free ports."""
    metrics = PxeMetrics()
    root = tmp_path / "tftp"
    root.mkdir()
    tftp = TftpServer(root, host="127.0.0.1", port=0, metrics=metrics,
                      rendered=grub_configs(database, settings, Vault.from_settings(settings), metrics)).start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)
    config = BootConfig(server_address="192.0.2.1", proxy_address="192.0.2.1", script_url=lambda mac: SCRIPT_URL)
    proxy = ProxyDhcpServer(config, lambda mac: BootChain.IPXE, host="127.0.0.1", dhcp_port=0, pxe_port=0,
                            client_port=client.getsockname()[1], broadcast_address="127.0.0.1", metrics=metrics)
    proxy.start()
    exporter = metrics.serve("127.0.0.1", 0)
    yield root, tftp, proxy, client, exporter
    exporter.stop()
    proxy.stop()
    tftp.stop()
    client.close()


def scrape(exporter) -> tuple[str, dict]:
    return scrape_url(f"http://127.0.0.1:{exporter.port}/metrics")


def scrape_url(url: str) -> tuple[str, dict]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return response.text, {family.name: family for family in text_string_to_metric_families(response.text)}


def scrape_settled(url: str, settled: Callable[[dict], bool]) -> tuple[str, dict]:
    """Scrapes until `settled` holds (10 s at most): the servers count a transfer or an ignored request
    after the client is done with it (a TFTP transfer when the last ACK arrives)."""
    deadline = time.monotonic() + 10
    while True:
        text, families = scrape_url(url)
        if settled(families) or time.monotonic() > deadline:
            return text, families
        time.sleep(0.1)


def test_pxe_metrics_after_a_network_boot(pxe, tmp_path):
    root, tftp, proxy, client, exporter = pxe
    _, before = scrape(exporter)
    assert all(sample(before, "octoprov_pxe_dhcp_requests", "_total", outcome=word) == 0 for word in DHCP_OUTCOMES)

    firmware = recorded("uefi-chain", dhcp.SERVER_PORT, ipxe=False).to_bytes()
    ipxe = recorded("bios-chain", dhcp.SERVER_PORT, ipxe=True).to_bytes()
    for datagram, port in ((firmware, proxy.dhcp_port), (ipxe, proxy.dhcp_port), (b"garbage", proxy.dhcp_port)):
        client.sendto(datagram, ("127.0.0.1", port))
    offers = [dhcp.parse(client.recvfrom(2048)[0]) for _ in range(2)]
    assert {offer.file for offer in offers} == {"", SCRIPT_URL}
    not_pxe = dhcp.parse(ipxe)
    not_pxe.options.pop(dhcp.OPT_VENDOR_CLASS)  # an installed OS renewing its lease: not ours
    client.sendto(not_pxe.to_bytes(), ("127.0.0.1", proxy.dhcp_port))

    payload = os.urandom(70_000)
    (root / "ipxe.efi").write_bytes(payload)
    tftpy.TftpClient("127.0.0.1", tftp.port).download("ipxe.efi", str(tmp_path / "got.efi"))
    assert (tmp_path / "got.efi").read_bytes() == payload
    with pytest.raises(tftpy.TftpException):
        tftpy.TftpClient("127.0.0.1", tftp.port).download("missing.efi", str(tmp_path / "missing.efi"))
    config_name = "grub/octoprov/52:54:00:12:34:56.cfg"
    assert grub.machine_file_mac(config_name) == "52:54:00:12:34:56"
    tftpy.TftpClient("127.0.0.1", tftp.port).download(config_name, str(tmp_path / "grub.cfg"))
    grub_size = (tmp_path / "grub.cfg").stat().st_size

    text, families = scrape_settled(
        f"http://127.0.0.1:{exporter.port}/metrics",
        lambda families: (sample(families, "octoprov_pxe_tftp_transfers", "_total", outcome="complete") >= 2
                          and sample(families, "octoprov_pxe_dhcp_requests", "_total", outcome="ignored") >= 1))
    assert sample(families, "octoprov_pxe_dhcp_requests", "_total", outcome="offered") == 2
    assert sample(families, "octoprov_pxe_dhcp_requests", "_total", outcome="malformed") == 1
    assert sample(families, "octoprov_pxe_dhcp_requests", "_total", outcome="ignored") == 1
    assert sample(families, "octoprov_pxe_boot_answers", "_total", kind="boot_server") == 1
    assert sample(families, "octoprov_pxe_boot_answers", "_total", kind="ipxe_script") == 1
    assert sum(sample(families, "octoprov_pxe_boot_answers", "_total", kind=kind) for kind in BOOT_KINDS) == 2
    assert sample(families, "octoprov_pxe_tftp_transfers", "_total", outcome="complete") == 2
    assert sample(families, "octoprov_pxe_tftp_sent_bytes", "_total") == len(payload) + grub_size
    assert sample(families, "octoprov_pxe_tftp_errors", "_total", error="file_not_found") == 1
    assert sum(s.value for s in families["octoprov_pxe_grub_configs"].samples if s.name.endswith("_total")) == 1
    for private in ("52:54:00:12:34:56", "52-54-00-12-34-56", dhcp.parse(firmware).mac, "127.0.0.1", "ipxe.efi"):
        assert private not in text


def test_octoprov_pxe_serves_its_metrics_where_the_settings_say(tmp_path):
    """The real `octoprov pxe` process: its exporter on OCTOPROV_PXE_METRICS_PORT counts a TFTP download."""
    port, tftp_port = free_port(), free_udp_port()
    ipxe_dir = tmp_path / "ipxe"
    ipxe_dir.mkdir()
    (ipxe_dir / "undionly.kpxe").write_bytes(b"\x55" * 1500)
    env = {**os.environ, "OCTOPROV_DATA_DIR": str(tmp_path / "var"), "OCTOPROV_IPXE_DIR": str(ipxe_dir),
           "OCTOPROV_SIGNED_BOOT_DIR": str(tmp_path), "OCTOPROV_TFTP_HOST": "127.0.0.1",
           "OCTOPROV_TFTP_PORT": str(tftp_port), "OCTOPROV_PXE_METRICS_HOST": "127.0.0.1",
           "OCTOPROV_PXE_METRICS_PORT": str(port)}
    process = start_octoprov("pxe", "--no-proxydhcp", env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"octoprov pxe exited with {process.returncode}"
            try:
                requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the metrics port did not answer"
                time.sleep(0.2)
        tftpy.TftpClient("127.0.0.1", tftp_port).download("undionly.kpxe", str(tmp_path / "got"))
        _, families = scrape_settled(
            f"http://127.0.0.1:{port}/metrics",
            lambda families: sample(families, "octoprov_pxe_tftp_transfers", "_total", outcome="complete") >= 1)
        assert sample(families, "octoprov_pxe_tftp_transfers", "_total", outcome="complete") == 1
        assert sample(families, "octoprov_pxe_tftp_sent_bytes", "_total") == 1500
    finally:
        stop_group(process)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
