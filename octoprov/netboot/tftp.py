"""TFTP server handing the iPXE binaries (and the signed shim and GRUB) to PXE firmware.

Built on tftpy's transfer engine (packet classes, per-transfer context, its DATA/ACK state) but
with its own receive loop and request handling, because tftpy 0.8.7 on its own serves symlinks
that point out of the root, accepts uploads, dies on a single malformed option or a request for
a directory, and always puts ``blksize`` into its OACK. Here one root is served read-only, a bad
request or packet ends only its own transfer, and the OACK carries exactly the accepted options
(RFC 2347 negotiation of ``blksize`` 2348, ``tsize`` and ``timeout`` 2349).

Besides its root it serves *mounts* (a first path component standing for another folder, such as
``images/`` for the image library GRUB loads kernels from) and *rendered* files (the per-machine
GRUB configuration, made when asked); both confined the same way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import selectors
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

import tftpy
from tftpy.TftpContexts import TftpContextServer
from tftpy.TftpPacketTypes import TftpPacketOACK
from tftpy.TftpShared import TftpTimeoutExpectACK
from tftpy.TftpStates import TftpStateExpectACK

from octoprov.netboot import grub, pktinfo
from octoprov.netboot.metrics import PxeMetrics
from octoprov.settings import Settings

log = logging.getLogger(__name__)


class _NoTftpyInfo(logging.Filter):
    """Drops tftpy's INFO lines about each transfer's end: ours says it once, with client and bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.INFO


logging.getLogger("tftpy.TftpStates").addFilter(_NoTftpyInfo())

IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")

RRQ, WRQ, ERROR = 1, 2, 5
NOT_DEFINED, FILE_NOT_FOUND, ACCESS_VIOLATION, ILLEGAL_OPERATION, UNKNOWN_TID = 0, 1, 2, 4, 5
ERROR_NAMES = {NOT_DEFINED: "server_error", FILE_NOT_FOUND: "file_not_found", ACCESS_VIOLATION: "access_violation",
               ILLEGAL_OPERATION: "illegal_operation"}  # as the metrics count them
DEFAULT_BLKSIZE = 512
BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464  # RFC 2348
TIMEOUT_MIN, TIMEOUT_MAX = 1, 255  # RFC 2349
_RECV_SIZE = 65536
_TICK = 0.1  # how often running transfers are checked for a missing answer


# -- the root ----------------------------------------------------------------------------------


def prepare_root(settings: Settings) -> Path:
    """Create the TFTP root and copy the boot binaries into it: iPXE's, and shim and the signed
    GRUB with GRUB's entry configuration for Secure Boot machines.

    Copies, not symlinks: Debian's ``ipxe.efi`` is itself a link into /boot, and the server
    refuses links that leave its root. A binary is copied again when its size differs, through a
    temporary file and a rename, so a running server never hands out half a file.
    """
    root = Path(settings.effective_tftp_root)
    root.mkdir(parents=True, exist_ok=True)
    for name in IPXE_BINARIES:
        source = Path(settings.ipxe_dir) / name
        if not source.is_file():
            log.warning("iPXE binary %s is missing; PXE clients asking for %s will get 'file not found'", source, name)
            continue
        _install(source.read_bytes, source.stat().st_size, root / name)
    for name, relative in grub.SIGNED_SOURCES.items():
        source = Path(settings.signed_boot_dir) / relative
        if not source.is_file():
            log.info("%s is missing: machines that enforce Secure Boot cannot network-boot (make signed-boot)", source)
            continue
        _install(source.read_bytes, source.stat().st_size, root / name)
    entry = grub.ENTRY.encode()
    _install(lambda: entry, len(entry), root / grub.ENTRY_FILE, same_size_is_same=False)
    return root


