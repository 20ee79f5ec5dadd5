"""ProxyDHCP: the packet model, the decision function against what dnsmasq answered to real
firmware (recorded in the lab), the guard clauses, and the UDP server on the loopback."""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octoprov.netboot import dhcp, pktinfo
from octoprov.netboot.chain import BootChain
from octoprov.netboot.dhcp import DhcpPacket, MalformedPacket
from octoprov.netboot.proxydhcp import BootConfig, ProxyDhcpServer, decide, reply_destination
from octoprov.settings import Settings
from tests.support import TESTS
from tests.support.pcap import UdpDatagram, read_udp

# Recorded real firmware packets (the network-boot lab's captures, kept in the tree so the comparison
# always runs); OCTOPROV_NETBOOT_CAPTURES points at others.
CAPTURES = Path(os.environ.get("OCTOPROV_NETBOOT_CAPTURES") or TESTS / "data/captures")
CAPTURE_NAMES = ["bios-direct", "bios-chain", "uefi-direct", "uefi-chain"]
LAB_MAC = "52:54:00:c0:ff:ee"  # the QEMU guest of every recorded boot
LAB_PROXY = "192.0.2.2"  # dnsmasq in proxy mode
SCRIPT_URL = "http://192.0.2.1:8080/boot.ipxe"
EFI_URL = "http://192.0.2.1:8080/boot/efi/ipxe.efi"
LAB = BootConfig(server_address="192.0.2.1", proxy_address=LAB_PROXY, script_url=lambda mac: SCRIPT_URL)
IPXE_ENCAP = bytes.fromhex("b105011af41000eb030100001701012401011301011101012701012901011501011b0101120101")


def lab_active(mac: str) -> BootChain | None:
    return BootChain.IPXE if mac == LAB_MAC else None


def never_called(mac: str) -> BootChain | None:
    raise AssertionError(f"is_active({mac!r}) must not be called here")


# -- what dnsmasq answered, paired with the request it answered -------------------------------------


@dataclass
class Exchange:
    capture: str
    index: int
    request_datagram: UdpDatagram
    request: DhcpPacket
    answer_datagram: UdpDatagram | None = None
    answer: DhcpPacket | None = None

    @property
    def id(self) -> str:
        kind = dhcp.MESSAGE_TYPES[self.request.message_type]
        vendor = dhcp.vendor_class(self.request) or b"-"
        if dhcp.is_ipxe(self.request):
            client = "ipxe"
        elif vendor.startswith(b"PXEClient"):
            client = "firmware"
        else:
            client = vendor.split(b" ")[0].decode().lower()
        return f"{self.capture}-{self.index:02d}-{client}-{kind.lower()}-{self.request_datagram.dst_port}"


ANSWER_TO = {dhcp.DHCPDISCOVER: dhcp.DHCPOFFER, dhcp.DHCPREQUEST: dhcp.DHCPACK, dhcp.DHCPINFORM: dhcp.DHCPACK}


def exchanges(capture: str) -> list[Exchange]:
    """Every client request of a capture, with the ProxyDHCP answer to it if dnsmasq gave one: the
    proxy's packet with the request's xid, the answering message type, from the port asked."""
    found: list[Exchange] = []
    for datagram in read_udp(CAPTURES / f"{capture}-proxy.pcap"):
        packet = dhcp.parse(datagram.payload)
        if packet.op == dhcp.BOOTREQUEST and datagram.dst_port in (dhcp.SERVER_PORT, dhcp.PXE_PORT):
            found.append(Exchange(capture, len(found), datagram, packet))
        elif packet.op == dhcp.BOOTREPLY and datagram.src_ip == LAB_PROXY:
            asked = [e for e in found if e.request.xid == packet.xid
                     and e.request_datagram.dst_port == datagram.src_port
                     and ANSWER_TO.get(e.request.message_type) == packet.message_type]
            assert asked, f"{capture}: proxy answer xid {packet.xid:#x} matches no request"
            assert asked[-1].answer is None, f"{capture}: two proxy answers to one request"
            asked[-1].answer_datagram, asked[-1].answer = datagram, packet
    return found


def all_exchanges() -> list[Exchange]:
    if not all((CAPTURES / f"{name}-proxy.pcap").is_file() for name in CAPTURE_NAMES):
        return []
    return [e for name in CAPTURE_NAMES for e in exchanges(name)]


EXCHANGES = all_exchanges()
needs_captures = pytest.mark.skipif(not EXCHANGES, reason=f"lab captures not found in {CAPTURES}")


@dataclass(frozen=True)
class Allowed:
    """A field where we answer differently from the lab's dnsmasq on purpose."""

    dnsmasq: tuple  # every value dnsmasq was seen sending there (None: the option was absent)
    ours: object
    reason: str


