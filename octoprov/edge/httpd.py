"""The edge's HTTP server: the site's boot scripts (``/api/v1/provisioning/pxe/...``, as the central API
answers them) from the prepared answers, and boot files (``/boot/...``) from the verified cache, with Range.

Stdlib only, threaded: a branch's machines are a handful, and the edge must run where the API's stack is not."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from octoprov.byterange import bounds, one_range
from octoprov.edge.answers import PreparedAnswers, chain_script
from octoprov.edge.files import FileCache, NotCached
from octoprov.edge.served import ServedLog
from octoprov.netboot.bootconfig import API
from octoprov.validation.macs import canonical_mac

log = logging.getLogger(__name__)
FILE_FOLDERS = ("images", "drivers", "efi")  # what the central /boot route serves
_CHUNK = 1 << 20


class Edge:
    """What the HTTP and TFTP servers answer from, and whether the centre answered the last time it was asked."""

    def __init__(self, site: str, answers: PreparedAnswers, files: FileCache, served: ServedLog):
        self.site, self.answers, self.files, self.served = site, answers, files, served
        self.online = False

    def status(self) -> dict[str, Any]:
        return {"site": self.site, "bootUrl": self.answers.boot_url, "online": self.online,
                "answers": len(self.answers.macs()), "prepared": self.answers.summary(),
                "generatedAt": self.answers.generated_at,
                "cacheBytes": self.files.size, "cacheLimitBytes": self.files.limit, "fetches": self.files.fetches,
                "unreported": len(self.served.pending())}


class _Handler(BaseHTTPRequestHandler):
    server: EdgeHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        parts = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        routes: dict[str, Callable[[dict[str, str], bool], None]] = {
            API + "/pxe/chain.ipxe": self._chain, API + "/pxe/boot": self._boot,
            API + "/pxe/boot.grub": self._grub, "/edge/status": self._status,
        }
        try:
            if parts.path in routes:
                routes[parts.path](query, head)
            elif parts.path.startswith("/boot/"):
                self._file(unquote(parts.path[len("/boot/"):]), head)
            else:
                self._json(404, {"message": "not found"}, head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the machine went away mid-answer

    def _mac(self, query: dict[str, str], head: bool, required: bool = True) -> str | None:
        if not required and not query.get("mac"):
            return None
        try:
            return canonical_mac(query.get("mac", ""))
        except ValueError as exc:
            self._json(400, {"message": "Invalid request", "errors": {"mac": str(exc)}}, head)
            raise _Answered from None

    def _chain(self, query: dict[str, str], head: bool) -> None:
        try:
            mac = self._mac(query, head, required=False)
        except _Answered:
            return
        boot_url = self.server.edge.answers.boot_url
        if boot_url is None:
            self._json(503, {"message": "this edge has not learnt its site's bootUrl from the centre yet"}, head)
            return
        self._text(chain_script(boot_url, mac.replace(":", "-") if mac else None), head)

    def _boot(self, query: dict[str, str], head: bool) -> None:
        try:
            mac = self._mac(query, head)
        except _Answered:
            return
        assert mac is not None
        edge = self.server.edge
        answer = edge.answers.answer(mac, edge.site)
        if answer.task_id is not None:
            edge.served.add(mac, answer.task_id, answer.action, "ipxe", offline=not edge.online)
        accept = parse_accept_header(self.headers.get("Accept"), MIMEAccept)
        if self.headers.get("Accept") and accept.best == "application/json":
            self._json(200, answer.document, head)
        else:
            self._text(answer.script, head)

    def _grub(self, query: dict[str, str], head: bool) -> None:
        try:
            mac = self._mac(query, head)
        except _Answered:
            return
        assert mac is not None
        self._text(grub_config(self.server.edge, mac), head)

    def _status(self, query: dict[str, str], head: bool) -> None:
        self._json(200, self.server.edge.status(), head)

    def _file(self, path: str, head: bool) -> None:
        if path.partition("/")[0] not in FILE_FOLDERS or not path.partition("/")[2]:
            self._json(404, {"message": "not found"}, head)
            return
        try:
            local = self.server.edge.files.get(path)
        except ValueError:
            self._json(404, {"message": "not found"}, head)
            return
        except NotCached as exc:
            self._json(502, {"message": f"not available at this edge: {exc}"}, head)
            return
        with open(local, "rb") as handle:  # open before anything else: an eviction now leaves it readable
            size = os.fstat(handle.fileno()).st_size
            asked = one_range(self.headers.get("Range", ""))
            start, end, status = 0, size - 1, 200
            if asked and not self.headers.get("If-Range"):
                found = bounds(*asked, size)
                if found is None:
                    self._send(416, b"", "application/octet-stream", head, {"Content-Range": f"bytes */{size}"})
                    return
                (start, end), status = found, 206
            headers = {"Accept-Ranges": "bytes"}
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._start(status, "application/octet-stream", end - start + 1, headers)
            if not head:
                handle.seek(start)
                _copy(handle, self.wfile, end - start + 1)

    def _text(self, text: str, head: bool) -> None:
        self._send(200, text.encode(), "text/plain; charset=utf-8", head, {"Cache-Control": "no-store"})

    def _json(self, status: int, body: Any, head: bool) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", head)

    def _send(self, status: int, body: bytes, mimetype: str, head: bool, headers: dict[str, str] | None = None) -> None:
        self._start(status, mimetype, len(body), headers or {})
        if not head:
            self.wfile.write(body)

    def _start(self, status: int, mimetype: str, length: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", mimetype)
        self.send_header("Content-Length", str(length))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


class _Answered(Exception):
    """The request was answered already (with an error)."""


def _copy(source: Any, out: Any, length: int) -> None:
    while length > 0:
        chunk = source.read(min(length, _CHUNK))
        if not chunk:
            break
        out.write(chunk)
        length -= len(chunk)


def grub_config(edge: Edge, mac: str) -> str:
    """A Secure Boot machine's GRUB configuration from the prepared answer (served over HTTP and TFTP)."""
    answer = edge.answers.answer(mac, edge.site)
    if answer.task_id is not None:
        edge.served.add(mac, answer.task_id, answer.action, "grub", offline=not edge.online)
    return answer.grub


class EdgeHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, edge: Edge, host: str, port: int):
        super().__init__((host, port), _Handler)
        self.edge = edge
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> EdgeHttpServer:
        self._thread = threading.Thread(target=self.serve_forever, name="edge-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

