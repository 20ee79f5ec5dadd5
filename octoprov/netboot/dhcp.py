"""A small, strict DHCP/BOOTP packet model (RFC 2131/2132) with decoders for the options PXE
and iPXE clients send (RFC 4578, PXE 2.1, iPXE's own).

Strict on purpose: the ProxyDHCP server reads packets from anyone on the segment, so
anything that does not parse cleanly raises :class:`MalformedPacket` and is dropped,
instead of being half-understood.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

# -- header ----------------------------------------------------------------------------------------
BOOTREQUEST = 1  # op: client to server
BOOTREPLY = 2  # op: server to client
HTYPE_ETHERNET = 1  # htype: 10 Mb Ethernet (all Ethernet), hlen 6
FLAG_BROADCAST = 0x8000  # flags: the client cannot take unicast before it has an address
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 3: options follow; without it the packet is plain BOOTP
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # op .. file: the 236-byte fixed part
HEADER_LENGTH = _HEADER.size  # 236: the magic cookie starts here
NO_ADDRESS = "0.0.0.0"  # noqa: S104 - an empty address field in a DHCP header, nothing binds to it
MIN_PACKET_LENGTH = 300  # RFC 1542 2.1: relays and old clients may drop shorter BOOTP messages

# -- well-known ports ------------------------------------------------------------------------------
SERVER_PORT = 67  # DHCP/BOOTP server: where clients broadcast DISCOVER and REQUEST
CLIENT_PORT = 68  # DHCP/BOOTP client
PXE_PORT = 4011  # PXE boot server (ProxyDHCP): firmware asks here for its boot file after getting an address

# -- message types (option 53) ---------------------------------------------------------------------
DHCPDISCOVER = 1  # client looks for servers (broadcast)
DHCPOFFER = 2  # server offers an address, or a ProxyDHCP offers boot information
DHCPREQUEST = 3  # client takes an offer; to port 4011: PXE firmware asks for its boot file
DHCPDECLINE = 4  # client found the offered address in use
DHCPACK = 5  # server confirms; a ProxyDHCP's answer on port 4011
DHCPNAK = 6  # server refuses a REQUEST
DHCPRELEASE = 7  # client gives its address back
DHCPINFORM = 8  # client with an address asks for parameters only
MESSAGE_TYPES = {  # names for logs and test ids
    DHCPDISCOVER: "DISCOVER", DHCPOFFER: "OFFER", DHCPREQUEST: "REQUEST", DHCPDECLINE: "DECLINE",
    DHCPACK: "ACK", DHCPNAK: "NAK", DHCPRELEASE: "RELEASE", DHCPINFORM: "INFORM",
}

# -- option codes ----------------------------------------------------------------------------------
OPT_PAD = 0  # a single filler byte, no length
OPT_VENDOR_SPECIFIC = 43  # vendor-encapsulated options; for vendor class PXEClient: PXE sub-options below
OPT_REQUESTED_IP = 50  # the address a client asks for in REQUEST
OPT_OVERLOAD = 52  # sname/file carry options too; ignored here (no PXE client uses it)
OPT_MESSAGE_TYPE = 53  # DHCP message type (DISCOVER, OFFER, ...)
OPT_SERVER_ID = 54  # the answering server's address; PXE clients send their 4011 request there
OPT_PARAMETER_LIST = 55  # option codes the client wants
OPT_MAX_MESSAGE_SIZE = 57  # largest DHCP message the client accepts
OPT_VENDOR_CLASS = 60  # "PXEClient:Arch:xxxxx:UNDI:yyyzzz" from PXE firmware, "HTTPClient..." from UEFI HTTP boot
OPT_CLIENT_ID = 61  # client identifier; iPXE sends 01 + MAC, OVMF none
OPT_TFTP_SERVER = 66  # TFTP server name (the sname field does the same job)
OPT_BOOTFILE = 67  # boot file name (the file field does the same job)
OPT_USER_CLASS = 77  # user class: iPXE sends the raw bytes "iPXE", RFC 3004 wants length-prefixed items
OPT_CLIENT_ARCH = 93  # RFC 4578 client system architecture: one or more uint16
OPT_CLIENT_NDI = 94  # RFC 4578 network device interface: type 1 (UNDI), major, minor
OPT_CLIENT_UUID = 97  # RFC 4578 client machine identifier: type 0 + 16-byte UUID; PXE servers echo it
OPT_IPXE_ENCAP = 175  # iPXE's encapsulated options (version, features); only iPXE sends it
OPT_END = 255  # end of options, no length

# Options whose length RFC 2132/4578 fixes: a different length means a broken or hostile sender.
_EXACT_LENGTHS = {
    OPT_REQUESTED_IP: 4, OPT_MESSAGE_TYPE: 1, OPT_SERVER_ID: 4, OPT_MAX_MESSAGE_SIZE: 2, OPT_CLIENT_NDI: 3,
    OPT_CLIENT_UUID: 17,
}
# Options that must carry at least this many bytes (RFC 2132 minimum lengths).
_MIN_LENGTHS = {OPT_PARAMETER_LIST: 1, OPT_VENDOR_CLASS: 1, OPT_CLIENT_ID: 2, OPT_USER_CLASS: 1, OPT_CLIENT_ARCH: 2}

# -- client architectures (option 93, IANA "Processor Architecture Types") ---------------------------
ARCH_X86_BIOS = 0  # x86 BIOS (legacy PXE)
ARCH_X86_UEFI = 6  # x86 (32-bit) UEFI
ARCH_X64_UEFI = 7  # x86-64 UEFI
ARCH_EBC = 9  # EFI byte code by the registry; x86-64 UEFI firmware sends it in the wild
ARCH_X64_UEFI_HTTP = 16  # x86-64 UEFI HTTP boot

# -- PXE sub-options inside option 43 (PXE 2.1 spec, table 2-1) -------------------------------------
PXE_DISCOVERY_CONTROL = 6  # bit field: 8 = "a boot file is given: download it, skip boot server discovery"
PXE_BOOT_SERVERS = 8  # list of boot servers by type
PXE_BOOT_MENU = 9  # boot menu entries; its presence alone makes iPXE accept a ProxyDHCP answer
PXE_MENU_PROMPT = 10  # timeout + prompt text of the boot menu
DISCOVERY_USE_BOOTFILE = 0x08  # value of sub-option 6: use the file from this packet, no discovery

# -- iPXE sub-options inside option 175 (iPXE include/ipxe/dhcp.h) -----------------------------------
IPXE_PXEEXT = 16  # PXE API extensions
IPXE_HTTP = 19  # HTTP protocol supported
IPXE_TFTP = 21  # TFTP protocol supported
IPXE_EFI = 36  # EFI image format supported
IPXE_BUS_ID = 177  # bus type + vendor/device of the NIC
IPXE_VERSION = 235  # major, minor, patch

IPXE_USER_CLASS = b"iPXE"  # option 77 value iPXE sends


class MalformedPacket(ValueError):
    """The bytes are not a DHCP packet we can trust: short, no magic cookie, an option past the end,
    an option of the wrong length."""


def _ip(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _packed(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def _field(raw: bytes) -> str:
    # sname/file are NUL-terminated strings; latin-1 keeps every byte, so parse/to_bytes round-trip.
    return raw.split(b"\0", 1)[0].decode("latin-1")


@dataclass
class DhcpPacket:
    """One DHCP message. Addresses are dotted-quad strings, ``chaddr`` the 16 raw bytes,
    ``sname``/``file`` strings, ``options`` code → value in the order they appeared."""

    op: int = BOOTREQUEST
    htype: int = HTYPE_ETHERNET
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = NO_ADDRESS
    yiaddr: str = NO_ADDRESS
    siaddr: str = NO_ADDRESS
    giaddr: str = NO_ADDRESS
    chaddr: bytes = bytes(16)
    sname: str = ""
    file: str = ""
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def mac(self) -> str:
        """The hardware address as lowercase colon-separated octets (``hlen`` bytes of ``chaddr``)."""
        return ":".join(f"{b:02x}" for b in self.chaddr[: self.hlen])

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)

    @property
    def message_type(self) -> int | None:
        return message_type(self)

    @classmethod
    def parse(cls, data: bytes) -> DhcpPacket:
        return parse(data)

    def to_bytes(self) -> bytes:
        """The wire form: header, magic cookie, options, end, padded to the BOOTP minimum of 300 bytes."""
        sname, file = self.sname.encode("latin-1"), self.file.encode("latin-1")
        if len(sname) > 64 or len(file) > 128:
            raise ValueError("sname holds at most 64 bytes and file 128")
        if len(self.chaddr) > 16 or self.hlen > 16:
            raise ValueError("chaddr holds at most 16 bytes")
        header = _HEADER.pack(
            self.op, self.htype, self.hlen, self.hops, self.xid, self.secs, self.flags,
            _packed(self.ciaddr), _packed(self.yiaddr), _packed(self.siaddr), _packed(self.giaddr),
            self.chaddr.ljust(16, b"\0"), sname, file,
        )
        body = bytearray(header + MAGIC_COOKIE)
        for code, value in self.options.items():
            if code in (OPT_PAD, OPT_END) or not 0 < code < 255:
                raise ValueError(f"option code {code} cannot carry a value")
            # RFC 3396: a value longer than 255 bytes goes out as consecutive options with the same code.
            chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [b""]
            for chunk in chunks:
                body += bytes((code, len(chunk))) + chunk
        body.append(OPT_END)
        return bytes(body.ljust(MIN_PACKET_LENGTH, b"\0"))


def parse(data: bytes) -> DhcpPacket:
    """Parse a DHCP message; raise :class:`MalformedPacket` for anything off."""
    if len(data) < HEADER_LENGTH + len(MAGIC_COOKIE):
        raise MalformedPacket(f"{len(data)} bytes: shorter than a DHCP header")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = _HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16:
        raise MalformedPacket(f"hardware address length {hlen} exceeds chaddr's 16 bytes")
    if data[HEADER_LENGTH : HEADER_LENGTH + 4] != MAGIC_COOKIE:
        raise MalformedPacket("no DHCP magic cookie (plain BOOTP or not DHCP at all)")
    return DhcpPacket(
        op=op, htype=htype, hlen=hlen, hops=hops, xid=xid, secs=secs, flags=flags,
        ciaddr=_ip(ciaddr), yiaddr=_ip(yiaddr), siaddr=_ip(siaddr), giaddr=_ip(giaddr),
        chaddr=chaddr, sname=_field(sname), file=_field(file),
        options=_parse_options(data, HEADER_LENGTH + 4),
    )


def _parse_options(data: bytes, start: int) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    offset = start
    while True:
        if offset >= len(data):
            raise MalformedPacket("options end without the end option (255)")
        code = data[offset]
        if code == OPT_END:
            break  # what follows is padding
        if code == OPT_PAD:
            offset += 1
            continue
        if offset + 2 > len(data):
            raise MalformedPacket(f"option {code} has no length byte")
        length = data[offset + 1]
        value = data[offset + 2 : offset + 2 + length]
        if len(value) != length:
            raise MalformedPacket(f"option {code} runs past the end of the packet")
        # RFC 3396: repeated codes are one long option split in pieces.
        options[code] = options.get(code, b"") + value
        offset += 2 + length
    for code, value in options.items():
        if code in _EXACT_LENGTHS and len(value) != _EXACT_LENGTHS[code]:
            raise MalformedPacket(f"option {code} has {len(value)} bytes, not {_EXACT_LENGTHS[code]}")
        if len(value) < _MIN_LENGTHS.get(code, 0):
            raise MalformedPacket(f"option {code} has {len(value)} bytes, fewer than {_MIN_LENGTHS[code]}")
    if OPT_CLIENT_ARCH in options and len(options[OPT_CLIENT_ARCH]) % 2:
        raise MalformedPacket("option 93 must be a list of 16-bit architecture types")
    return options


# -- decoders --------------------------------------------------------------------------------------


def message_type(packet: DhcpPacket) -> int | None:
    """Option 53, or None for plain BOOTP."""
    value = packet.options.get(OPT_MESSAGE_TYPE)
    return value[0] if value else None


def vendor_class(packet: DhcpPacket) -> bytes | None:
    """Option 60 raw bytes, e.g. ``b"PXEClient:Arch:00007:UNDI:003000"``."""
    return packet.options.get(OPT_VENDOR_CLASS)


def client_arch(packet: DhcpPacket) -> int | None:
    """The first architecture of option 93 (RFC 4578 allows a list; firmware sends one)."""
    value = packet.options.get(OPT_CLIENT_ARCH)
    if not value:
        return None
    arch: int = struct.unpack_from("!H", value)[0]
    return arch


def client_ndi(packet: DhcpPacket) -> tuple[int, int, int] | None:
    """Option 94: (interface type, major, minor); type 1 is UNDI."""
    value = packet.options.get(OPT_CLIENT_NDI)
    return (value[0], value[1], value[2]) if value else None


def client_uuid(packet: DhcpPacket) -> bytes | None:
    """The 16 UUID bytes of option 97; a type other than 0 is not defined, so it is malformed."""
    value = packet.options.get(OPT_CLIENT_UUID)
    if value is None:
        return None
    if value[0] != 0:
        raise MalformedPacket(f"option 97 type {value[0]} is not 0 (the only defined type)")
    return value[1:]


def user_classes(packet: DhcpPacket) -> list[bytes]:
    """The user classes of option 77: RFC 3004 length-prefixed items when the value splits cleanly
    into them, else the whole value as one class (iPXE sends the raw bytes ``iPXE``)."""
    value = packet.options.get(OPT_USER_CLASS)
    if not value:
        return []
    items, offset = [], 0
    while offset < len(value):
        length = value[offset]
        item = value[offset + 1 : offset + 1 + length]
        if length == 0 or len(item) != length:
            return [value]  # not RFC 3004: raw form
        items.append(item)
        offset += 1 + length
    return items


def is_ipxe(packet: DhcpPacket) -> bool:
    """iPXE says so in option 77 (either form) and always sends its option 175."""
    return OPT_IPXE_ENCAP in packet.options or IPXE_USER_CLASS in user_classes(packet)


def decode_suboptions(data: bytes) -> dict[int, bytes]:
    """Encapsulated options (43, 175): code/length/value, 0 is padding, 255 ends them."""
    result: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        code = data[offset]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            offset += 1
            continue
        if offset + 2 > len(data) or offset + 2 + data[offset + 1] > len(data):
            raise MalformedPacket(f"sub-option {code} runs past the end of its option")
        length = data[offset + 1]
        result[code] = result.get(code, b"") + data[offset + 2 : offset + 2 + length]
        offset += 2 + length
    return result


def encode_suboptions(suboptions: dict[int, bytes]) -> bytes:
    """Encapsulated options followed by the end marker, as PXE 2.1 wants for option 43."""
    out = bytearray()
    for code, value in suboptions.items():
        if len(value) > 255:
            raise ValueError(f"sub-option {code} is longer than 255 bytes")
        out += bytes((code, len(value))) + value
    out.append(OPT_END)
    return bytes(out)


def pxe_options(packet: DhcpPacket) -> dict[int, bytes]:
    """PXE sub-options of option 43 (discovery control, boot servers, menu, prompt)."""
    return decode_suboptions(packet.options.get(OPT_VENDOR_SPECIFIC, b""))


def ipxe_options(packet: DhcpPacket) -> dict[int, bytes]:
    """iPXE's sub-options of option 175 (version, bus id, one per feature)."""
    return decode_suboptions(packet.options.get(OPT_IPXE_ENCAP, b""))