# Keep docs/proxydhcp.md ("Differences from dnsmasq") in step with this table.
ALLOWED_DIFFERENCES = {
    "secs": Allowed(
        dnsmasq=(4,), ours=0,
        reason="RFC 2131 table 3: a server sends secs 0; dnsmasq echoes the client's value. No client reads it.",
    ),
    "option 43": Allowed(
        dnsmasq=(bytes.fromhex("0601080a07007078656c6162ff"), None), ours=bytes.fromhex("060108ff"),
        reason="To iPXE we send only discovery control 8 (use this boot file, no discovery). The lab's dnsmasq "
               "sent a menu prompt 'pxelab' with timeout 0 to BIOS clients (lab configuration, shows nothing) "
               "and no option 43 at all to UEFI iPXE; iPXE boots with either because siaddr and file are set.",
    ),
}

HEADER_FIELDS = ("op", "htype", "hlen", "hops", "xid", "secs", "flags", "ciaddr", "yiaddr", "siaddr", "giaddr",
                 "chaddr", "sname", "file")


def differences(theirs: DhcpPacket, ours: DhcpPacket) -> dict[str, tuple]:
    diff = {name: (getattr(theirs, name), getattr(ours, name)) for name in HEADER_FIELDS
            if getattr(theirs, name) != getattr(ours, name)}
    for code in sorted(set(theirs.options) | set(ours.options)):
        if theirs.options.get(code) != ours.options.get(code):
            diff[f"option {code}"] = (theirs.options.get(code), ours.options.get(code))
    return diff


@needs_captures
def test_captures_hold_the_four_boots():
    answered = {e.capture for e in EXCHANGES if e.answer is not None}
    assert answered == set(CAPTURE_NAMES)
    # OVMF's second stage is in the UEFI chain capture: a REQUEST to 4011 with ciaddr set.
    assert any(e.request_datagram.dst_port == dhcp.PXE_PORT and e.answer for e in EXCHANGES)


@needs_captures
def test_pcap_reader_sees_only_dhcp():
    for name in CAPTURE_NAMES:
        datagrams = list(read_udp(CAPTURES / f"{name}-proxy.pcap"))
        assert datagrams, name
        assert all({d.src_port, d.dst_port} & {67, 68, 4011} for d in datagrams)
        assert [d.timestamp for d in datagrams] == sorted(d.timestamp for d in datagrams)


@pytest.mark.parametrize("exchange", EXCHANGES, ids=[e.id for e in EXCHANGES])
def test_answers_like_dnsmasq(exchange: Exchange):
    ours = decide(exchange.request, exchange.request_datagram.dst_port, lab_active, LAB)
    if exchange.answer is None:
        assert ours is None, "dnsmasq stayed silent here"
        return
    assert ours is not None, "dnsmasq answered this request"
    for name, (theirs_value, ours_value) in differences(exchange.answer, ours).items():
        assert name in ALLOWED_DIFFERENCES, f"{name}: dnsmasq {theirs_value!r}, we {ours_value!r}"
        allowed = ALLOWED_DIFFERENCES[name]
        assert theirs_value in allowed.dnsmasq and ours_value == allowed.ours, name
    # Same destination as dnsmasq's answer: broadcast OFFERs, the 4011 ACK back to ciaddr:4011.
    source = (exchange.request_datagram.src_ip, exchange.request_datagram.src_port)
    destination = reply_destination(exchange.request, exchange.request_datagram.dst_port, source)
    assert destination == (exchange.answer_datagram.dst_ip, exchange.answer_datagram.dst_port)
    assert dhcp.parse(ours.to_bytes()) == ours


@needs_captures
def test_every_allowed_difference_occurs():
    """Keeps the table honest: a difference that no longer happens must leave it."""
    seen = set()
    for e in EXCHANGES:
        ours = decide(e.request, e.request_datagram.dst_port, lab_active, LAB)
        if e.answer is not None and ours is not None:
            seen |= set(differences(e.answer, ours))
    assert seen == set(ALLOWED_DIFFERENCES)


@needs_captures
def test_recorded_packets_round_trip():
    for e in EXCHANGES:
        for packet in (e.request, e.answer):
            if packet is not None:
                assert dhcp.parse(packet.to_bytes()) == packet


# -- the packet model ----------------------------------------------------------------------------


