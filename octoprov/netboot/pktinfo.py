"""IP_PKTINFO (Linux): on which interface, and to which local address, a UDP datagram arrived,
and how to send the answer back out of that interface from that address.

Why: a boot server answers clients that have no address yet, by broadcast to 255.255.255.255.
Without an outgoing interface the kernel routes that broadcast like any other destination: out of
the default route's interface, or, on an isolated boot network with no default route, nowhere
(``ENETUNREACH``). An IP_PKTINFO control message naming the interface makes the kernel send a
limited broadcast out of it with no route at all (``ip_route_output_key_hash_rcu``: an ``oif``
with a limited-broadcast destination skips the routing table), which is what dnsmasq does too.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python does not export it
_IN_PKTINFO = struct.Struct("@i4s4s")  # struct in_pktinfo: ipi_ifindex, ipi_spec_dst, ipi_addr
ANCILLARY_SIZE = socket.CMSG_SPACE(_IN_PKTINFO.size)  # the ancbufsize to pass to recvmsg()
_ANY = "0.0.0.0"  # noqa: S104 - "no address" in in_pktinfo, nothing binds to it


@dataclass(frozen=True)
class Arrival:
    """Where one datagram arrived: the interface index, the local address the sender reached
    (``ipi_spec_dst``: the interface's address for a broadcast) and the header's destination."""

    ifindex: int
    local_address: str
    destination: str


def enable(sock: socket.socket) -> None:
    """Ask the kernel to attach an IP_PKTINFO control message to every datagram received."""
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def arrival(ancdata: list[tuple[int, int, bytes]]) -> Arrival | None:
    """The IP_PKTINFO of a datagram from ``recvmsg()``'s ancillary data, or None without one."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
            ifindex, local, destination = _IN_PKTINFO.unpack_from(data)
            return Arrival(ifindex, socket.inet_ntoa(local), socket.inet_ntoa(destination))
    return None


def local_address(ancdata: list[tuple[int, int, bytes]]) -> str:
    """The local address a datagram was sent to ("" if unknown), so the answer comes from it:
    PXE ROMs check the source of what they asked for."""
    found = arrival(ancdata)
    return found.local_address if found is not None and found.local_address != _ANY else ""


def control(ifindex: int = 0, source: str = "") -> list[tuple[int, int, bytes]]:
    """Ancillary data for ``sendmsg()``: send out of interface ``ifindex`` (0: as routed) from
    ``source`` (empty: the kernel picks the address)."""
    packed = _IN_PKTINFO.pack(ifindex, socket.inet_aton(source or _ANY), bytes(4))
    return [(socket.IPPROTO_IP, IP_PKTINFO, packed)]
