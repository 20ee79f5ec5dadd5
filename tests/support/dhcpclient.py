"""A PXE client's side of ProxyDHCP on real sockets, run inside a network namespace
(``ip netns exec NS python -m tests.support.dhcpclient ...``): replays a recorded request and
prints the first answer to it as one JSON line (``null`` if none came in time).

``discover`` is what firmware does before it has an address: a raw Ethernet frame from 0.0.0.0:68
to 255.255.255.255:67 (a packet socket, as dhclient and PXE ROMs do; a UDP socket could not send
from 0.0.0.0), and the answer read off the wire with its Ethernet and IP headers, so a test sees
how it was sent. ``request`` is the PXE 2.1 second step: an ordinary UDP socket on the client's
new address and port 4011, unicast to the ProxyDHCP server's port 4011.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import struct
import sys
import time
from typing import Any

Seen = dict[str, Any]  # one received datagram: headers and payload (hex), as printed

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4  # sll_pkttype of frames this host sent; a packet socket sees them too
BROADCAST_MAC = b"\xff" * 6
CLIENT_PORT, SERVER_PORT, PXE_PORT = 68, 67, 4011
BOOTREPLY = 2
_XID = slice(4, 8)  # where xid sits in a DHCP message


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def discover_frame(payload: bytes, mac: bytes) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload``: from ``mac`` and 0.0.0.0:68 to everyone's port 67."""
    source, destination = bytes(4), b"\xff" * 4
    udp_length = 8 + len(payload)
    pseudo = source + destination + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_length)
    udp = struct.pack("!HHHH", CLIENT_PORT, SERVER_PORT, udp_length, 0) + payload
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_length, 0, 0, 64, socket.IPPROTO_UDP, 0,
                         source, destination)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return BROADCAST_MAC + mac + struct.pack("!H", ETH_P_IP) + header + udp


def parse_frame(frame: bytes) -> Seen | None:
    """The Ethernet/IPv4/UDP headers and payload of a frame, or None if it is something else."""
    if len(frame) < 34 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != socket.IPPROTO_UDP or len(frame) < 14 + ihl + 8:
        return None
    udp = 14 + ihl
    source_port, destination_port, length = struct.unpack_from("!HHH", frame, udp)
    return {
        "eth_dst": frame[0:6].hex(":"), "eth_src": frame[6:12].hex(":"),
        "ip_src": str(ipaddress.IPv4Address(frame[26:30])), "ip_dst": str(ipaddress.IPv4Address(frame[30:34])),
        "src_port": source_port, "dst_port": destination_port, "payload": frame[udp + 8 : udp + length].hex(),
    }


def discover(interface: str, payload: bytes, timeout: float) -> Seen | None:
    """Broadcast ``payload`` on ``interface`` and return the first BOOTREPLY to our port 68 with its xid."""
    mac = payload[28:34]  # chaddr: a PXE ROM sends from the MAC it names
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        sock.bind((interface, ETH_P_IP))  # listening before sending: the answer cannot slip past
        sock.send(discover_frame(payload, mac))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                frame, address = sock.recvfrom(65535)
            except TimeoutError:
                break
            if address[2] == PACKET_OUTGOING:
                continue
            seen = parse_frame(frame)
            if seen is None or seen["dst_port"] != CLIENT_PORT:
                continue
            answer = bytes.fromhex(seen["payload"])
            if len(answer) > 8 and answer[0] == BOOTREPLY and answer[_XID] == payload[_XID]:
                return seen
    finally:
        sock.close()
    return None


def request(local: str, server: str, payload: bytes, timeout: float) -> Seen | None:
    """Send ``payload`` from ``local``:4011 to ``server``:4011 and return the answer to its xid."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((local, PXE_PORT))
        sock.sendto(payload, (server, PXE_PORT))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                answer, (host, port) = sock.recvfrom(65535)
            except TimeoutError:
                break
            if len(answer) > 8 and answer[0] == BOOTREPLY and answer[_XID] == payload[_XID]:
                return {"ip_src": host, "src_port": port, "ip_dst": local, "dst_port": PXE_PORT,
                        "payload": answer.hex()}
    finally:
        sock.close()
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.dhcpclient")
    parser.add_argument("--timeout", type=float, default=5.0)
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("discover", help="broadcast a DISCOVER from 0.0.0.0:68 on an interface")
    first.add_argument("interface")
    first.add_argument("packet", help="the DHCP message, hex")
    second = commands.add_parser("request", help="unicast a REQUEST from LOCAL:4011 to SERVER:4011")
    second.add_argument("local")
    second.add_argument("server")
    second.add_argument("packet", help="the DHCP message, hex")
    args = parser.parse_args(argv)
    payload = bytes.fromhex(args.packet)
    if args.command == "discover":
        answer = discover(args.interface, payload, args.timeout)
    else:
        answer = request(args.local, args.server, payload, args.timeout)
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
