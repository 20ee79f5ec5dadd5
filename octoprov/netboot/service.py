"""`octoprov pxe`: the TFTP server and the ProxyDHCP responder as one service.

They share one question, asked of the database: does this MAC have a task that should
network-boot now, and through which chain (iPXE, or shim and the signed GRUB under Secure
Boot)? Each lookup opens its own short session, since the servers call it from their own
threads. The TFTP server also renders the signed GRUB's per-machine configuration.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.netboot import grub
from octoprov.netboot.answercache import boot_answers
from octoprov.netboot.bootconfig import active_task_for_mac
from octoprov.netboot.chain import BootChain, chain_for
from octoprov.netboot.metrics import PxeMetrics
from octoprov.netboot.proxydhcp import ProxyDhcpServer
from octoprov.netboot.tftp import Rendered, TftpServer, prepare_root
from octoprov.settings import Settings

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    def stop(self) -> None: ...


def chain_lookup(database: Database) -> Callable[[str], BootChain | None]:
    """The boot chain of a MAC's active task (None: no active task), for ProxyDHCP."""

    def lookup(mac: str) -> BootChain | None:
        with database.session() as session:
            task = active_task_for_mac(session, mac)
            return None if task is None else chain_for(session, task)

    return lookup


def grub_configs(database: Database, settings: Settings, vault: Vault, metrics: PxeMetrics | None = None) -> Rendered:
    """The per-machine GRUB configuration the signed GRUB asks the TFTP server for, made from the
    same answer as the API's boot scripts; the request is logged on the machine's task and counted."""
    counted = metrics or PxeMetrics()
    answers = boot_answers(database, settings, vault)

    def render(name: str, client: str) -> bytes | None:
        mac = grub.machine_file_mac(name)
        if mac is None:
            return None
        answer, task_id = answers.answer(mac, {})
        if task_id is not None:
            why = f" ({answer.document['message']})" if answer.document.get("message") else ""
            answers.log_boot(task_id, f"GRUB configuration served to {mac} at {client} over TFTP: "
                                      f"{answer.action}{why}")
        counted.grub_configs.labels(answer.action).inc()
        return answer.grub.encode()

    return render


def run(settings: Settings, *, tftp: bool = True, proxydhcp: bool = True) -> None:
    """Serve until SIGTERM or SIGINT."""
    servers: list[Stoppable] = []
    metrics = PxeMetrics()
    if settings.pxe_metrics_port:  # first: a port already taken stops the service before it answers anyone
        exporter = metrics.serve(settings.pxe_metrics_host, settings.pxe_metrics_port)
        servers.append(exporter)
    if tftp:
        root = prepare_root(settings)
        database, vault = Database.from_settings(settings), Vault.from_settings(settings)
        boot_answers(database, settings, vault).render_ahead()  # Secure Boot machines' GRUB configurations
        tftp_server = TftpServer(root, host=settings.tftp_host, port=settings.tftp_port,
                                 mounts={grub.IMAGES_FOLDER: settings.effective_images_dir},
                                 rendered=grub_configs(database, settings, vault, metrics),
                                 metrics=metrics).start()
        servers.append(tftp_server)
        log.info("TFTP serving %s on %s:%s", root, settings.tftp_host, tftp_server.port)
    if proxydhcp:
        servers.append(start_proxydhcp(settings, chain_lookup(Database.from_settings(settings)), metrics))
    serve_until_signalled(servers)


def start_proxydhcp(settings: Settings, lookup: Callable[[str], BootChain | None],
                    metrics: PxeMetrics) -> ProxyDhcpServer:
    dhcp = ProxyDhcpServer.from_settings(settings, lookup, metrics=metrics)
    dhcp.start()
    log.info("ProxyDHCP answering on ports %s and %s (boot server %s)", dhcp.dhcp_port, dhcp.pxe_port,
             settings.boot_server_address)
    return dhcp


def serve_until_signalled(servers: Sequence[Stoppable]) -> None:
    """Serve until SIGTERM or SIGINT, then stop every server."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        for server in servers:
            server.stop()
