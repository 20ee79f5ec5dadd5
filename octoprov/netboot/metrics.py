"""The metrics of `octoprov pxe`: a process of its own (it binds ports 67, 69 and 4011), so it
serves them itself on OCTOPROV_PXE_METRICS_HOST:OCTOPROV_PXE_METRICS_PORT instead of the API.

Label values are fixed words (outcomes, boot file kinds, TFTP error names), never a MAC, an
address or a file name, which would grow without bound and tell who booted what.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server

log = logging.getLogger(__name__)

DHCP_OUTCOMES = ("offered", "acknowledged", "ignored", "malformed", "failed")
BOOT_KINDS = ("ipxe_script", "bios", "uefi", "secure_boot", "http_boot", "boot_server")
TFTP_OUTCOMES = ("complete", "client_ended", "aborted")
TFTP_ERRORS = ("file_not_found", "access_violation", "illegal_operation", "server_error")
GRUB_ACTIONS = ("install", "localboot", "menu")


class PxeMetrics:
    """The counters of one network-boot service, in a registry of their own (a test may run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.dhcp_requests = Counter(
            "octoprov_pxe_dhcp_requests", "DHCP requests the ProxyDHCP server received, by outcome: offered (an "
            "OFFER on port 67), acknowledged (an ACK on 4011), ignored (not a PXE client, no active task, another "
            "interface), malformed, failed (the answer could not be made or sent).", ["outcome"],
            registry=self.registry)
        self.boot_answers = Counter(
            "octoprov_pxe_boot_answers", "ProxyDHCP answers by what they boot: ipxe_script (iPXE gets its script's "
            "URL), bios, uefi, secure_boot (shim), http_boot (UEFI HTTP boot) or boot_server (firmware sent on to "
            "port 4011).", ["kind"], registry=self.registry)
        self.tftp_transfers = Counter(
            "octoprov_pxe_tftp_transfers", "TFTP downloads that ended, by outcome: complete, client_ended (the "
            "client stopped, as PXE ROMs do after learning the size) or aborted (timeout, bad packet, server "
            "stopping).", ["outcome"], registry=self.registry)
        self.tftp_sent_bytes = Counter(
            "octoprov_pxe_tftp_sent_bytes", "File bytes the TFTP server sent (retransmissions not counted).",
            registry=self.registry)
        self.tftp_errors = Counter(
            "octoprov_pxe_tftp_errors", "TFTP error packets the server sent, by error: file_not_found, "
            "access_violation, illegal_operation, server_error.", ["error"], registry=self.registry)
        self.grub_configs = Counter(
            "octoprov_pxe_grub_configs", "Per-machine GRUB configurations the TFTP server rendered for Secure Boot "
            "machines, by action (install, localboot, menu).", ["action"], registry=self.registry)
        for counter, words in ((self.dhcp_requests, DHCP_OUTCOMES), (self.boot_answers, BOOT_KINDS),
                               (self.tftp_transfers, TFTP_OUTCOMES), (self.tftp_errors, TFTP_ERRORS),
                               (self.grub_configs, GRUB_ACTIONS)):
            for word in words:  # every series exists from the start: a rate over a new one is not lost
                counter.labels(word)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Answer GET /metrics on ``host:port`` (0: a free port) from a daemon thread."""
        server, thread = start_http_server(port, host, registry=self.registry)
        log.info("network-boot metrics on http://%s:%d/metrics", host, server.server_port)
        return MetricsServer(server, thread)


class MetricsServer:
    """prometheus_client's exporter thread, stopped like the service's other servers."""

    def __init__(self, server: WSGIServer, thread: threading.Thread):
        self.server = server
        self.thread = thread
        self.port: int = server.server_port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