def pxe_request(*, kind: int = dhcp.DHCPDISCOVER, arch: int = dhcp.ARCH_X64_UEFI, ipxe: bool = False,
                mac: str = LAB_MAC, options: dict[int, bytes | None] | None = None, **header) -> DhcpPacket:
    """A request as the lab's firmware sends it: OVMF's PXE client, or iPXE with ``ipxe=True``."""
    opts: dict[int, bytes | None] = {
        dhcp.OPT_MESSAGE_TYPE: bytes([kind]),
        dhcp.OPT_CLIENT_ARCH: struct.pack("!H", arch),
        dhcp.OPT_CLIENT_NDI: b"\x01\x03\x10" if ipxe else b"\x01\x03\x00",
        dhcp.OPT_VENDOR_CLASS: f"PXEClient:Arch:{arch:05d}:UNDI:{'003010' if ipxe else '003000'}".encode(),
        dhcp.OPT_CLIENT_UUID: bytes(17),
    }
    if ipxe:
        opts[dhcp.OPT_USER_CLASS] = b"iPXE"
        opts[dhcp.OPT_IPXE_ENCAP] = IPXE_ENCAP
        opts[dhcp.OPT_CLIENT_ID] = b"\x01" + bytes.fromhex(mac.replace(":", ""))
    opts.update(options or {})
    header.setdefault("flags", 0 if ipxe else dhcp.FLAG_BROADCAST)
    return DhcpPacket(xid=0x1234ABCD, chaddr=bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0"),
                      options={code: value for code, value in opts.items() if value is not None}, **header)


def with_option(data: bytes, code: int, value: bytes, *, length: int | None = None) -> bytes:
    """``data`` with one more option put just before the end option."""
    end = data.index(bytes([dhcp.OPT_END]), dhcp.HEADER_LENGTH + 4)
    return data[:end] + bytes([code, len(value) if length is None else length]) + value + data[end:]


GOOD = pxe_request(ipxe=True).to_bytes()
_COOKIE_AT = dhcp.HEADER_LENGTH
_OPTIONS_AT = dhcp.HEADER_LENGTH + 4
BASE = GOOD[:_OPTIONS_AT] + b"\x35\x01\x01\xff"  # a DISCOVER with nothing but its message type


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="zero-length"),
        pytest.param(GOOD[:100], id="truncated-header"),
        pytest.param(GOOD[:_COOKIE_AT], id="header-without-cookie"),
        pytest.param(GOOD[:_COOKIE_AT] + b"\x63\x82\x53\x64" + GOOD[_OPTIONS_AT:], id="bad-cookie"),
        pytest.param(GOOD[:_OPTIONS_AT] + b"\x3c\xc8PXEClient", id="option-past-end"),
        pytest.param(GOOD[:_OPTIONS_AT] + b"\x35", id="option-without-length"),
        pytest.param(GOOD[:_OPTIONS_AT] + b"\x35\x01\x01", id="no-end-option"),
        pytest.param(GOOD[:_OPTIONS_AT], id="no-options-no-end"),
        pytest.param(b"\x03" + GOOD[1:], id="op-3"),
        pytest.param(GOOD[:2] + b"\x11" + GOOD[3:], id="hlen-17"),
        pytest.param(with_option(GOOD[:_OPTIONS_AT] + b"\xff", 53, b"\x01\x01"), id="message-type-2-bytes"),
        pytest.param(with_option(BASE, 97, bytes(16)), id="uuid-16-bytes"),
        pytest.param(with_option(BASE, 93, b"\x00\x07\x00"), id="arch-odd-length"),
        pytest.param(with_option(BASE, 93, b""), id="arch-zero-length"),
        pytest.param(with_option(BASE, 54, b"\xc0\x00\x02"), id="server-id-3-bytes"),
        pytest.param(with_option(BASE, 60, b""), id="vendor-class-zero-length"),
        pytest.param(b"\x00" * 400, id="all-zero"),
    ],
)
def test_malformed(data):
    with pytest.raises(MalformedPacket):
        dhcp.parse(data)


def test_parse_tolerates_pad_and_trailing_bytes():
    data = GOOD[:_OPTIONS_AT] + b"\x00\x00\x35\x01\x01\x00\xff" + b"garbage after end"
    assert dhcp.parse(data).options == {53: b"\x01"}


def test_long_option_is_split_and_joined():
    """RFC 3396: values over 255 bytes travel as several options with the same code."""
    packet = DhcpPacket(options={dhcp.OPT_MESSAGE_TYPE: b"\x01", 224: bytes(range(256)) * 2})
    data = packet.to_bytes()
    assert data.count(bytes([224, 255])) == 2
    assert dhcp.parse(data) == packet


