"""ProxyDHCP (PXE 2.1): answer PXE and iPXE clients with boot information only, beside the
site's DHCP server, which keeps handing out the addresses.

:func:`decide` is the whole policy, a pure function of one request; :class:`ProxyDhcpServer`
only moves bytes. What the answers look like and why is in ``docs/proxydhcp.md``; the tests
replay packets recorded from real firmware and compare with what dnsmasq answered.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from octoprov.netboot import dhcp, pktinfo
from octoprov.netboot.chain import BootChain
from octoprov.netboot.dhcp import DhcpPacket, MalformedPacket
from octoprov.netboot.metrics import PxeMetrics
from octoprov.settings import Settings
from octoprov.validation.macs import canonical_mac

log = logging.getLogger(__name__)

PXE_CLIENT = b"PXEClient"  # option 60 prefix of PXE firmware and iPXE; also what a PXE server answers
HTTP_CLIENT = b"HTTPClient"  # option 60 prefix of UEFI HTTP boot; the answer must say HTTPClient too
BIOS_ARCHES = frozenset({dhcp.ARCH_X86_BIOS})
UEFI_ARCHES = frozenset({dhcp.ARCH_X64_UEFI, dhcp.ARCH_EBC})  # 9 is x86-64 UEFI on real machines
HTTP_BOOT_ARCHES = frozenset({dhcp.ARCH_X64_UEFI_HTTP})
MAX_FILE = 127  # the file field's 128 bytes less the NUL; iPXE reads its boot file only from there


@dataclass(frozen=True)
class BootConfig:
    """Where PXE clients get their boot files.

    ``server_address`` is the boot (TFTP) server that goes in siaddr; ``proxy_address`` is this
    ProxyDHCP server's own address (option 54, and where firmware sends its port-4011 request).
    ``script_url(mac)`` gives the HTTP URL of a machine's iPXE script; it receives the
    canonical MAC of the client. ``signed_boot_file`` is what UEFI firmware gets when the machine's
    task says it enforces Secure Boot: shim, which then loads GRUB from the same TFTP folder.
    """

    server_address: str
    proxy_address: str
    script_url: Callable[[str], str]
    uefi_boot_file: str = "ipxe.efi"
    bios_boot_file: str = "undionly.kpxe"
    signed_boot_file: str = "shimx64.efi"
    boot_unknown: bool = False
    # UEFI HTTP boot firmware loads an EFI binary from a URL and runs no script: the URL of iPXE on
    # the boot-files endpoint, which then asks again as iPXE and gets its script. Empty: not answered.
    http_boot_url: str = ""

    def __post_init__(self) -> None:
        for name in ("server_address", "proxy_address"):
            address = ipaddress.IPv4Address(getattr(self, name))  # ValueError names the bad value
            if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
                raise ValueError(f"{name} must be a unicast IPv4 address, not {address}")
        for name in ("uefi_boot_file", "bios_boot_file", "signed_boot_file"):
            value = getattr(self, name)
            if not value or not value.isascii() or len(value) > MAX_FILE:
                raise ValueError(f"{name} must be 1 to {MAX_FILE} ASCII characters")

    @classmethod
    def from_settings(cls, settings: Settings, proxy_address: str | None = None) -> BootConfig:
        """The configuration the running service uses. The script URL is the chain script with the
        MAC the client sent in chaddr, not iPXE's ``${net0/mac}``: that is the NIC actually booting.
        The chain script adds the SMBIOS strings (for driver matching) when it asks for the boot script."""
        if not settings.boot_server_address:
            raise ValueError("OCTOPROV_BOOT_SERVER_ADDRESS must be set for the ProxyDHCP server")
        base = settings.effective_public_url
        return cls(
            server_address=settings.boot_server_address,
            proxy_address=proxy_address or settings.boot_server_address,
            script_url=lambda mac: f"{base}/api/v1/provisioning/pxe/chain.ipxe?mac={mac}",
            uefi_boot_file=settings.uefi_boot_file,
            boot_unknown=settings.boot_unknown_machines,
            http_boot_url=f"{base}/boot/efi/{settings.uefi_boot_file}",
        )


def decide(
    packet: DhcpPacket, port: int, lookup: Callable[[str], BootChain | None], config: BootConfig
) -> DhcpPacket | None:
    """The answer to one request, or None to stay silent.

    ``port`` is the well-known port the request arrived on: 67 (``dhcp.SERVER_PORT``) or 4011
    (``dhcp.PXE_PORT``). ``lookup(mac)`` gives the boot chain of the machine's active task, or
    None when it has none; it is asked last, so only a packet we would answer costs a lookup, and
    if it raises, the request is ignored (and logged) rather than answered on a guess. A machine
    answered only because unknown machines are booted (``boot_unknown``) gets the iPXE chain.
    """
    # Only client requests; our own and other servers' replies arrive on port 67 too.
    if packet.op != dhcp.BOOTREQUEST:
        return None
    kind = dhcp.message_type(packet)
    # On 67 only DISCOVER: the client's REQUEST there selects the site server's lease (option 54
    # names it). On 4011 firmware asks for its boot file with REQUEST (INFORM from some ROMs).
    if port not in (dhcp.SERVER_PORT, dhcp.PXE_PORT):
        return None
    if port == dhcp.SERVER_PORT and kind != dhcp.DHCPDISCOVER:
        return None
    if port == dhcp.PXE_PORT and kind not in (dhcp.DHCPREQUEST, dhcp.DHCPINFORM):
        return None
    # PXE clients say so in option 60 (UEFI HTTP boot says HTTPClient); everyone else, such as
    # an installed OS renewing its lease, is the site DHCP server's business.
    vendor = dhcp.vendor_class(packet) or b""
    if not vendor.startswith((PXE_CLIENT, HTTP_CLIENT)):
        return None
    # Real firmware always sends its architecture; without it we cannot pick a boot file.
    arch = dhcp.client_arch(packet)
    if arch is None:
        return None
    if packet.htype != dhcp.HTYPE_ETHERNET or packet.hlen != 6:
        return None
    try:
        mac = canonical_mac(packet.mac)
    except ValueError:
        return None  # all-zero, broadcast or multicast chaddr: not a network card
    if arch not in BIOS_ARCHES | UEFI_ARCHES | HTTP_BOOT_ARCHES:
        log.info("ProxyDHCP: %s has architecture %d, for which there is no boot file; ignored", mac, arch)
        return None
    try:
        chain = lookup(mac)
    except Exception:
        log.exception("ProxyDHCP: looking up %s failed; request ignored", mac)
        return None
    if chain is None and not config.boot_unknown:
        log.debug("ProxyDHCP: %s has no active task; ignored", mac)
        return None

    http_boot = arch in HTTP_BOOT_ARCHES
    ipxe = dhcp.is_ipxe(packet)
    if ipxe:
        # iPXE fetches the script over HTTP at once: no chainload, so an iPXE ROM can never be sent
        # round the loop to load iPXE again.
        boot_file = config.script_url(mac)
    elif http_boot:
        if chain is BootChain.SIGNED or not config.http_boot_url:
            # shim would fetch GRUB over HTTP, and GRUB 2.06 reaches no HTTP port but 80: such a machine
            # boots by PXE (its firmware tries that too), where the signed chain works
            log.info("ProxyDHCP: %s asks for UEFI HTTP boot, not offered %s; ignored", mac,
                     "under Secure Boot" if config.http_boot_url else "(no URL)")
            return None
        boot_file = config.http_boot_url
    elif arch in BIOS_ARCHES:
        boot_file = config.bios_boot_file
    elif chain is BootChain.SIGNED:
        boot_file = config.signed_boot_file
    else:
        boot_file = config.uefi_boot_file
    if not boot_file.isascii() or len(boot_file) > MAX_FILE:
        log.error("ProxyDHCP: boot file %r for %s is not ASCII or longer than the file field's %d bytes; "
                  "not answered", boot_file, mac, MAX_FILE)
        return None

    reply = DhcpPacket(
        op=dhcp.BOOTREPLY,
        htype=packet.htype,
        hlen=packet.hlen,
        xid=packet.xid,  # the client matches answers to its request by xid
        # A client without an address cannot take unicast, so the OFFER is broadcast and says so
        # (relays then broadcast it too); on 4011 the client has an address: echo its flags.
        flags=(packet.flags | dhcp.FLAG_BROADCAST) if port == dhcp.SERVER_PORT else packet.flags,
        ciaddr=packet.ciaddr,  # echoed (RFC 2131 table 3); set on 4011, where the reply goes
        yiaddr=dhcp.NO_ADDRESS,  # a ProxyDHCP leases nothing: the site server gives the address
        giaddr=packet.giaddr,  # echoed so a relay agent can forward the answer
        chaddr=packet.chaddr,  # the client accepts only answers to its own hardware address
    )
    options: dict[int, bytes] = {}
    if port == dhcp.SERVER_PORT:
        options[dhcp.OPT_MESSAGE_TYPE] = bytes([dhcp.DHCPOFFER])  # the answer to a DISCOVER
    else:
        options[dhcp.OPT_MESSAGE_TYPE] = bytes([dhcp.DHCPACK])  # the answer to a 4011 REQUEST
    # PXE clients take a proxy offer only with a server identifier; it is also where PXE 2.1
    # clients send their boot-server request.
    options[dhcp.OPT_SERVER_ID] = ipaddress.IPv4Address(config.proxy_address).packed
    # "PXEClient" marks the answer as PXE boot information (HTTPClient for HTTP boot: EDK2's
    # HttpBootDxe takes only offers that say HTTPClient).
    options[dhcp.OPT_VENDOR_CLASS] = HTTP_CLIENT if http_boot else PXE_CLIENT
    if dhcp.OPT_CLIENT_UUID in packet.options:
        # PXE 2.1 (and RFC 4578): the server echoes the client's machine identifier.
        options[dhcp.OPT_CLIENT_UUID] = packet.options[dhcp.OPT_CLIENT_UUID]

    if http_boot or ipxe:
        # iPXE drops a ProxyDHCP answer that has neither (siaddr and a file) nor a boot menu
        # (its dhcp_has_pxeopts()), so siaddr always goes with the file.
        reply.siaddr = config.server_address
        reply.file = boot_file
        if ipxe:
            # Discovery control 8: use the boot file in this packet, skip boot server discovery.
            options[dhcp.OPT_VENDOR_SPECIFIC] = dhcp.encode_suboptions(
                {dhcp.PXE_DISCOVERY_CONTROL: bytes([dhcp.DISCOVERY_USE_BOOTFILE])}
            )
    elif port == dhcp.SERVER_PORT:
        # Firmware PXE (OVMF, vendor ROMs) treats a proxy offer without PXE menu options as
        # "BINL": it always asks again on 4011, with or without a file here, and sends that
        # request to siaddr (EDK2 falls back to option 54 only if siaddr is 0). So siaddr must be
        # this server and no file is offered yet, exactly as dnsmasq does.
        reply.siaddr = config.proxy_address
    else:
        # The 4011 answer: firmware fetches the file by TFTP from siaddr (sname says the same
        # for clients that read it).
        reply.siaddr = config.server_address
        reply.sname = config.server_address
        reply.file = boot_file
    reply.options = options
    return reply


def answer_kind(reply: DhcpPacket, config: BootConfig) -> str:
    """What an answer of :func:`decide` boots, in the words of the metrics (octoprov.netboot.metrics)."""
    if reply.options.get(dhcp.OPT_VENDOR_CLASS) == HTTP_CLIENT:
        return "http_boot"
    if not reply.file:
        return "boot_server"  # firmware's port-67 offer: it asks again on 4011
    return {config.bios_boot_file: "bios", config.uefi_boot_file: "uefi",
            config.signed_boot_file: "secure_boot"}.get(reply.file, "ipxe_script")


def reply_destination(request: DhcpPacket, port: int, source: tuple[str, int],
                      *, client_port: int = dhcp.CLIENT_PORT,
                      broadcast_address: str = "255.255.255.255") -> tuple[str, int]:
    """Where the answer to ``request`` goes.

    On 4011 back to the client's address (ciaddr, else the sender) and the port it sent from:
    OVMF sends from 4011, iPXE from 68, and each listens only there. On 67, through a relay
    if one forwarded it (giaddr), else broadcast when the client asks for it or has no address
    yet, else unicast to ciaddr.
    """
    if port == dhcp.PXE_PORT:
        host = request.ciaddr if request.ciaddr != dhcp.NO_ADDRESS else source[0]
        return host, source[1]
    if request.giaddr != dhcp.NO_ADDRESS:
        return request.giaddr, dhcp.SERVER_PORT
    if request.broadcast or request.ciaddr == dhcp.NO_ADDRESS:
        return broadcast_address, client_port
    return request.ciaddr, client_port


class ProxyDhcpServer:
    """Two UDP sockets (67 and 4011) served by one thread calling :func:`decide`.

    Every answer leaves through the interface its request arrived on (IP_PKTINFO, see
    :mod:`octoprov.netboot.pktinfo`), so broadcasts need no route: an isolated boot network
    has no default route, and on a host with several networks the default route may lead
    elsewhere. ``interface`` only restricts which interface is answered.

    Port 0 picks free ports (tests); the bound ports are ``dhcp_port`` and ``pxe_port``
    after :meth:`start`. ``client_port`` and ``broadcast_address`` exist so tests can receive
    broadcast answers on the loopback instead of the network.
    """

    def __init__(
        self,
        config: BootConfig,
        lookup: Callable[[str], BootChain | None],
        *,
        host: str = "0.0.0.0",  # noqa: S104 - broadcasts reach only a socket bound to the wildcard
        dhcp_port: int = dhcp.SERVER_PORT,
        pxe_port: int = dhcp.PXE_PORT,
        interface: str = "",
        client_port: int = dhcp.CLIENT_PORT,
        broadcast_address: str = "255.255.255.255",
        metrics: PxeMetrics | None = None,
    ):
        self.config = config
        self.metrics = metrics or PxeMetrics()
        self.lookup = lookup
        self.host = host
        self.dhcp_port = dhcp_port
        self.pxe_port = pxe_port
        self.interface = interface
        self.client_port = client_port
        self.broadcast_address = broadcast_address
        self.stats = {"received": 0, "answered": 0, "ignored": 0, "malformed": 0, "failed": 0}
        self._sockets: dict[socket.socket, int] = {}  # socket -> the well-known port it stands for
        self._ifindex = 0  # index of ``interface`` after start(); 0 answers every interface
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    @classmethod
    def from_settings(cls, settings: Settings, lookup: Callable[[str], BootChain | None],
                      proxy_address: str | None = None, metrics: PxeMetrics | None = None) -> ProxyDhcpServer:
        return cls(BootConfig.from_settings(settings, proxy_address), lookup,
                   dhcp_port=settings.proxydhcp_port, pxe_port=settings.proxydhcp_pxe_port,
                   interface=settings.proxydhcp_interface, metrics=metrics)

    def _open(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Restarts must not wait for the old socket; SO_BROADCAST lets OFFERs go to 255.255.255.255.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            pktinfo.enable(sock)  # the arrival interface, to answer through it (see handle())
            if self.interface:
                self._bind_to_device(sock)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _bind_to_device(self, sock: socket.socket) -> None:
        # The kernel then delivers only this interface's requests; handle() checks the arrival
        # interface as well, so the restriction holds where this option is refused.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode() + b"\0")
        except PermissionError:
            log.warning("ProxyDHCP: not permitted to bind to interface %s (needs CAP_NET_RAW); "
                        "ignoring requests that arrive on other interfaces instead", self.interface)

    def start(self) -> None:
        """Bind both sockets and start answering; raises OSError if a port cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("ProxyDHCP server already started")
        # OSError for a name that does not exist: a typo must not silently answer nowhere.
        self._ifindex = socket.if_nametoindex(self.interface) if self.interface else 0
        dhcp_sock = self._open(self.dhcp_port)
        try:
            pxe_sock = self._open(self.pxe_port)
        except OSError:
            dhcp_sock.close()
            raise
        self.dhcp_port = dhcp_sock.getsockname()[1]
        self.pxe_port = pxe_sock.getsockname()[1]
        self._sockets = {dhcp_sock: dhcp.SERVER_PORT, pxe_sock: dhcp.PXE_PORT}
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="proxydhcp", daemon=True)
        self._thread.start()
        log.info("ProxyDHCP: answering on %s ports %d and %d", self.host, self.dhcp_port, self.pxe_port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and close the sockets; safe to call twice."""
        if self._thread is None:
            return
        assert self._wake_r is not None and self._wake_w is not None  # start() made them with the thread
        self._stop.set()
        self._wake_w.send(b"\0")
        self._thread.join(timeout)
        for sock in (*self._sockets, self._wake_r, self._wake_w):
            sock.close()
        self._sockets = {}
        self._thread = None

    def __enter__(self) -> ProxyDhcpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._wake_r is not None  # start() made it before starting this thread
        watched = [*self._sockets, self._wake_r]
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select(watched, [], [])
            except OSError:
                if self._stop.is_set():
                    return
                raise
            for sock in readable:
                if sock is self._wake_r:
                    return
                try:
                    data, ancdata, _flags, source = sock.recvmsg(65535, pktinfo.ANCILLARY_SIZE)
                except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                    log.debug("ProxyDHCP: receive failed: %s", exc)
                    continue
                self.handle(sock, self._sockets[sock], data, source, pktinfo.arrival(ancdata))

    def handle(self, sock: socket.socket, port: int, data: bytes, source: tuple[str, int],
               arrival: pktinfo.Arrival | None = None) -> None:
        """Answer one datagram; never raises, so one bad packet cannot stop the server.

        ``arrival`` (IP_PKTINFO) is where the datagram came in; the answer goes back out there.
        """
        self.stats["received"] += 1
        if self._ifindex and arrival is not None and arrival.ifindex != self._ifindex:
            self.stats["ignored"] += 1  # another network's client: not ours to boot
            self.metrics.dhcp_requests.labels("ignored").inc()
            log.debug("ProxyDHCP: request from %s:%d on interface %d ignored: answering only on %s",
                      *source, arrival.ifindex, self.interface)
            return
        try:
            request = dhcp.parse(data)
        except MalformedPacket as exc:
            self.stats["malformed"] += 1
            self.metrics.dhcp_requests.labels("malformed").inc()
            log.debug("ProxyDHCP: malformed packet from %s:%d dropped: %s", *source, exc)
            return
        try:
            reply = decide(request, port, self.lookup, self.config)
            if reply is None:
                self.stats["ignored"] += 1
                self.metrics.dhcp_requests.labels("ignored").inc()
                return
            destination = reply_destination(request, port, source, client_port=self.client_port,
                                            broadcast_address=self.broadcast_address)
            self._send(sock, reply.to_bytes(), destination, arrival)
        except Exception:
            self.stats["failed"] += 1
            self.metrics.dhcp_requests.labels("failed").inc()
            log.exception("ProxyDHCP: answering %s:%d failed", *source)
            return
        self.stats["answered"] += 1
        kind = reply.message_type
        assert kind is not None  # decide() always sets option 53
        self.metrics.dhcp_requests.labels("offered" if kind == dhcp.DHCPOFFER else "acknowledged").inc()
        self.metrics.boot_answers.labels(answer_kind(reply, self.config)).inc()
        log.info("ProxyDHCP: %s %s to %s via %s:%d: file %r%s", dhcp.MESSAGE_TYPES[kind],
                 request.mac, reply.siaddr, *destination, reply.file, self._on_interface(arrival))

    def _send(self, sock: socket.socket, payload: bytes, destination: tuple[str, int],
              arrival: pktinfo.Arrival | None) -> None:
        """Send from the address the client reached; a broadcast also out of the arrival interface,
        which needs no route (and ignores a default route that leads to another network).
        Unicast answers (4011, ciaddr, a relay's giaddr) are routed as usual."""
        if arrival is None:  # no IP_PKTINFO (not Linux): the routing table decides
            sock.sendto(payload, destination)
            return
        ifindex = arrival.ifindex if destination[0] == self.broadcast_address else 0
        source = "" if arrival.local_address == dhcp.NO_ADDRESS else arrival.local_address
        sock.sendmsg([payload], pktinfo.control(ifindex, source), 0, destination)

    @staticmethod
    def _on_interface(arrival: pktinfo.Arrival | None) -> str:
        """The log's " on IFACE": which network a client was answered on."""
        if arrival is None or not arrival.ifindex:
            return ""
        try:
            return f" on {socket.if_indextoname(arrival.ifindex)}"
        except OSError:  # the interface went away since
            return f" on interface {arrival.ifindex}"
