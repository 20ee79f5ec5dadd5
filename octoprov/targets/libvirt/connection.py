"""Opening a libvirt connection for a node: loading libvirt, the URI to open, closing it after,
and libvirt's errors turned into the ones the pipeline retries or gives up on.

A node registered with a private key is connected through libvirt's built-in SSH client
(``qemu+libssh``) rather than the ``ssh`` program: only it takes the key and the known hosts as
files of our choosing, so no worker's ``~/.ssh`` has to be set up, and the host key is checked
against the one stored with the node (``kvm.hostKey``), never skipped. Both files exist only
while the connection is opened (they are read to authenticate) in a private temporary folder.
Without a stored key the URI is used as given (``ssh`` with the worker's own keys and known hosts),
with no terminal to prompt on: a worker has no one to answer.

The drivers' steps share one connection per host in each process (``kept_connection``): a step
opens none while the one the previous step used is alive, which spares the host's daemon a
connection set-up and tear-down per step (and an SSH handshake per step for a remote host). A
kept connection is checked with one cheap call before it is used again, and is dropped after an
error that may have broken it; one idle longer than ``KEEP_IDLE_S`` is closed and opened anew,
so a connection silently cut while idle (a firewall's idle timeout) is never waited on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from octoprov.errors import NotAvailable, PermanentError, TargetUnreachable

if TYPE_CHECKING:
    from octoprov.context import NodeInfo

# libvirt-python carries no type information (no py.typed): its objects are Any to a type checker
Connection: TypeAlias = Any  # libvirt.virConnect
Domain: TypeAlias = Any  # libvirt.virDomain
Pool: TypeAlias = Any  # libvirt.virStoragePool
Volume: TypeAlias = Any  # libvirt.virStorageVol
Connect: TypeAlias = Callable[[str], Connection]  # a libvirt URI → an open connection

SSH_SCHEMES = ("qemu+ssh", "qemu+libssh", "qemu+libssh2")
HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) ([A-Za-z0-9+/]+={0,3})(?: .*)?$")

# libvirt error codes meaning "the host or the connection failed", worth a retry; others are permanent
TRANSIENT_CODES = ("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC", "VIR_ERR_NO_CONNECT", "VIR_ERR_OPERATION_TIMEOUT",
                   "VIR_ERR_AUTH_UNAVAILABLE")
KEEP_IDLE_S = 60.0  # a kept connection idle longer than this is opened anew rather than trusted

_error_handler_set = False


def load_libvirt() -> ModuleType:
    """The libvirt binding, loaded only where it is used: a worker without it can still run other targets."""
    try:
        libvirt = importlib.import_module("libvirt")
    except ImportError:  # pragma: no cover - depends on the machine
        raise NotAvailable("libvirt-python is not installed on this worker") from None
    global _error_handler_set  # set once per process
    if not _error_handler_set:
        # libvirt prints every error to stderr by default; they reach callers as exceptions instead.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _error_handler_set = True
    return libvirt


def kvm_options(node: NodeInfo | None) -> dict[str, Any]:
    """The node's ``kvm`` settings (storage pool, domain type, VirtIO, host key), empty when it has none."""
    options: dict[str, Any] = ((node.options if node else None) or {}).get("kvm") or {}
    return options


def open_connection(uri: str, credentials: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                    *, read_only: bool = False) -> Connection:
    """Open a connection (over SSH with the node's stored key and host key); a host that does not
    answer is a transient failure."""
    libvirt = load_libvirt()
    host_key = ((options or {}).get("kvm") or {}).get("hostKey")
    with connection_uri(uri, (credentials or {}).get("privateKey"), host_key) as target:
        try:
            return libvirt.openReadOnly(target) if read_only else libvirt.open(target)
        except libvirt.libvirtError as exc:
            raise TargetUnreachable(f"cannot connect to {uri}: {exc.get_error_message()}") from None


@contextlib.contextmanager
def node_connection(node: NodeInfo, connect: Connect | None = None) -> Iterator[Connection]:
    """A connection to the node's host for the ``with`` block, closed after. ``connect`` replaces
    :func:`open_connection` (tests pass one shared ``test:///default`` connection, whose state lives
    only as long as it): connections it returns are not closed here."""
    if not node.endpoint:
        raise PermanentError("a KVM task needs a hypervisor node with a libvirt URI")
    if connect is not None:
        yield connect(node.endpoint)
        return
    conn = open_connection(node.endpoint, node.credentials, node.options)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