def test_to_bytes_pads_to_bootp_minimum_and_keeps_fields():
    packet = pxe_request(ciaddr="192.0.2.177", giaddr="198.51.100.1", sname="boot", file="ipxe.efi")
    assert dhcp.parse(packet.to_bytes()) == packet
    assert packet.mac == LAB_MAC
    assert len(DhcpPacket(options={dhcp.OPT_MESSAGE_TYPE: b"\x02"}).to_bytes()) == dhcp.MIN_PACKET_LENGTH


@pytest.mark.parametrize(
    "value, classes",
    [
        pytest.param(b"iPXE", [b"iPXE"], id="ipxe-raw"),
        pytest.param(b"\x04iPXE", [b"iPXE"], id="rfc3004-one"),
        pytest.param(b"\x03abc\x04iPXE", [b"abc", b"iPXE"], id="rfc3004-two"),
        pytest.param(b"\x05iPXE", [b"\x05iPXE"], id="length-too-long-is-raw"),
        pytest.param(b"\x04iPXE\x00", [b"\x04iPXE\x00"], id="zero-length-item-is-raw"),
        pytest.param(b"MSFT", [b"MSFT"], id="other-raw"),
    ],
)
def test_user_classes(value, classes):
    assert dhcp.user_classes(pxe_request(options={dhcp.OPT_USER_CLASS: value})) == classes


@pytest.mark.parametrize(
    "options, expected",
    [
        pytest.param({dhcp.OPT_USER_CLASS: b"iPXE"}, True, id="user-class-raw"),
        pytest.param({dhcp.OPT_USER_CLASS: b"\x04iPXE"}, True, id="user-class-rfc3004"),
        pytest.param({dhcp.OPT_IPXE_ENCAP: IPXE_ENCAP}, True, id="option-175-alone"),
        pytest.param({dhcp.OPT_USER_CLASS: b"gPXE"}, False, id="other-user-class"),
        pytest.param({}, False, id="firmware"),
    ],
)
def test_is_ipxe(options, expected):
    assert dhcp.is_ipxe(pxe_request(options=options)) is expected


def test_option_decoders():
    packet = pxe_request(ipxe=True, arch=dhcp.ARCH_X86_BIOS)
    assert dhcp.client_arch(packet) == 0
    assert dhcp.client_ndi(packet) == (1, 3, 16)
    assert dhcp.client_uuid(packet) == bytes(16)
    assert dhcp.ipxe_options(packet)[dhcp.IPXE_VERSION] == b"\x01\x00\x00"
    assert dhcp.ipxe_options(packet)[dhcp.IPXE_HTTP] == b"\x01"
    reply = decide(packet, dhcp.SERVER_PORT, lab_active, LAB)
    assert dhcp.pxe_options(reply) == {dhcp.PXE_DISCOVERY_CONTROL: b"\x08"}
    with pytest.raises(MalformedPacket):
        dhcp.client_uuid(pxe_request(options={dhcp.OPT_CLIENT_UUID: b"\x01" + bytes(16)}))
    with pytest.raises(MalformedPacket):
        dhcp.decode_suboptions(b"\x06\x05\x08")


# -- the guard clauses of decide() ---------------------------------------------------------------

OFFER, ACK = dhcp.DHCPOFFER, dhcp.DHCPACK
OFFER_TO_IPXE = {"type": OFFER, "siaddr": "192.0.2.1", "file": SCRIPT_URL, 60: b"PXEClient", 43: b"\x06\x01\x08\xff"}


@dataclass(frozen=True)
class Case:
    packet: DhcpPacket
    port: int = dhcp.SERVER_PORT
    expect: dict | None = None  # None: ignored; else header fields / option codes / "type"
    config: dict = field(default_factory=dict)  # BootConfig overrides
    chain: BootChain | None = BootChain.IPXE  # what the lookup says of the MAC (None: no active task)


