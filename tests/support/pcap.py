"""A tiny reader for classic libpcap files (Ethernet, IPv4, UDP), so tests can replay the
packets that real firmware sent in the lab without a dependency such as scapy."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

# Magic numbers of the classic format, as read little-endian: microsecond and nanosecond timestamps.
_MAGICS = {
    0xA1B2C3D4: ("<", 1e-6),
    0xD4C3B2A1: (">", 1e-6),
    0xA1B23C4D: ("<", 1e-9),
    0x4D3CB2A1: (">", 1e-9),
}
LINKTYPE_ETHERNET = 1
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100  # 802.1Q tag: four more bytes before the real EtherType
IPPROTO_UDP = 17


class UdpDatagram(NamedTuple):
    timestamp: float
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes


def read_udp(path: str | Path) -> Iterator[UdpDatagram]:
    """Yield every IPv4/UDP datagram of the capture in file order; other frames are skipped."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise ValueError(f"{path}: too short for a pcap header")
    (magic,) = struct.unpack_from("<I", data, 0)
    if magic not in _MAGICS:
        raise ValueError(f"{path}: not a classic pcap file (magic {magic:#010x})")
    endian, tick = _MAGICS[magic]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype} is not Ethernet")
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _original = struct.unpack_from(endian + "IIII", data, offset)
        offset += 16
        frame = data[offset : offset + captured]
        offset += captured
        if len(frame) < captured:
            raise ValueError(f"{path}: last record is truncated")
        datagram = _udp(frame, seconds + fraction * tick)
        if datagram is not None:
            yield datagram


def _udp(frame: bytes, timestamp: float) -> UdpDatagram | None:
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    ip_start = 14
    if ethertype == ETHERTYPE_VLAN and len(frame) >= 18:
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        ip_start = 18
    if ethertype != ETHERTYPE_IPV4 or len(frame) < ip_start + 20:
        return None
    version_ihl, _tos, total_length = struct.unpack_from("!BBH", frame, ip_start)
    header_length = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header_length < 20 or frame[ip_start + 9] != IPPROTO_UDP:
        return None
    src = str(ipaddress.IPv4Address(frame[ip_start + 12 : ip_start + 16]))
    dst = str(ipaddress.IPv4Address(frame[ip_start + 16 : ip_start + 20]))
    udp_start = ip_start + header_length
    if len(frame) < udp_start + 8:
        return None
    src_port, dst_port, udp_length = struct.unpack_from("!HHH", frame, udp_start)
    # The IP/UDP lengths, not the frame length: Ethernet pads short frames.
    end = min(udp_start + udp_length, ip_start + total_length, len(frame))
    return UdpDatagram(timestamp, src, src_port, dst, dst_port, frame[udp_start + 8 : end])
