"""An HTTP proxy whose listening socket lives inside a test namespace and whose connections leave from
this process's own namespace: the only way out of the container lab, for image builds (apt, pip).

The lab's namespaces have no route to the machine's network, by design. A build inside them still needs
Debian's and PyPI's servers, so the proxy listens on the namespace's loopback (the socket is made after
``setns(2)`` into the namespace, then this thread switches back) and connects out from here, to the
named hosts only: no other address can be reached through it. It speaks what apt and pip send to a
proxy: ``CONNECT host:443`` (tunnelled as it is) and plain HTTP requests in absolute form (passed on to
the origin server, which must accept that form, RFC 9112 section 3.2.2).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

CLONE_NEWNET = 0x40000000
_HEAD_LIMIT = 64 * 1024


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def listen_in(namespace: str, address: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket on ``address`` (any port) inside ``namespace``, made from this thread."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.create_server((address, 0))
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


class EgressProxy:
    """The proxy's accept loop in a thread; ``url`` is what a client inside the namespace sets as
    ``http_proxy`` and ``https_proxy``."""

    def __init__(self, namespace: str, allowed_hosts: set[str]):
        self.allowed_hosts = allowed_hosts
        self.refused: list[str] = []
        self._server = listen_in(namespace)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="egress-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> EgressProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            head = _read_head(client)
            if head is None:
                return
            request_line, _, rest = head.partition(b"\r\n")
            parts = request_line.decode("latin-1").split(" ")
            if len(parts) != 3:
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
            method, target, version = parts
            if method == "CONNECT":
                host, _, port_text = target.rpartition(":")
                port, first = int(port_text or 443), b""
                if port != 443:
                    host = ""
            else:
                url = urlsplit(target)
                host, port = url.hostname or "", url.port or 80
                origin_form = (url.path or "/") + (f"?{url.query}" if url.query else "")
                first = f"{method} {origin_form} {version}\r\n".encode("latin-1") + rest
                if url.scheme != "http":
                    host = ""
            if host not in self.allowed_hosts:
                self.refused.append(target)
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n")
                return
            try:
                upstream = socket.create_connection((host, port), timeout=30)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n")
                return
            with upstream:
                if method == "CONNECT":
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    upstream.sendall(first)
                _splice(client, upstream)


def _read_head(client: socket.socket) -> bytes | None:
    """The request line and headers, up to and including the blank line (a request body, if any,
    follows in the socket and is spliced on as it is)."""
    data = b""
    client.settimeout(30)
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk or len(data) > _HEAD_LIMIT:
            return None
        data += chunk
    return data


def _splice(a: socket.socket, b: socket.socket) -> None:
    """Bytes both ways until either side closes."""
    a.settimeout(None)
    b.settimeout(None)
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 300)
        if not readable:
            return
        for source in readable:
            try:
                chunk = source.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            peers[source].sendall(chunk)


@contextlib.contextmanager
def egress_proxy(namespace: str, allowed_hosts: set[str]) -> Iterator[EgressProxy]:
    with EgressProxy(namespace, allowed_hosts) as proxy:
        yield proxy