CASES = {
    # not for us
    "bootreply": Case(pxe_request(op=dhcp.BOOTREPLY)),
    "no-option-60": Case(pxe_request(options={dhcp.OPT_VENDOR_CLASS: None})),
    "windows-vendor-class": Case(pxe_request(options={dhcp.OPT_VENDOR_CLASS: b"MSFT 5.0"})),
    "udhcpc": Case(pxe_request(options={dhcp.OPT_VENDOR_CLASS: b"udhcp 1.35.0", 93: None, 94: None, 97: None})),
    "no-option-93": Case(pxe_request(options={dhcp.OPT_CLIENT_ARCH: None})),
    "no-message-type": Case(pxe_request(options={dhcp.OPT_MESSAGE_TYPE: None})),
    "request-on-67": Case(pxe_request(kind=dhcp.DHCPREQUEST)),
    "inform-on-67": Case(pxe_request(kind=dhcp.DHCPINFORM)),
    "discover-on-4011": Case(pxe_request(), port=dhcp.PXE_PORT),
    "release-on-4011": Case(pxe_request(kind=dhcp.DHCPRELEASE, ciaddr="192.0.2.177"), port=dhcp.PXE_PORT),
    "other-port": Case(pxe_request(), port=1067),
    "zero-mac": Case(pxe_request(mac="00:00:00:00:00:00")),
    "multicast-mac": Case(pxe_request(mac="01:00:5e:00:00:01")),
    "not-ethernet": Case(pxe_request(htype=6)),
    # which machines
    "unknown-mac": Case(pxe_request(ipxe=True), chain=None),
    "unknown-mac-boot-unknown": Case(pxe_request(ipxe=True), chain=None, config={"boot_unknown": True},
                                     expect=OFFER_TO_IPXE),
    # architectures
    "arch-6-uefi-ia32": Case(pxe_request(arch=dhcp.ARCH_X86_UEFI)),
    "arch-11-arm64": Case(pxe_request(arch=11)),
    "arch-65535": Case(pxe_request(arch=0xFFFF)),
    # UEFI HTTP boot runs no script: it gets the URL of ipxe.efi, which then asks again as iPXE
    "arch-16-http-boot": Case(
        pxe_request(arch=dhcp.ARCH_X64_UEFI_HTTP,
                    options={dhcp.OPT_VENDOR_CLASS: b"HTTPClient:Arch:00016:UNDI:003000"}),
        config={"http_boot_url": EFI_URL},
        expect={"type": OFFER, "siaddr": "192.0.2.1", "file": EFI_URL, 60: b"HTTPClient", 43: None},
    ),
    "arch-16-http-boot-without-url": Case(
        pxe_request(arch=dhcp.ARCH_X64_UEFI_HTTP, options={dhcp.OPT_VENDOR_CLASS: b"HTTPClient:Arch:00016"})),
    "arch-16-http-boot-secure-boot": Case(  # GRUB 2.06 cannot follow over HTTP: left to the firmware's PXE
        pxe_request(arch=dhcp.ARCH_X64_UEFI_HTTP, options={dhcp.OPT_VENDOR_CLASS: b"HTTPClient:Arch:00016"}),
        chain=BootChain.SIGNED, config={"http_boot_url": EFI_URL}),
    "arch-15-http-boot-ia32": Case(
        pxe_request(arch=15, options={dhcp.OPT_VENDOR_CLASS: b"HTTPClient:Arch:00015:UNDI:003000"})),
    # firmware PXE: OFFER without file on 67 (siaddr = us, where it asks next), the file on 4011
    "firmware-uefi-discover": Case(
        pxe_request(), expect={"type": OFFER, "siaddr": "192.0.2.2", "file": "", "sname": "", 43: None,
                               "flags": dhcp.FLAG_BROADCAST, "yiaddr": dhcp.NO_ADDRESS}),
    "firmware-uefi-request-4011": Case(
        pxe_request(kind=dhcp.DHCPREQUEST, ciaddr="192.0.2.177", flags=0), port=dhcp.PXE_PORT,
        expect={"type": ACK, "siaddr": "192.0.2.1", "sname": "192.0.2.1", "file": "ipxe.efi",
                "ciaddr": "192.0.2.177", "flags": 0, 54: bytes([192, 0, 2, 2])}),
    "firmware-arch-9-request-4011": Case(
        pxe_request(kind=dhcp.DHCPREQUEST, arch=dhcp.ARCH_EBC, ciaddr="192.0.2.177"), port=dhcp.PXE_PORT,
        config={"uefi_boot_file": "snponly.efi"}, expect={"type": ACK, "file": "snponly.efi"}),
    "firmware-bios-inform-4011": Case(
        pxe_request(kind=dhcp.DHCPINFORM, arch=dhcp.ARCH_X86_BIOS, ciaddr="192.0.2.177"), port=dhcp.PXE_PORT,
        expect={"type": ACK, "file": "undionly.kpxe", "siaddr": "192.0.2.1"}),
    # Secure Boot (the task's target says so): firmware gets shim, which then loads the signed GRUB
    "signed-uefi-discover": Case(pxe_request(), chain=BootChain.SIGNED, expect={"type": OFFER, "file": ""}),
    "signed-uefi-request-4011": Case(
        pxe_request(kind=dhcp.DHCPREQUEST, ciaddr="192.0.2.177"), port=dhcp.PXE_PORT, chain=BootChain.SIGNED,
        expect={"type": ACK, "siaddr": "192.0.2.1", "file": "shimx64.efi"}),
    "signed-arch-9-request-4011": Case(
        pxe_request(kind=dhcp.DHCPREQUEST, arch=dhcp.ARCH_EBC, ciaddr="192.0.2.177"), port=dhcp.PXE_PORT,
        chain=BootChain.SIGNED, config={"uefi_boot_file": "snponly.efi"}, expect={"type": ACK, "file": "shimx64.efi"}),
    # a machine that runs iPXE has Secure Boot off, whatever its task says: the script at once
    "signed-but-ipxe": Case(pxe_request(ipxe=True), chain=BootChain.SIGNED, expect={**OFFER_TO_IPXE, 97: bytes(17)}),
    "signed-bios-inform-4011": Case(
        pxe_request(kind=dhcp.DHCPINFORM, arch=dhcp.ARCH_X86_BIOS, ciaddr="192.0.2.177"), port=dhcp.PXE_PORT,
        chain=BootChain.SIGNED, expect={"type": ACK, "file": "undionly.kpxe"}),
    "firmware-no-uuid": Case(pxe_request(options={dhcp.OPT_CLIENT_UUID: None}), expect={"type": OFFER, 97: None}),
    # iPXE: the script URL at once, in any form it announces itself
    "ipxe-bios": Case(pxe_request(ipxe=True, arch=dhcp.ARCH_X86_BIOS), expect=OFFER_TO_IPXE),
    "ipxe-uefi": Case(pxe_request(ipxe=True), expect={**OFFER_TO_IPXE, 97: bytes(17)}),
    "ipxe-user-class-rfc3004": Case(pxe_request(options={dhcp.OPT_USER_CLASS: b"\x04iPXE"}), expect=OFFER_TO_IPXE),
    "ipxe-option-175-alone": Case(pxe_request(options={dhcp.OPT_IPXE_ENCAP: IPXE_ENCAP}), expect=OFFER_TO_IPXE),
    "ipxe-request-4011": Case(pxe_request(ipxe=True, kind=dhcp.DHCPREQUEST, ciaddr="192.0.2.177"),
                              port=dhcp.PXE_PORT, expect={**OFFER_TO_IPXE, "type": ACK, "sname": ""}),
    "ipxe-relayed": Case(pxe_request(ipxe=True, giaddr="198.51.100.1"), expect={"giaddr": "198.51.100.1"}),
    "ipxe-url-too-long": Case(pxe_request(ipxe=True), config={"script_url": lambda mac: "http://x/" + "a" * 120}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case):
    config = replace(LAB, **case.config)
    reply = decide(case.packet, case.port, lambda mac: case.chain, config)
    if case.expect is None:
        assert reply is None
        return
    assert reply is not None
    assert (reply.op, reply.xid, reply.chaddr) == (dhcp.BOOTREPLY, case.packet.xid, case.packet.chaddr)
    assert reply.yiaddr == dhcp.NO_ADDRESS
    for key, value in case.expect.items():
        if key == "type":
            assert reply.message_type == value
        elif isinstance(key, int):
            assert reply.options.get(key) == value, f"option {key}"
        else:
            assert getattr(reply, key) == value, key
    assert dhcp.parse(reply.to_bytes()) == reply


def test_lookup_failure_is_ignored_and_logged(caplog):
    def broken(mac):
        raise RuntimeError("database is down")

    with caplog.at_level(logging.ERROR, logger="octoprov.netboot.proxydhcp"):
        assert decide(pxe_request(ipxe=True), dhcp.SERVER_PORT, broken, LAB) is None
    assert "database is down" in caplog.text


@pytest.mark.parametrize(
    "packet, config",
    [
        pytest.param(pxe_request(arch=dhcp.ARCH_X86_UEFI), {}, id="unsupported-arch"),
        pytest.param(pxe_request(options={dhcp.OPT_VENDOR_CLASS: None}), {}, id="not-pxe"),
    ],
)
def test_no_lookup_when_it_cannot_matter(packet, config):
    decide(packet, dhcp.SERVER_PORT, never_called, replace(LAB, **config))


def test_script_url_gets_the_canonical_mac():
    asked = []
    config = replace(LAB, script_url=lambda mac: asked.append(mac) or SCRIPT_URL)
    decide(pxe_request(ipxe=True, mac="52:54:00:C0:FF:EE"), dhcp.SERVER_PORT, lab_active, config)
    assert asked == [LAB_MAC]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"server_address": dhcp.NO_ADDRESS}, id="unspecified-server"),
        pytest.param({"proxy_address": "255.255.255.255"}, id="broadcast-proxy"),
        pytest.param({"server_address": "boot.example"}, id="hostname"),
        pytest.param({"uefi_boot_file": ""}, id="empty-file"),
        pytest.param({"bios_boot_file": "a" * 128}, id="file-too-long"),
    ],
)
def test_boot_config_rejects(overrides):
    with pytest.raises(ValueError):
        replace(LAB, **overrides)


