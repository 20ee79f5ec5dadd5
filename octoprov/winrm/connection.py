"""Where and how to reach a host's WinRM service: the settings pypsrp's WSMan object is built from.

HTTPS (port 5986) with certificate validation unless the node says otherwise; NTLM, Kerberos or
CredSSP as the authentication. A node's endpoint is a host name, or an http(s) URL whose scheme,
port and path then win over the node's ``winrm`` options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from octoprov.errors import PermanentError

if TYPE_CHECKING:
    from octoprov.context import NodeInfo

TRANSPORTS = ("ntlm", "kerberos", "credssp")
OPERATION_TIMEOUT_S = 60  # a New-VHD -Fixed of a large disk takes a while; receives are polled again after it
READ_TIMEOUT_S = OPERATION_TIMEOUT_S + 10  # the HTTP read waits longer than WinRM's own operation timeout


@dataclass(frozen=True)
class Endpoint:
    server: str
    port: int
    ssl: bool
    path: str
    transport: str
    validate_certificate: bool
    username: str | None
    password: str | None = field(default=None, repr=False)
    label: str = ""  # how messages name the host: the node's name

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.server}:{self.port}/{self.path}"


def endpoint(address: str, winrm: Mapping[str, Any] | None, username: str | None, password: str | None, label: str,
             what: str = "the node") -> Endpoint:
    """The endpoint from a node's (or the management host's) address and ``winrm`` options."""
    winrm = winrm or {}
    transport = winrm.get("transport", "ntlm")
    if transport not in TRANSPORTS:
        raise PermanentError(f"{what}: WinRM transport {transport} is not supported; use one of "
                             f"{', '.join(TRANSPORTS)}")
    ssl, port, path = bool(winrm.get("ssl", True)), winrm.get("port"), "wsman"
    server = address
    if "://" in address:
        parts = urlsplit(address)
        ssl, server = parts.scheme == "https", parts.hostname or ""
        port = parts.port or port
        path = parts.path.strip("/") or path
    if not server:
        raise PermanentError(f"{what}: no WinRM host in {address!r}")
    if not username or not password:
        raise PermanentError(f"{what}: WinRM needs a username and a password")
    return Endpoint(server=server, port=int(port or (5986 if ssl else 5985)), ssl=ssl, path=path,
                    transport=transport, validate_certificate=bool(winrm.get("validateCertificate", True)),
                    username=username, password=password, label=label)


def node_endpoint(node: NodeInfo | None) -> Endpoint:
    """A Hyper-V node's endpoint."""
    if node is None or not node.endpoint:
        raise PermanentError("a Hyper-V task needs a hypervisor node with a WinRM endpoint")
    return endpoint(node.endpoint, (node.options or {}).get("winrm"), node.username,
                    (node.credentials or {}).get("password"), node.name, f"node {node.name}")


def open_wsman(where: Endpoint) -> Any:
    """pypsrp's WSMan for the endpoint. Message encryption is left to pypsrp: TLS on HTTPS, the
    authentication protocol's own sealing on plain HTTP."""
    from pypsrp.wsman import WSMan

    return WSMan(where.server, port=where.port, ssl=where.ssl, path=where.path, auth=where.transport,
                 username=where.username, password=where.password, cert_validation=where.validate_certificate,
                 operation_timeout=OPERATION_TIMEOUT_S, read_timeout=READ_TIMEOUT_S, connection_timeout=15,
                 encryption="auto")


Connect = Callable[[Endpoint], Any]
"""An endpoint → pypsrp WSMan: :func:`open_wsman`, or a test's fake host."""