class _Kept:
    """This process's open connections, one per host (and the credentials it was opened with)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.idle: dict[tuple[str, str, str], tuple[Connection, float]] = {}
        self.inherited: list[Connection] = []

    def take(self, key: tuple[str, str, str]) -> Connection | None:
        """The idle connection for ``key``, now the caller's alone, if it still answers."""
        if self.pid != os.getpid():  # a forked worker process: its parent's connections are not its own
            # kept referenced, never closed: closing one here would close the parent's session
            self.inherited += [conn for conn, _ in self.idle.values()]
            self.idle.clear()
            self.pid = os.getpid()
        conn, since = self.idle.pop(key, (None, 0.0))
        if conn is None:
            return None
        if time.monotonic() - since <= KEEP_IDLE_S:
            with contextlib.suppress(Exception):
                conn.getLibVersion()  # one round trip: a host whose daemon restarted fails it
                return conn
        _close(conn)
        return None

    def give_back(self, key: tuple[str, str, str], conn: Connection) -> None:
        if self.pid != os.getpid() or key in self.idle:  # another block of this process kept one meanwhile
            _close(conn)
            return
        self.idle[key] = (conn, time.monotonic())


_KEPT = _Kept()


def _close(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _broken(exc: BaseException) -> bool:
    """An error after which a connection is not to be used again: the host or the connection failed."""
    if isinstance(exc, TargetUnreachable):
        return True
    libvirt = load_libvirt()
    if isinstance(exc, libvirt.libvirtError):
        return exc.get_error_code() in {getattr(libvirt, name, None) for name in TRANSIENT_CODES}
    return False


def _kept_key(node: NodeInfo) -> tuple[str, str, str]:
    """A node's connection is reused only with the credentials and host key it was opened with."""
    key = (node.credentials or {}).get("privateKey") or ""
    return (node.endpoint or "", hashlib.sha256(key.encode()).hexdigest(), str(kvm_options(node).get("hostKey") or ""))


@contextlib.contextmanager
def kept_connection(node: NodeInfo, connect: Connect | None = None) -> Iterator[Connection]:
    """Like :func:`node_connection`, but the connection stays open for this process's next block on
    the same host (see the module's description). libvirt's in-process ``test:`` driver is opened
    per block as before: it keeps its state only while a connection is open, and has no daemon to spare."""
    if connect is not None or not node.endpoint or urlsplit(node.endpoint).scheme == "test":
        with node_connection(node, connect) as conn:
            yield conn
        return
    key = _kept_key(node)
    conn = _KEPT.take(key)
    if conn is None:
        conn = open_connection(node.endpoint, node.credentials, node.options)
    try:
        yield conn
    except BaseException as exc:
        if _broken(exc) or not _alive(conn):
            _close(conn)
        else:
            _KEPT.give_back(key, conn)
        raise
    if _alive(conn):
        _KEPT.give_back(key, conn)
    else:
        _close(conn)


def _alive(conn: Connection) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:
        return False


@contextlib.contextmanager
def libvirt_errors(endpoint: str) -> Iterator[None]:
    """libvirt's errors in the ``with`` block as the pipeline's: a failing host or connection is
    worth a retry, any other refusal is permanent."""
    libvirt = load_libvirt()
    try:
        yield
    except libvirt.libvirtError as exc:
        transient = {getattr(libvirt, name, None) for name in TRANSIENT_CODES}
        error = TargetUnreachable if exc.get_error_code() in transient else PermanentError
        raise error(f"libvirt on {endpoint}: {exc.get_error_message()}") from None


# --- the URI ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def connection_uri(uri: str, private_key: str | None, host_key: str | None) -> Iterator[str]:
    """The URI to open ``uri`` with, valid inside the ``with`` block."""
    parts = urlsplit(uri)
    if parts.scheme not in SSH_SCHEMES:
        yield uri
        return
    if not private_key:
        yield with_query(uri, no_tty="1") if parts.scheme == "qemu+ssh" else uri
        return
    with tempfile.TemporaryDirectory(prefix="octoprov-ssh-") as folder:  # mode 0700
        keyfile = _private_file(Path(folder) / "id", private_key if private_key.endswith("\n") else private_key + "\n")
        known_hosts = None
        if host_key:
            known_hosts = _private_file(Path(folder) / "known_hosts", known_hosts_line(parts, host_key))
        libssh = urlunsplit(parts._replace(scheme="qemu+libssh"))
        yield with_query(libssh, keyfile=keyfile, known_hosts=known_hosts, known_hosts_verify="normal",
                         sshauth="privkey")


def known_hosts_line(parts: SplitResult, host_key: str) -> str:
    """OpenSSH's known_hosts line for the URI's host (``[host]:port`` off port 22)."""
    match = HOST_KEY.match(host_key.strip())
    if match is None:
        raise ValueError("not an SSH public host key")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if parts.port not in (None, 22):
        host = f"[{host.strip('[]')}]:{parts.port}"
    return f"{host} {match.group(1)} {match.group(2)}\n"


def _private_file(path: Path, text: str) -> str:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return str(path)


def with_query(uri: str, **params: str | None) -> str:
    """``uri`` with these query parameters set (others kept; a None value adds nothing)."""
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))