def test_boot_config_from_settings():
    s = Settings(boot_server_address="192.0.2.10", public_url="http://192.0.2.10:8080/", uefi_boot_file="snponly.efi")
    config = BootConfig.from_settings(s)
    assert (config.server_address, config.proxy_address, config.uefi_boot_file) == ("192.0.2.10", "192.0.2.10",
                                                                                     "snponly.efi")
    assert config.script_url(LAB_MAC) == f"http://192.0.2.10:8080/api/v1/provisioning/pxe/chain.ipxe?mac={LAB_MAC}"
    with pytest.raises(ValueError, match="BOOT_SERVER_ADDRESS"):
        BootConfig.from_settings(Settings())


@pytest.mark.parametrize(
    "request_header, port, source, expected",
    [
        pytest.param({"ciaddr": "192.0.2.177"}, 4011, ("192.0.2.177", 4011), ("192.0.2.177", 4011), id="ovmf-4011"),
        pytest.param({"ciaddr": "192.0.2.177"}, 4011, ("192.0.2.177", 68), ("192.0.2.177", 68), id="ipxe-4011"),
        pytest.param({}, 4011, ("192.0.2.50", 4011), ("192.0.2.50", 4011), id="4011-without-ciaddr"),
        pytest.param({}, 67, (dhcp.NO_ADDRESS, 68), ("255.255.255.255", 68), id="no-address-broadcast"),
        pytest.param({"flags": 0x8000, "ciaddr": "192.0.2.177"}, 67, ("192.0.2.177", 68), ("255.255.255.255", 68),
                     id="broadcast-flag"),
        pytest.param({"flags": 0, "ciaddr": "192.0.2.177"}, 67, ("192.0.2.177", 68), ("192.0.2.177", 68),
                     id="unicast-ciaddr"),
        pytest.param({"giaddr": "198.51.100.1"}, 67, ("198.51.100.1", 67), ("198.51.100.1", 67), id="relay"),
    ],
)
def test_reply_destination(request_header, port, source, expected):
    assert reply_destination(DhcpPacket(**request_header), port, source) == expected