def _install(read: Callable[[], bytes], size: int, target: Path, same_size_is_same: bool = True) -> None:
    """Write ``target`` unless an identical file is there (by size for binaries, else by content)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    present = target.is_file() and not target.is_symlink() and target.stat().st_size == size
    if present and (same_size_is_same or target.read_bytes() == read()):
        return
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(read())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    log.info("wrote %s", target)


class _Refused(Exception):
    """A request answered with a TFTP ERROR packet."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class _ClientEnded(Exception):
    """The client sent an ERROR packet (PXE ROMs do this after learning the size from tsize)."""


def _error_packet(code: int, message: str) -> bytes:
    return b"\x00\x05" + code.to_bytes(2, "big") + message.encode("ascii", "replace") + b"\x00"


def _open_confined(root: Path, name: str) -> tuple[io.BufferedIOBase, int]:
    """Open ``name`` if it is a regular file under ``root`` (already resolved); else raise _Refused.

    Like tftpd-hpa's --secure, a leading slash means the root; backslashes count as slashes
    because Windows boot managers ask for ``\\Boot\\BCD``.
    """
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_relative_to(root):
        path = path.relative_to(root)
    relative = PurePosixPath(*path.parts[1:]) if path.is_absolute() else path  # anchor "/" or "//"
    if not relative.parts or ".." in relative.parts:
        raise _Refused(ACCESS_VIOLATION, "Access violation: path outside the TFTP root")
    try:
        target = (root / relative).resolve()  # resolves symlinks, so one pointing out is caught here
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise _Refused(ACCESS_VIOLATION, "Access violation: unresolvable path") from None
    if target == root or not target.is_relative_to(root):
        raise _Refused(ACCESS_VIOLATION, "Access violation: path outside the TFTP root")
    try:
        # O_NONBLOCK: opening a FIFO must not stall the loop; O_NOFOLLOW: a link swapped in since
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise _Refused(FILE_NOT_FOUND, "File not found") from None
    except OSError as error:
        raise _Refused(ACCESS_VIOLATION, f"Access violation: {error.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _Refused(ACCESS_VIOLATION, "Access violation: not a regular file")
    return os.fdopen(fd, "rb"), info.st_size


Rendered = Callable[[str, str], bytes | None]  # (name under the root, client address) -> the file, or None


class _Sources:
    """Where a requested name is read from: a rendered file, a mount, or the root."""

    def __init__(self, root: Path, mounts: Mapping[str, Path], rendered: Rendered | None):
        self.root = root
        self.mounts = {name: folder.resolve() for name, folder in mounts.items()}
        self.rendered = rendered

    def open(self, name: str, client: str) -> tuple[io.BufferedIOBase, int]:
        relative = name.replace("\\", "/").lstrip("/")
        if self.rendered is not None:
            data = self.rendered(relative, client)
            if data is not None:
                return io.BytesIO(data), len(data)
        first, _, rest = relative.partition("/")
        if first in self.mounts and rest:
            return _open_confined(self.mounts[first], rest)
        return _open_confined(self.root, name)


def _negotiate(requested: Mapping[str, str], size: int) -> dict[str, int]:
    """The options to acknowledge: only those asked for, valid, with ``tsize`` set to ``size``."""
    accepted: dict[str, int] = {}
    for name, value in requested.items():
        name = name.lower()  # option names are case-insensitive (RFC 2347)
        if not (value.isascii() and value.isdigit()):
            continue
        number = int(value)
        if name == "blksize" and number >= BLKSIZE_MIN:
            accepted[name] = min(number, BLKSIZE_MAX)
        elif name == "tsize":
            accepted[name] = size
        elif name == "timeout" and TIMEOUT_MIN <= number <= TIMEOUT_MAX:
            accepted[name] = number
    return accepted


# -- one transfer ------------------------------------------------------------------------------


class _Transfer(TftpContextServer):  # type: ignore[misc]  # tftpy ships no type hints
    """One download: tftpy's context and ExpectACK state, with our own request handling."""

    timeout: float  # tftpy's, replaced by a negotiated one

    def __init__(self, host: str, port: int, timeout: float, sources: _Sources, retries: int, local_ip: str):
        super().__init__(host, port, timeout, str(sources.root), retries=retries, flock=False)
        self.sources = sources
        self.tidport = port
        self.blksize = DEFAULT_BLKSIZE
        self.accepted: dict[str, int] = {}
        if local_ip:
            try:
                self.sock.bind((local_ip, 0))
            except OSError:
                log.debug("cannot answer %s:%d from %s; the kernel picks the address", host, port, local_ip)
        self.sock.setblocking(False)

    def begin(self, buffer: bytes) -> None:
        """Answer the request with an OACK or the first DATA block; raise _Refused to refuse it."""
        self.metrics.start_time = self.last_update = time.time()
        opcode = int.from_bytes(buffer[:2], "big")
        if opcode == WRQ:
            self.file_to_transfer = buffer[2:].split(b"\x00", 1)[0].decode("ascii", "replace")
            raise _Refused(ACCESS_VIOLATION, "Access violation: uploads are not accepted")
        if opcode != RRQ:
            raise _Refused(ILLEGAL_OPERATION, "Illegal TFTP operation: expected a read request")
        try:
            request = self.factory.parse(buffer)
        except Exception:  # tftpy raises its own, struct and Unicode errors on malformed packets
            raise _Refused(ILLEGAL_OPERATION, "Illegal TFTP operation: malformed request") from None
        self.file_to_transfer = request.filename
        if request.mode != "octet":
            raise _Refused(ILLEGAL_OPERATION, "Illegal TFTP operation: only octet (binary) mode is served")
        self.fileobj, size = self.sources.open(request.filename, self.address)
        self.accepted = _negotiate(request.options, size)
        self.blksize = self.accepted.get("blksize", DEFAULT_BLKSIZE)
        self.options = {"blksize": self.blksize}
        self.timeout = self.accepted.get("timeout", self.timeout)
        self.state = TftpStateExpectACK(self)
        if self.accepted:
            oack = TftpPacketOACK()
            oack.options = self.accepted
            self.sock.sendto(oack.encode().buffer, (self.address, self.tidport))
            self.last_pkt = oack
            self.next_block = 0  # the client acknowledges the OACK as block 0
        else:
            self.next_block = 1
            self.pending_complete = self.state.sendDAT()

    def receive(self) -> bool:
        """Handle one packet from the client; True once the last block is acknowledged."""
        try:
            buffer, (host, port) = self.sock.recvfrom(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        if host != self.address or port != self.tidport:
            # RFC 1350: a stray packet gets an error and leaves the transfer alone
            self.sock.sendto(_error_packet(UNKNOWN_TID, "Unknown transfer ID"), (host, port))
            return False
        self.last_update = time.time()
        if buffer[:2] == b"\x00\x05":
            message = buffer[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
            raise _ClientEnded(f"error {int.from_bytes(buffer[2:4], 'big')} {message!r}".strip())
        self.state = self.state.handle(self.factory.parse(buffer), host, port)
        self.retry_count = 0
        return self.state is None

    def send_error(self, code: int, message: str) -> None:
        try:
            self.sock.sendto(_error_packet(code, message), (self.address, self.tidport))
        except OSError as error:
            log.debug("could not send a TFTP error to %s:%d: %s", self.address, self.tidport, error)


# -- the server --------------------------------------------------------------------------------


class _ConfinedServer(tftpy.TftpServer):  # type: ignore[misc]  # tftpy ships no type hints
    """tftpy's server with a loop that survives any request and never leaves its root."""

    # tftpy's attributes this class uses
    sock: socket.socket
    listenport: int
    sessions: dict[int, _Transfer]
    is_running: threading.Event
    shutdown_gracefully: bool
    shutdown_immediately: bool

    def __init__(self, sources: _Sources, metrics: PxeMetrics):
        super().__init__(str(sources.root))
        self.sources = sources
        self.metrics = metrics
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self.bound = False  # whether the last listen() got as far as binding its socket

    def listen(self, listenip: str = "", listenport: int = 69, timeout: float = 5, retries: int = 3) -> None:
        """Serve until stop(); same arguments as tftpy's, port 0 picks a free port."""
        self.bound = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            pktinfo.enable(sock)
            sock.bind((listenip or "0.0.0.0", listenport))  # noqa: S104 - the operator's choice
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.bound = True
        self.sock = sock
        self.listenip, self.listenport = sock.getsockname()
        self._wake = socket.socketpair()
        selector = selectors.DefaultSelector()  # epoll: no FD_SETSIZE limit on concurrent transfers
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake[0], selectors.EVENT_READ)
        self.is_running.set()
        log.info("TFTP server on %s:%d serving %s read-only", self.listenip, self.listenport, self.root)
        next_check = time.time() + _TICK
        try:
            while not self.shutdown_immediately and not (self.shutdown_gracefully and not self.sessions):
                for key, _ in selector.select(_TICK if self.sessions else None):
                    if key.fileobj is sock:
                        self._accept(selector, timeout, retries)
                    elif key.fileobj is self._wake[0]:
                        self._wake[0].recv(64)
                    else:
                        self._receive(selector, key.data)
                now = time.time()
                if now >= next_check:
                    next_check = now + _TICK
                    for transfer in list(self.sessions.values()):
                        if now - transfer.last_update > transfer.timeout:
                            self._retransmit(selector, transfer, now)
        finally:
            for transfer in list(self.sessions.values()):
                self._finish(selector, transfer, "aborted", "aborted: server stopping", logging.INFO)
            selector.close()
            sock.close()
            for end in self._wake:
                end.close()
            self._wake = None
            self.is_running.clear()
            self.shutdown_gracefully = self.shutdown_immediately = False
            log.info("TFTP server on %s:%d stopped", self.listenip, self.listenport)

    def stop(self, now: bool = False) -> None:
        super().stop(now)
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(OSError):  # the loop has just ended and closed it
                wake[1].send(b"x")

    def _accept(self, selector: selectors.BaseSelector, timeout: float, retries: int) -> None:
        try:
            buffer, ancdata, _flags, (host, port) = self.sock.recvmsg(_RECV_SIZE, pktinfo.ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            log.warning("TFTP server on port %d could not receive: %s", self.listenport, error)
            return
        if self.shutdown_gracefully or len(buffer) < 2 or buffer[:2] == b"\x00\x05":
            return  # never answer an ERROR with an ERROR
        try:
            transfer = _Transfer(host, port, timeout, self.sources, retries, pktinfo.local_address(ancdata))
        except OSError as error:
            log.warning("TFTP request from %s:%d dropped: %s", host, port, error)
            return
        try:
            transfer.begin(buffer)
        except _Refused as refusal:
            transfer.send_error(refusal.code, str(refusal))
            self.metrics.tftp_errors.labels(ERROR_NAMES.get(refusal.code, "server_error")).inc()
            transfer.end()
            level = logging.WARNING if refusal.code == ACCESS_VIOLATION else logging.INFO
            name = transfer.file_to_transfer
            log.log(level, "TFTP request %r from %s:%d refused: %s", name or "", host, port, refusal)
            return
        except Exception:
            log.exception("TFTP request %r from %s:%d failed", transfer.file_to_transfer, host, port)
            transfer.send_error(NOT_DEFINED, "Server error")
            self.metrics.tftp_errors.labels("server_error").inc()
            transfer.end()
            return
        # keyed by the transfer's own socket: a client repeating its request gets a second transfer,
        # and answers the one it does not use with an error (RFC 1350), as with tftpd-hpa
        self.sessions[transfer.sock.fileno()] = transfer
        selector.register(transfer.sock, selectors.EVENT_READ, transfer)
        log.debug("TFTP %r to %s:%d started, options %s", transfer.file_to_transfer, host, port, transfer.accepted)

    def _receive(self, selector: selectors.BaseSelector, transfer: _Transfer) -> None:
        try:
            if transfer.receive():
                self._finish(selector, transfer, "complete", "sent", logging.INFO)
        except TftpTimeoutExpectACK:  # the client repeats an old ACK: our DATA got lost
            self._retransmit(selector, transfer, time.time())
        except _ClientEnded as ended:
            # a PXE ROM asking only for tsize ends right after the OACK: routine, not news
            level = logging.DEBUG if transfer.metrics.bytes == 0 else logging.INFO
            self._finish(selector, transfer, "client_ended", f"ended by the client ({ended})", level)
        except Exception as error:  # tftpy's TftpException, or struct errors on a malformed packet
            transfer.send_error(ILLEGAL_OPERATION, "Illegal TFTP operation")
            self.metrics.tftp_errors.labels("illegal_operation").inc()
            self._finish(selector, transfer, "aborted", f"aborted: {error}", logging.INFO)

    def _retransmit(self, selector: selectors.BaseSelector, transfer: _Transfer, now: float) -> None:
        transfer.retry_count += 1
        if transfer.retry_count > transfer.retries:
            self._finish(selector, transfer, "aborted", "aborted: client stopped answering", logging.INFO)
            return
        try:
            transfer.sock.sendto(transfer.last_pkt.buffer, (transfer.address, transfer.tidport))
        except OSError as error:
            log.debug("TFTP retransmission to %s failed: %s", transfer.address, error)
        transfer.metrics.resent_bytes += len(transfer.last_pkt.buffer)
        transfer.last_update = now

    def _finish(self, selector: selectors.BaseSelector, transfer: _Transfer, kind: str, outcome: str,
                level: int) -> None:
        """End a transfer; ``kind`` is its outcome as the metrics count it, ``outcome`` as the log says it."""
        key = transfer.sock.fileno()
        selector.unregister(transfer.sock)
        self.sessions.pop(key, None)
        transfer.end()
        metrics = transfer.metrics
        self.metrics.tftp_transfers.labels(kind).inc()
        self.metrics.tftp_sent_bytes.inc(metrics.bytes)
        log.log(
            level, "TFTP %r to %s:%d %s: %d bytes in %.2f s (blksize %d, %d bytes resent)",
            transfer.file_to_transfer, transfer.address, transfer.tidport, outcome, metrics.bytes,
            metrics.end_time - metrics.start_time, transfer.blksize, metrics.resent_bytes,
        )


class TftpServer:
    """Serves one root read-only over TFTP from a daemon thread; use as a context manager."""

    def __init__(self, root: Path, host: str = "0.0.0.0", port: int = 69, timeout: float = 5, retries: int = 3,  # noqa: S104
                 *, mounts: Mapping[str, Path] | None = None, rendered: Rendered | None = None,
                 metrics: PxeMetrics | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"TFTP root {self.root} is not a folder")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.metrics = metrics or PxeMetrics()
        self._server = _ConfinedServer(_Sources(self.root, mounts or {}, rendered), self.metrics)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._server.is_running.is_set()

    def start(self) -> TftpServer:
        """Start serving and return once the socket is bound (``port`` then holds the real port)."""
        if self._thread is not None:
            raise RuntimeError("TFTP server already started")
        self._error = None
        thread = threading.Thread(target=self._run, name=f"tftp-{self.host}:{self.port}", daemon=True)
        thread.start()
        while not self._server.is_running.wait(0.01):
            if not thread.is_alive():
                thread.join()
                raise self._error or RuntimeError("TFTP server ended before binding its socket")
        self._thread = thread
        self.port = self._server.listenport
        return self

    def stop(self, grace: float = 0.0) -> None:
        """Stop serving: running transfers get ``grace`` seconds to finish, then are cut off."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if grace > 0:
            self._server.stop(now=False)
            thread.join(grace)
        self._server.stop(now=True)
        thread.join(10)
        if thread.is_alive():
            log.error("TFTP server thread on port %d did not stop", self.port)

    def _run(self) -> None:
        try:
            self._server.listen(self.host, self.port, self.timeout, self.retries)
        except BaseException as error:
            self._error = error
            if self._server.bound:
                log.exception("TFTP server on port %s failed", self._server.listenport)

    def __enter__(self) -> TftpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
