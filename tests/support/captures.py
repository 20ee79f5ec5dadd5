"""The DHCP packets real firmware sent in the lab (tests/data/captures), as requests a test can replay."""

from __future__ import annotations

from octoprov.netboot import dhcp
from octoprov.netboot.dhcp import DhcpPacket
from tests.support import TESTS
from tests.support.pcap import read_udp

CAPTURES = TESTS / "data/captures"


def recorded(capture: str, port: int, ipxe: bool) -> DhcpPacket:
    """The first request a client of the lab sent to ``port`` in ``capture`` (iPXE's or the firmware's)."""
    for datagram in read_udp(CAPTURES / f"{capture}-proxy.pcap"):
        packet = dhcp.parse(datagram.payload)
        if (packet.op == dhcp.BOOTREQUEST and datagram.dst_port == port and dhcp.is_ipxe(packet) == ipxe
                and packet.message_type in (dhcp.DHCPDISCOVER, dhcp.DHCPREQUEST)):
            return packet
    raise LookupError(f"no {'iPXE' if ipxe else 'firmware'} request to port {port} in {capture}")
