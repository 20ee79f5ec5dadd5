"""Opening a session on a vSphere node with pyVmomi: the SDK address from the node's endpoint, the
certificate trusted as the node says (the worker's CAs and the host name, or a pinned SHA-256
thumbprint checked on every TLS connection), the session logged out after, and pyVmomi's failures
turned into the errors the pipeline retries (the host does not answer) or gives up on (a refused
login, an untrusted certificate, a fault vSphere reports).

The password goes to vSphere's login only: no message made here carries it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

from octoprov.errors import NotAvailable, PermanentError, TargetUnreachable
from octoprov.targets.vmware.options import VsphereOptions, vsphere_options

if TYPE_CHECKING:
    from octoprov.context import NodeInfo

ServiceInstance: TypeAlias = Any  # pyVmomi's vim.ServiceInstance (its stubs are generated at run time)
Connect: TypeAlias = Callable[["NodeInfo"], ServiceInstance]  # a node → a logged-in service instance
TIMEOUT_S = 30  # per HTTP request: a host that stops answering mid-step is a transient failure
TASK_POLL_S = 0.2


def load_vim() -> Any:
    """pyVmomi's ``vim`` namespace, loaded only where it is used (its types are made at run time: Any here)."""
    return _pyvmomi().vim


def load_vmodl() -> Any:
    return _pyvmomi().vmodl


def _pyvmomi() -> Any:
    try:
        return importlib.import_module("pyVmomi")
    except ImportError:  # pragma: no cover - depends on the machine
        raise NotAvailable("pyvmomi is not installed on this worker") from None


@dataclass(frozen=True)
class Sdk:
    host: str
    port: int
    path: str

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def sdk_address(endpoint: str) -> Sdk:
    """``https://vc.example.com[:port][/sdk]`` or a bare host name."""
    parts = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
    if not parts.hostname:
        raise PermanentError("the node's endpoint names no host")
    return Sdk(parts.hostname, parts.port or 443, parts.path.rstrip("/") or "/sdk")


class PinnedContext(ssl.SSLContext):
    """TLS that trusts exactly one certificate, by its SHA-256 thumbprint, checked after every handshake
    (pyVmomi's own pinning applies only when the CA check fails, and relaxes the context it was given)."""

    thumbprint: str

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        seen = hashlib.sha256(sock.getpeercert(binary_form=True) or b"").hexdigest()
        if seen != self.thumbprint:
            sock.close()
            raise ssl.SSLCertVerificationError(f"the certificate's SHA-256 thumbprint is {seen}, not the pinned "
                                               f"{self.thumbprint}")
        return sock


def ssl_context(options: VsphereOptions) -> ssl.SSLContext:
    if options.thumbprint:
        pinned = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.check_hostname = False
        pinned.verify_mode = ssl.CERT_NONE  # the thumbprint is the check
        pinned.thumbprint = options.thumbprint
        return pinned
    if options.verify_certificate:
        return ssl.create_default_context()
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    return unverified


def open_session(node: NodeInfo) -> ServiceInstance:
    """A logged-in service instance; the caller logs it out (:func:`vsphere_session`)."""
    connect: Any = importlib.import_module("pyVim.connect")  # untyped
    sdk = sdk_address(node.endpoint or "")
    with vsphere_errors(sdk):
        return connect.SmartConnect(host=sdk.host, port=sdk.port, path=sdk.path, user=node.username or "",
                            pwd=str(node.credentials.get("password") or ""),
                            sslContext=ssl_context(vsphere_options(node.options)),
                            httpConnectionTimeout=TIMEOUT_S, connectionPoolTimeout=-1)


@contextlib.contextmanager
def vsphere_session(node: NodeInfo | None, connect: Connect | None = None) -> Iterator[ServiceInstance]:
    """A session on the node for the ``with`` block, pyVmomi's failures mapped, logged out after.
    ``connect`` replaces :func:`open_session`; sessions it returns are not logged out here."""
    if node is None or not node.endpoint:
        raise PermanentError("a vSphere task needs a hypervisor node with an SDK URL")
    sdk = sdk_address(node.endpoint)
    si = connect(node) if connect is not None else open_session(node)
    try:
        with vsphere_errors(sdk):
            yield si
    finally:
        if connect is None:
            with contextlib.suppress(Exception):
                si.content.sessionManager.Logout()


@contextlib.contextmanager
def vsphere_errors(sdk: Sdk) -> Iterator[None]:
    vim, vmodl = load_vim(), load_vmodl()
    try:
        yield
    except vim.fault.InvalidLogin:
        raise PermanentError(f"{sdk.label} refused the node's user name or password") from None
    except ssl.SSLCertVerificationError as exc:
        reason = getattr(exc, "verify_message", None) or (exc.args[0] if exc.args else "refused")
        raise PermanentError(f"the certificate of {sdk.label} is not trusted: {reason}; "
                             "pin its SHA-256 thumbprint (vsphere.thumbprint) or add its CA to the workers'") from None
    except vim.fault.NoPermission as exc:
        raise PermanentError(f"{sdk.label}: the node's user may not {exc.privilegeId}") from None
    except (vmodl.MethodFault, vmodl.RuntimeFault) as exc:
        raise PermanentError(f"{sdk.label}: {fault_text(exc)}") from None
    except (ConnectionError, TimeoutError, http.client.HTTPException, ssl.SSLError, OSError) as exc:
        raise TargetUnreachable(f"cannot reach {sdk.label}: {exc}") from None


def fault_text(exc: Any) -> str:
    """A vSphere fault as its message, else its type (pyVmomi's ``str()`` dumps the whole object)."""
    message = getattr(exc, "msg", None) or getattr(exc, "localizedMessage", None)
    return str(message) if message else type(exc).__name__.rpartition(".")[2]


def wait_for(task: Any, check: Callable[[], None] | None = None) -> Any:
    """A vSphere task's result once it ends; its fault raised as pyVmomi raises faults. ``check`` runs
    between polls (a cancelled Octoprov task stops waiting there)."""
    vim = load_vim()

    while True:
        info = task.info
        if info.state == vim.TaskInfo.State.success:
            return info.result
        if info.state == vim.TaskInfo.State.error:
            raise info.error
        if check is not None:
            check()
        time.sleep(TASK_POLL_S)