# -- hostile input ---------------------------------------------------------------------------------

HEADER_AND_COOKIE = GOOD[:_OPTIONS_AT]


def _decide_never_raises(data: bytes) -> None:
    try:
        packet = dhcp.parse(data)
    except MalformedPacket:
        return
    for port in (dhcp.SERVER_PORT, dhcp.PXE_PORT):
        reply = decide(packet, port, lambda mac: BootChain.IPXE, LAB)
        if reply is not None:
            dhcp.parse(reply.to_bytes())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_are_malformed_or_parse(data):
    _decide_never_raises(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_options_are_malformed_or_parse(options):
    _decide_never_raises(HEADER_AND_COOKIE + options)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_real_packets_are_malformed_or_parse(data):
    raw = bytearray(GOOD if not EXCHANGES else data.draw(st.sampled_from([e.request_datagram.payload
                                                                            for e in EXCHANGES])))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _decide_never_raises(bytes(raw[: data.draw(st.integers(0, len(raw)))]))


# -- the server on the loopback --------------------------------------------------------------------


def recorded_ipxe_discover() -> bytes:
    """The BIOS iPXE ROM's DISCOVER as recorded, or an equivalent one without the captures."""
    for e in EXCHANGES:
        if e.request.message_type == dhcp.DHCPDISCOVER and dhcp.is_ipxe(e.request):
            return e.request_datagram.payload
    return pxe_request(ipxe=True, arch=dhcp.ARCH_X86_BIOS).to_bytes()


def recorded_ovmf_4011_request() -> DhcpPacket:
    for e in EXCHANGES:
        if e.request_datagram.dst_port == dhcp.PXE_PORT:
            return e.request
    return pxe_request(kind=dhcp.DHCPREQUEST, ciaddr="192.0.2.177", flags=0)


@pytest.fixture
def client():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


@pytest.fixture
def make_server(client):
    servers = []

    def make(is_active=lab_active, broadcast_address="127.0.0.1", interface=""):
        # Broadcast answers go to the loopback too: nothing leaves this machine.
        server = ProxyDhcpServer(LAB, is_active, host="127.0.0.1", dhcp_port=0, pxe_port=0, interface=interface,
                                 client_port=client.getsockname()[1], broadcast_address=broadcast_address)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def answer(client) -> DhcpPacket:
    data, _ = client.recvfrom(2048)
    return dhcp.parse(data)


@pytest.mark.parametrize(
    "ciaddr, flags, broadcast_address",
    [
        # The broadcast "address" is the loopback, so the answer only arrives if it was broadcast.
        pytest.param(None, None, "127.0.0.1", id="broadcast"),
        # The broadcast address leads nowhere, so the answer only arrives if it went to ciaddr.
        pytest.param("127.0.0.1", 0, "127.0.0.2", id="unicast-to-ciaddr"),
    ],
)
def test_server_offers_over_udp(client, make_server, ciaddr, flags, broadcast_address):
    server = make_server(broadcast_address=broadcast_address)
    assert server.dhcp_port and server.pxe_port and server.dhcp_port != server.pxe_port
    request = dhcp.parse(recorded_ipxe_discover())
    if ciaddr is not None:
        request = replace(request, ciaddr=ciaddr, flags=flags)
    client.sendto(request.to_bytes(), ("127.0.0.1", server.dhcp_port))
    offer = answer(client)
    assert (offer.message_type, offer.xid, offer.file, offer.siaddr) == (OFFER, request.xid, SCRIPT_URL, "192.0.2.1")
    wait_for(lambda: server.stats["answered"] == 1)
    assert server.stats == {"received": 1, "answered": 1, "ignored": 0, "malformed": 0, "failed": 0}


def test_server_answers_4011_where_the_request_came_from(client, make_server):
    server = make_server()
    request = replace(recorded_ovmf_4011_request(), ciaddr="127.0.0.1")
    client.sendto(request.to_bytes(), ("127.0.0.1", server.pxe_port))
    ack = answer(client)
    assert (ack.message_type, ack.xid, ack.file, ack.sname, ack.ciaddr) == (ACK, request.xid, "ipxe.efi",
                                                                          "192.0.2.1", "127.0.0.1")


def test_server_survives_garbage_and_failing_lookups(client, make_server):
    calls = []

    def flaky(mac):
        calls.append(mac)
        if len(calls) == 1:
            raise RuntimeError("database is down")
        return BootChain.IPXE if mac == LAB_MAC else None

    server = make_server(is_active=flaky)
    target = ("127.0.0.1", server.dhcp_port)
    for garbage in (b"", b"garbage", bytes(300), recorded_ipxe_discover()[:200]):
        client.sendto(garbage, target)
    client.sendto(recorded_ipxe_discover(), target)  # lookup fails: ignored
    client.sendto(pxe_request(ipxe=True, mac="52:54:00:00:00:01").to_bytes(), target)  # no task: ignored
    client.sendto(recorded_ipxe_discover(), target)  # answered
    assert answer(client).file == SCRIPT_URL
    wait_for(lambda: server.stats["answered"] == 1)
    assert server.stats == {"received": 7, "answered": 1, "ignored": 2, "malformed": 4, "failed": 0}


def test_server_bound_to_an_interface(client, make_server):
    server = make_server(interface="lo")
    client.sendto(recorded_ipxe_discover(), ("127.0.0.1", server.dhcp_port))
    assert answer(client).file == SCRIPT_URL


def test_server_refuses_a_missing_interface(make_server):
    with pytest.raises(OSError):
        make_server(interface="octoprov-none0")


def test_server_start_stop(make_server):
    server = make_server()
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()


def test_pktinfo_reports_the_arrival_interface_and_address(client):
    # What the server answers through: the interface and local address of each datagram.
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        pktinfo.enable(receiver)
        receiver.bind(("127.0.0.1", 0))
        client.sendto(b"x", receiver.getsockname())
        _data, ancdata, _flags, _source = receiver.recvmsg(64, pktinfo.ANCILLARY_SIZE)
    finally:
        receiver.close()
    assert pktinfo.arrival(ancdata) == pktinfo.Arrival(socket.if_nametoindex("lo"), "127.0.0.1", "127.0.0.1")
    assert pktinfo.local_address(ancdata) == "127.0.0.1"
    assert pktinfo.arrival([]) is None and pktinfo.local_address([]) == ""


def test_server_ignores_requests_from_another_interface(client, make_server):
    # The interface setting holds even where SO_BINDTODEVICE is refused: the arrival interface is checked.
    server = make_server(interface="lo")
    elsewhere = pktinfo.Arrival(socket.if_nametoindex("lo") + 1000, "192.0.2.2", "255.255.255.255")
    server.handle(client, dhcp.SERVER_PORT, recorded_ipxe_discover(), ("0.0.0.0", 68), elsewhere)  # noqa: S104
    assert server.stats == {"received": 1, "answered": 0, "ignored": 1, "malformed": 0, "failed": 0}
