"""`octoprov pxe --site NAME --central URL`: a site's boot services, without database access.

ProxyDHCP and TFTP as at the centre, and an HTTP server for boot scripts and files, all answering from what the
edge keeps: the prepared answers (fetched every ``edge_poll_s``), the verified file cache, and the journal of
what it served (reported whenever the centre answers). While the WAN is down the edge keeps answering the tasks
it already has answers for; a task prepared later reaches it once the link is back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from octoprov.edge.answers import PreparedAnswers
from octoprov.edge.central import Central, Unreachable
from octoprov.edge.files import FileCache, NotCached
from octoprov.edge.httpd import Edge, EdgeHttpServer, grub_config
from octoprov.edge.served import ServedLog
from octoprov.netboot import grub
from octoprov.netboot.metrics import PxeMetrics
from octoprov.netboot.service import Stoppable, serve_until_signalled, start_proxydhcp
from octoprov.netboot.tftp import Rendered, TftpServer, prepare_root
from octoprov.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeOptions:
    site: str
    central: str
    token: str
    http_host: str
    http_port: int
    tftp: bool = True
    proxydhcp: bool = True


def cache_dir(settings: Settings, site: str) -> Path:
    return (settings.edge_cache_dir or settings.data_dir / "edge" / site).resolve()


class Sync:
    """Fetch the site's answers and report what was served, every ``edge_poll_s``; the edge's ``online`` says
    whether the centre answered the last time."""

    def __init__(self, edge: Edge, central: Central, every_s: float):
        self.edge, self.central, self.every_s = edge, central, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edge-sync", daemon=True)

    def once(self) -> bool:
        try:
            self.edge.answers.replace(self.central.answers())
            while pending := self.edge.served.pending():
                self.central.report_served(pending)
                self.edge.served.sent(len(pending))
        except (Unreachable, ValueError) as exc:
            if self.edge.online:
                log.warning("site %s: the centre cannot be reached; answering from the cache: %s", self.edge.site, exc)
            self.edge.online = False
            return False
        if not self.edge.online:
            log.info("site %s: the centre answers; %d prepared answers", self.edge.site, len(self.edge.answers.macs()))
        self.edge.online = True
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.once()

    def start(self) -> Sync:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


def tftp_files(edge: Edge) -> Rendered:
    """What the edge's TFTP server renders: the Secure Boot machines' GRUB configurations from the prepared
    answers; and before an image file is read from the cache's images folder, the file is fetched into it."""

    def render(name: str, client: str) -> bytes | None:
        mac = grub.machine_file_mac(name)
        if mac is not None:
            return grub_config(edge, mac).encode()
        if name.startswith(grub.IMAGES_FOLDER + "/"):
            with contextlib.suppress(ValueError, NotCached):  # else the mount answers "file not found"
                edge.files.get(name)
        return None

    return render


def build(settings: Settings, options: EdgeOptions) -> tuple[Edge, Central, Sync]:
    root = cache_dir(settings, options.site)
    central = Central(options.central, options.token, options.site)
    files = FileCache(root, settings.edge_cache_max_bytes, central.fetch_file)
    edge = Edge(options.site, PreparedAnswers(root / "answers.json"), files, ServedLog(root / "served.json"))
    return edge, central, Sync(edge, central, settings.edge_poll_s)


def run(settings: Settings, options: EdgeOptions) -> None:
    """Serve until SIGTERM or SIGINT. Needs the site's bootUrl: from the centre, or from the last copy kept."""
    edge, _, sync = build(settings, options)
    sync.once()
    boot_url = edge.answers.boot_url
    if boot_url is None:
        raise Unreachable(f"site {options.site}: the centre cannot be reached and no prepared answers are kept yet")
    at_site = settings.model_copy(update={"public_url": boot_url})  # ProxyDHCP hands out the edge's URLs
    metrics = PxeMetrics()
    servers: list[Stoppable] = [sync.start()]
    http = EdgeHttpServer(edge, options.http_host, options.http_port).start()
    servers.append(http)
    log.info("site %s: boot scripts and files on http://%s:%s (bootUrl %s)", options.site, options.http_host,
             http.port, boot_url)
    if options.tftp:
        tftp = TftpServer(prepare_root(settings), host=settings.tftp_host, port=settings.tftp_port,
                          mounts={grub.IMAGES_FOLDER: edge.files.files / grub.IMAGES_FOLDER},
                          rendered=tftp_files(edge), metrics=metrics).start()
        servers.append(tftp)
        log.info("site %s: TFTP on %s:%s", options.site, settings.tftp_host, tftp.port)
    if options.proxydhcp:
        servers.append(start_proxydhcp(at_site, edge.answers.chain, metrics))
    serve_until_signalled(servers)

