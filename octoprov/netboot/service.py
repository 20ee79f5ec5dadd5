"""`octoprov pxe`: the TFTP server and the ProxyDHCP responder as one service.

They share one question, asked of the database: does this MAC have a task that should
network-boot now? Each lookup opens its own short session, since the servers call it from
their own threads.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from octoprov.db import Database
from octoprov.netboot.bootconfig import active_task_for_mac
from octoprov.netboot.proxydhcp import ProxyDhcpServer
from octoprov.netboot.tftp import TftpServer, prepare_root
from octoprov.settings import Settings

log = logging.getLogger(__name__)


def mac_lookup(database: Database) -> Callable[[str], bool]:
    def is_active(mac: str) -> bool:
        with database.session() as session:
            return active_task_for_mac(session, mac) is not None

    return is_active


def run(settings: Settings, *, tftp: bool = True, proxydhcp: bool = True) -> None:
    """Serve until SIGTERM or SIGINT."""
    servers: list[TftpServer | ProxyDhcpServer] = []
    if tftp:
        root = prepare_root(settings)
        tftp_server = TftpServer(root, host=settings.tftp_host, port=settings.tftp_port).start()
        servers.append(tftp_server)
        log.info("TFTP serving %s on %s:%s", root, settings.tftp_host, tftp_server.port)
    if proxydhcp:
        dhcp = ProxyDhcpServer.from_settings(settings, mac_lookup(Database.from_settings(settings)))
        dhcp.start()
        servers.append(dhcp)
        log.info("ProxyDHCP answering on ports %s and %s (boot server %s)", dhcp.dhcp_port, dhcp.pxe_port,
                 settings.boot_server_address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        for server in servers:
            server.stop()
