"""TFTP server handing the iPXE binaries (and the signed shim and GRUB) to PXE firmware.

tftpy parses the requests (and any stray packet during a transfer); the transfers run on an engine of
this module's own, because tftpy 0.8.7 on its own serves symlinks that point out of the root, accepts
uploads, dies on a single malformed option or a request for a directory, always puts ``blksize`` into
its OACK, and spends more time per block (a file read, packet objects, a dozen log calls) than the
kernel does sending it. Here one root is served read-only, a bad request or packet ends only its own
transfer, and the OACK carries exactly the accepted options (RFC 2347 negotiation of ``blksize`` 2348,
``tsize`` and ``timeout`` 2349, ``windowsize`` 7440).

Besides its root it serves *mounts* (a first path component standing for another folder, such as
``images/`` for the image library GRUB loads kernels from) and *rendered* files (the per-machine
GRUB configuration, made when asked); both confined the same way.

Speed, as tftpd-hpa's: a file of up to CACHE_FILE_MAX bytes is read once and cut into DATA packets
once per block size (the same few iPXE binaries go to every machine); an ACK is decoded in place, not
through packet objects; and a few event loops (threads) share the listening socket and the transfers
(each new one to the loop with the fewest), because most of a block's cost is the kernel's send, which
runs without the GIL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from tftpy.TftpPacketFactory import TftpPacketFactory

from octoprov.netboot import grub, pktinfo
from octoprov.netboot.metrics import PxeMetrics
from octoprov.settings import Settings

log = logging.getLogger(__name__)

IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")

RRQ, WRQ, DATA, ACK, ERROR = 1, 2, 3, 4, 5
NOT_DEFINED, FILE_NOT_FOUND, ACCESS_VIOLATION, ILLEGAL_OPERATION, UNKNOWN_TID = 0, 1, 2, 4, 5
ERROR_NAMES = {NOT_DEFINED: "server_error", FILE_NOT_FOUND: "file_not_found", ACCESS_VIOLATION: "access_violation",
               ILLEGAL_OPERATION: "illegal_operation"}  # as the metrics count them
DEFAULT_BLKSIZE = 512
BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464  # RFC 2348
TIMEOUT_MIN, TIMEOUT_MAX = 1, 255  # RFC 2349
WINDOWSIZE_MIN, WINDOWSIZE_RFC_MAX = 1, 65535  # RFC 7440; outside this the option is ignored
# A larger window is answered with this (RFC 7440 lets the server lower it): firmware polls small receive
# rings and drops longer bursts, and on a LAN 16 blocks in flight already hide the round trip.
WINDOWSIZE_MAX = 16
WINDOW_BYTES_MAX = 65536  # nor more than this in flight, so a window fits in a socket's send buffer
CACHE_FILE_MAX = 16 << 20  # files up to this size are kept in memory, cut into packets
CACHE_TOTAL_MAX = 128 << 20  # for all kept files and their packets together
MAX_DUPS = 20  # repeats of one ACK (per block of the window) that end a transfer, as tftpy counted them
_RECV_SIZE = 65536
_TICK = 0.1  # how often running transfers are checked for a missing answer
_HEADER = struct.Struct("!HH")  # opcode and block number
_FACTORY = TftpPacketFactory()  # stateless: parse() makes a new packet object each call


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


class _Resend(Exception):
    """The client repeats an old ACK long after our last DATA: that DATA got lost, send it again."""


class _TooManyRepeats(Exception):
    """A client repeating one ACK over and over (a loop, or an attack) ends its transfer."""


def _error_packet(code: int, message: str) -> bytes:
    return b"\x00\x05" + code.to_bytes(2, "big") + message.encode("ascii", "replace") + b"\x00"


def _open_confined(root: Path, name: str) -> tuple[int, os.stat_result, Path]:
    """Open ``name`` if it is a regular file under ``root`` (already resolved); else raise _Refused.

    Like tftpd-hpa's --secure, a leading slash means the root; backslashes count as slashes
    because Windows boot managers ask for ``\\Boot\\BCD``. Returns the descriptor, its stat and
    the resolved path.
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
    return fd, info, target


def _read_all(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from the start of ``fd`` (fewer if the file shrank since its stat)."""
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _cut(data: bytes, blksize: int) -> list[bytes]:
    """The DATA packets of ``data``: blocks numbered from 1 (wrapping to 0 after 65535, as tftpy and
    tftpd-hpa do), the last one shorter than ``blksize``, so empty when the size is a multiple of it."""
    view = memoryview(data)
    pack = _HEADER.pack
    return [pack(DATA, (offset // blksize + 1) & 0xFFFF) + view[offset:offset + blksize]
            for offset in range(0, len(data) + 1, blksize)]


CacheKey = tuple[str, int, int, int, int, int]  # resolved path, device, inode, size, mtime and ctime in ns


class _PacketCache:
    """Small files read once, and cut into DATA packets once per block size.

    Every machine asks for the same few iPXE binaries: reading and framing each block again for each
    client was most of the server's own time per block. The key holds the resolved path with inode,
    size and change times, so a file replaced (prepare_root renames a new copy in) or rewritten is read
    afresh; the least recently used go first when CACHE_TOTAL_MAX is reached. Shared by the loops.
    """

    def __init__(self, total: int = CACHE_TOTAL_MAX):
        self._total = total
        self._used = 0
        self._entries: OrderedDict[tuple[CacheKey, int], tuple[bytes | list[bytes], int]] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: tuple[CacheKey, int]) -> bytes | list[bytes] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def _put(self, key: tuple[CacheKey, int], value: bytes | list[bytes], cost: int) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (value, cost)
            self._used += cost
            while self._used > self._total and len(self._entries) > 1:
                _, (_, freed) = self._entries.popitem(last=False)
                self._used -= freed

    def data(self, key: CacheKey, fd: int, size: int) -> bytes:
        """The file's content: kept, or read from ``fd`` now and kept."""
        found = self._get((key, 0))
        if isinstance(found, bytes):
            return found
        data = _read_all(fd, size)
        self._put((key, 0), data, len(data))
        return data

    def packets(self, key: CacheKey, data: bytes, blksize: int) -> list[bytes]:
        """The file's DATA packets for ``blksize``: kept, or cut now and kept."""
        found = self._get((key, blksize))
        if isinstance(found, list):
            return found
        packets = _cut(data, blksize)
        self._put((key, blksize), packets, len(data) + 40 * len(packets))  # 40: the list's and objects' overhead
        return packets


class _Content:
    """A requested file: whole in memory (``data``; ``key`` set when it is kept in the cache), or open
    for reading block by block (``fd``) when larger than CACHE_FILE_MAX."""

    __slots__ = ("data", "fd", "key", "size")

    def __init__(self, size: int, data: bytes | None = None, fd: int = -1, key: CacheKey | None = None):
        self.size = size
        self.data = data
        self.fd = fd
        self.key = key


Rendered = Callable[[str, str], bytes | None]  # (name under the root, client address) -> the file, or None


class _Sources:
    """Where a requested name is read from: a rendered file, a mount, or the root."""

    def __init__(self, root: Path, mounts: Mapping[str, Path], rendered: Rendered | None):
        self.root = root
        self.mounts = {name: folder.resolve() for name, folder in mounts.items()}
        self.rendered = rendered
        self.cache = _PacketCache()

    def open(self, name: str, client: str) -> _Content:
        relative = name.replace("\\", "/").lstrip("/")
        if self.rendered is not None:
            data = self.rendered(relative, client)
            if data is not None:
                return _Content(len(data), data)
        first, _, rest = relative.partition("/")
        if first in self.mounts and rest:
            fd, info, target = _open_confined(self.mounts[first], rest)
        else:
            fd, info, target = _open_confined(self.root, name)
        if info.st_size > CACHE_FILE_MAX:
            return _Content(info.st_size, fd=fd)
        key = (str(target), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        try:
            data = self.cache.data(key, fd, info.st_size)
        finally:
            os.close(fd)
        return _Content(len(data), data, key=key)


def _negotiate(requested: Mapping[str, str], size: int) -> dict[str, int]:
    """The options to acknowledge: only those asked for, valid, with ``tsize`` set to ``size`` and
    ``windowsize`` lowered to what this server sends at once."""
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
        elif name == "windowsize" and WINDOWSIZE_MIN <= number <= WINDOWSIZE_RFC_MAX:
            accepted[name] = min(number, WINDOWSIZE_MAX)
    if "windowsize" in accepted:  # blksize may come after it
        fits = WINDOW_BYTES_MAX // accepted.get("blksize", DEFAULT_BLKSIZE)
        accepted["windowsize"] = max(1, min(accepted["windowsize"], fits))
    return accepted


def _oack_packet(options: Mapping[str, int]) -> bytes:
    return b"\x00\x06" + b"".join(name.encode("ascii") + b"\x00" + str(value).encode("ascii") + b"\x00"
                                  for name, value in options.items())


# -- one transfer ------------------------------------------------------------------------------


class _Transfer:
    """One download on its own socket (the server's TID for it).

    Blocks are counted from 1 without wrapping (``acked``, ``window_end``, ``sent``, ``last``); only
    the wire numbers wrap. In lock-step (no ``windowsize``: RFC 1350) the window is one block. With
    RFC 7440 a window of blocks goes out at once; an ACK of block n acknowledges everything up to n
    and the next window starts at n + 1, so an ACK for a block before the window's end (the client
    saw a gap) sends the lost block again at once.
    """

    __slots__ = ("accepted", "acked", "blksize", "bytes", "dups", "end_time", "fd", "file_to_transfer", "host",
                 "last", "last_dat_time", "last_update", "oack", "packets", "peer", "port", "resent_bytes",
                 "retries", "retry_count", "rewound", "sent", "sock", "sources", "start_time", "timeout",
                 "window_end", "windowsize")

    def __init__(self, host: str, port: int, timeout: float, sources: _Sources, retries: int, local_ip: str):
        self.host, self.port, self.peer = host, port, (host, port)
        self.timeout = timeout
        self.sources = sources
        self.retries = retries
        self.retry_count = 0
        self.file_to_transfer = ""
        self.accepted: dict[str, int] = {}
        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.packets: list[bytes] | None = None
        self.fd = -1
        self.oack = b""
        self.acked = self.window_end = self.sent = self.last = 0
        self.rewound = False
        self.dups: dict[int, int] = {}
        self.bytes = self.resent_bytes = 0
        self.start_time = self.end_time = self.last_update = self.last_dat_time = 0.0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if local_ip:
            try:
                self.sock.bind((local_ip, 0))
            except OSError:
                log.debug("cannot answer %s:%d from %s; the kernel picks the address", host, port, local_ip)
        self.sock.setblocking(False)

    def begin(self, buffer: bytes, now: float) -> None:
        """Answer the request with an OACK or the first DATA; raise _Refused to refuse it."""
        self.start_time = self.last_update = now
        opcode = int.from_bytes(buffer[:2], "big")
        if opcode == WRQ:
            self.file_to_transfer = buffer[2:].split(b"\x00", 1)[0].decode("ascii", "replace")
            raise _Refused(ACCESS_VIOLATION, "Access violation: uploads are not accepted")
        if opcode != RRQ:
            raise _Refused(ILLEGAL_OPERATION, "Illegal TFTP operation: expected a read request")
        try:
            request = _FACTORY.parse(buffer)
        except Exception:  # tftpy raises its own, struct and Unicode errors on malformed packets
            raise _Refused(ILLEGAL_OPERATION, "Illegal TFTP operation: malformed request") from None
        self.file_to_transfer = request.filename
        if request.mode != "octet":
            raise _Refused(ILLEGAL_OPERATION, "Illegal TFTP operation: only octet (binary) mode is served")
        content = self.sources.open(request.filename, self.host)
        self.fd = content.fd
        self.accepted = _negotiate(request.options, content.size)
        self.blksize = self.accepted.get("blksize", DEFAULT_BLKSIZE)
        self.windowsize = self.accepted.get("windowsize", 1)
        self.timeout = self.accepted.get("timeout", self.timeout)
        if content.data is None:
            self.last = content.size // self.blksize + 1  # may move if the file changes meanwhile (_read)
        else:
            if content.key is None:  # rendered for this client: not kept
                self.packets = _cut(content.data, self.blksize)
            else:
                self.packets = self.sources.cache.packets(content.key, content.data, self.blksize)
            self.last = len(self.packets)
        if self.accepted:
            self.oack = _oack_packet(self.accepted)
            self.sock.sendto(self.oack, self.peer)
            self.acked = -1  # the client acknowledges the OACK as block 0
        else:
            self._send(1, now)

    def receive(self, buffer: bytearray, now: float) -> bool:
        """Handle one packet from the client; True once the last block is acknowledged."""
        try:
            size, peer = self.sock.recvfrom_into(buffer)
        except (BlockingIOError, InterruptedError):
            return False
        if peer != self.peer:
            # RFC 1350: a stray packet gets an error and leaves the transfer alone
            self.sock.sendto(_error_packet(UNKNOWN_TID, "Unknown transfer ID"), peer)
            return False
        self.last_update = now
        if size >= 4 and buffer[1] == ACK and buffer[0] == 0:  # the usual packet, decoded in place
            return self._acknowledged((buffer[2] << 8) | buffer[3], now)
        packet = bytes(buffer[:size])
        if packet[:2] == b"\x00\x05":
            message = packet[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
            raise _ClientEnded(f"error {int.from_bytes(packet[2:4], 'big')} {message!r}".strip())
        _FACTORY.parse(packet)  # raises on a malformed packet (ending the transfer); a well-formed one is ignored
        self.retry_count = 0
        return False

    def _acknowledged(self, block: int, now: float) -> bool:
        acked = self.acked
        ahead = (block - acked) & 0xFFFF
        if 0 < ahead <= self.window_end - acked:  # acknowledges blocks in flight, up to acked + ahead
            self.retry_count = 0
            if acked + ahead >= self.last:
                return True
            self.acked = acked + ahead
            self.rewound = False
            self._send(acked + ahead + 1, now)
            return False
        if acked >= 0 and (acked - block) & 0xFFFF < 0x8000:  # a repeat of an ACK already had
            repeats = self.dups[block] = self.dups.get(block, 0) + 1
            if repeats >= MAX_DUPS * self.windowsize:
                raise _TooManyRepeats(f"ACK of block {block} repeated {repeats} times")
            if block == acked & 0xFFFF and self.windowsize > 1 and not self.rewound:
                # RFC 7440: the first block of the window went missing; the rest come again with it,
                # once per window (the client may repeat this ACK for each block after the gap)
                self.rewound = True
                self._send(acked + 1, now)
            elif self.last_dat_time and now - self.last_dat_time > self.timeout:
                raise _Resend
        # an ACK for a block not sent yet is ignored, as is a repeat soon after our DATA (the
        # Sorcerer's Apprentice bug: answering each repeat doubles every block from then on)
        self.retry_count = 0
        return False

    def _send(self, first: int, now: float) -> None:
        """Send the window from block ``first``: one block in lock-step, up to ``windowsize``."""
        index, sock, peer, packets = first, self.sock, self.peer, self.packets
        end = min(first + self.windowsize - 1, self.last)
        while index <= end:
            packet = packets[index - 1] if packets is not None else self._read(index)
            try:  # noqa: SIM105 - contextlib.suppress would make an object per packet
                sock.sendto(packet, peer)
            except BlockingIOError:  # a full send buffer drops it, as a network would; it comes again
                pass
            if index > self.sent:
                self.sent = index
                self.bytes += len(packet) - 4
            else:
                self.resent_bytes += len(packet)
            index += 1
            if self.last < end:  # a file read block by block ended early
                end = self.last
        self.window_end = index - 1
        self.last_dat_time = now

    def _read(self, index: int) -> bytes:
        """Block ``index`` of a file too large to keep, read now."""
        payload = os.pread(self.fd, self.blksize, (index - 1) * self.blksize)
        if len(payload) < self.blksize:
            self.last = index  # read until a short block, as the file is now
        elif index == self.last:
            self.last += 1
        return _HEADER.pack(DATA, index & 0xFFFF) + payload

    def resend(self, now: float) -> None:
        """Send what the client has not acknowledged again: the OACK, or the window."""
        if self.acked < 0:
            self.sock.sendto(self.oack, self.peer)
            self.resent_bytes += len(self.oack)
        else:
            self._send(self.acked + 1, now)

    def send_error(self, code: int, message: str) -> None:
        try:
            self.sock.sendto(_error_packet(code, message), self.peer)
        except OSError as error:
            log.debug("could not send a TFTP error to %s:%d: %s", self.host, self.port, error)

    def end(self, now: float) -> None:
        self.end_time = now
        self.sock.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- the server --------------------------------------------------------------------------------


class _Loop:
    """One event loop: takes requests from the shared listening socket and runs transfers.

    A new transfer goes to the loop with the fewest: requests come one at a time, so the kernel would
    wake the same idle loop for each, and that loop alone would send every block.
    """

    def __init__(self, server: _ConfinedServer, sock: socket.socket, timeout: float, retries: int):
        self.server = server
        self.sock = sock
        self.timeout = timeout
        self.retries = retries
        self.sessions: dict[int, _Transfer] = {}  # by the transfer socket's descriptor
        self.buffer = bytearray(_RECV_SIZE)
        self.wake, self.waker = socket.socketpair()
        self.wake.setblocking(False)
        self.inbox: list[_Transfer] = []  # transfers another loop started for this one
        self.closed = False  # set when the loop ends: it takes no more transfers
        self.lock = threading.Lock()  # guards inbox and closed

    @property
    def load(self) -> int:
        return len(self.sessions) + len(self.inbox)

    def adopt(self, transfer: _Transfer) -> bool:
        """Take over a transfer another loop started (from that loop's thread); False once ended."""
        with self.lock:
            if self.closed:
                return False
            self.inbox.append(transfer)
        with contextlib.suppress(OSError):  # a full wake socket: the loop is awake anyway
            self.waker.send(b"\x00")
        return True

    def _take_inbox(self, poller: select.epoll) -> None:
        with self.lock:
            adopted, self.inbox = self.inbox, []
        for transfer in adopted:
            fd = transfer.sock.fileno()
            self.sessions[fd] = transfer
            poller.register(fd, select.EPOLLIN)

    def run(self) -> None:
        server, sessions, buffer = self.server, self.sessions, self.buffer
        listening, wake = self.sock.fileno(), self.wake.fileno()
        poller = select.epoll()  # no FD_SETSIZE limit on concurrent transfers
        poller.register(listening, select.EPOLLIN | select.EPOLLEXCLUSIVE)  # one loop woken per request
        poller.register(wake, select.EPOLLIN)
        next_check = time.monotonic() + _TICK
        try:
            while not server.shutdown_immediately and not (server.shutdown_gracefully and not self.load):
                events = poller.poll(_TICK if sessions else -1)
                now = time.monotonic()
                for fd, _ in events:
                    transfer = sessions.get(fd)
                    if transfer is not None:
                        self._receive(poller, transfer, buffer, now)
                    elif fd == listening:
                        self._accept(poller, now)
                    elif fd == wake:
                        with contextlib.suppress(BlockingIOError):
                            self.wake.recv(4096)
                if self.inbox:
                    self._take_inbox(poller)
                if now >= next_check:
                    next_check = now + _TICK
                    for transfer in list(sessions.values()):
                        if now - transfer.last_update > transfer.timeout:
                            self._retransmit(poller, transfer, now)
        finally:
            with self.lock:
                self.closed = True
            self._take_inbox(poller)
            for transfer in list(sessions.values()):
                self._finish(poller, transfer, "aborted", "aborted: server stopping", logging.INFO)
            poller.close()

    def close(self) -> None:
        self.wake.close()
        self.waker.close()

    def _accept(self, poller: select.epoll, now: float) -> None:
        server = self.server
        try:
            buffer, ancdata, _flags, (host, port) = self.sock.recvmsg(_RECV_SIZE, pktinfo.ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            log.warning("TFTP server on port %d could not receive: %s", server.listenport, error)
            return
        if server.shutdown_gracefully or len(buffer) < 2 or buffer[:2] == b"\x00\x05":
            return  # never answer an ERROR with an ERROR
        try:
            transfer = _Transfer(host, port, self.timeout, server.sources, self.retries,
                                 pktinfo.local_address(ancdata))
        except OSError as error:
            log.warning("TFTP request from %s:%d dropped: %s", host, port, error)
            return
        try:
            transfer.begin(buffer, now)
        except _Refused as refusal:
            transfer.send_error(refusal.code, str(refusal))
            server.metrics.tftp_errors.labels(ERROR_NAMES.get(refusal.code, "server_error")).inc()
            transfer.end(now)
            level = logging.WARNING if refusal.code == ACCESS_VIOLATION else logging.INFO
            log.log(level, "TFTP request %r from %s:%d refused: %s", transfer.file_to_transfer, host, port, refusal)
            return
        except Exception:
            log.exception("TFTP request %r from %s:%d failed", transfer.file_to_transfer, host, port)
            transfer.send_error(NOT_DEFINED, "Server error")
            server.metrics.tftp_errors.labels("server_error").inc()
            transfer.end(now)
            return
        # keyed by the transfer's own socket: a client repeating its request gets a second transfer,
        # and answers the one it does not use with an error (RFC 1350), as with tftpd-hpa
        target = min(server.running_loops, key=lambda loop: (loop.load, loop is not self), default=self)
        if target is self or not target.adopt(transfer):
            fd = transfer.sock.fileno()
            self.sessions[fd] = transfer
            poller.register(fd, select.EPOLLIN)
        log.debug("TFTP %r to %s:%d started, options %s", transfer.file_to_transfer, host, port, transfer.accepted)

    def _receive(self, poller: select.epoll, transfer: _Transfer, buffer: bytearray, now: float) -> None:
        try:
            if transfer.receive(buffer, now):
                self._finish(poller, transfer, "complete", "sent", logging.INFO)
        except _Resend:
            self._retransmit(poller, transfer, now)
        except _ClientEnded as ended:
            # a PXE ROM asking only for tsize ends right after the OACK: routine, not news
            level = logging.DEBUG if transfer.bytes == 0 else logging.INFO
            self._finish(poller, transfer, "client_ended", f"ended by the client ({ended})", level)
        except Exception as error:  # a malformed packet (tftpy's TftpException, struct errors), or a read error
            transfer.send_error(ILLEGAL_OPERATION, "Illegal TFTP operation")
            self.server.metrics.tftp_errors.labels("illegal_operation").inc()
            self._finish(poller, transfer, "aborted", f"aborted: {error}", logging.INFO)

    def _retransmit(self, poller: select.epoll, transfer: _Transfer, now: float) -> None:
        transfer.retry_count += 1
        if transfer.retry_count > transfer.retries:
            self._finish(poller, transfer, "aborted", "aborted: client stopped answering", logging.INFO)
            return
        try:
            transfer.resend(now)
        except OSError as error:
            log.debug("TFTP retransmission to %s failed: %s", transfer.host, error)
        transfer.last_update = now

    def _finish(self, poller: select.epoll, transfer: _Transfer, kind: str, outcome: str, level: int) -> None:
        """End a transfer; ``kind`` is its outcome as the metrics count it, ``outcome`` as the log says it."""
        fd = transfer.sock.fileno()
        poller.unregister(fd)
        self.sessions.pop(fd, None)
        transfer.end(time.monotonic())
        metrics = self.server.metrics
        metrics.tftp_transfers.labels(kind).inc()
        metrics.tftp_sent_bytes.inc(transfer.bytes)
        window = f", windowsize {transfer.windowsize}" if "windowsize" in transfer.accepted else ""
        log.log(
            level, "TFTP %r to %s:%d %s: %d bytes in %.2f s (blksize %d%s, %d bytes resent)",
            transfer.file_to_transfer, transfer.host, transfer.port, outcome, transfer.bytes,
            transfer.end_time - transfer.start_time, transfer.blksize, window, transfer.resent_bytes,
        )


def _default_loops() -> int:
    """Two loops where there are two cores: each loop's sends overlap the other's Python work."""
    return max(1, min(2, len(os.sched_getaffinity(0))))


class _ConfinedServer:
    """The listening socket and the loops sharing it; read-only, never leaving its root."""

    def __init__(self, sources: _Sources, metrics: PxeMetrics, loops: int):
        self.sources = sources
        self.metrics = metrics
        self.loops = loops
        self.root = str(sources.root)
        self.listenip, self.listenport = "", 0
        self.is_running = threading.Event()
        self.shutdown_gracefully = False
        self.shutdown_immediately = False
        self.bound = False  # whether the last listen() got as far as binding its socket
        self.running_loops: list[_Loop] = []

    def listen(self, listenip: str = "", listenport: int = 69, timeout: float = 5, retries: int = 3) -> None:
        """Serve until stop(); port 0 picks a free port. The first loop runs in the calling thread."""
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
        self.listenip, self.listenport = sock.getsockname()
        loops = [_Loop(self, sock, timeout, retries) for _ in range(self.loops)]
        self.running_loops = loops
        name = threading.current_thread().name
        threads = [threading.Thread(target=self._run_extra, args=(loop,), name=f"{name}/{number}", daemon=True)
                   for number, loop in enumerate(loops[1:], 1)]
        for thread in threads:
            thread.start()
        self.is_running.set()
        log.info("TFTP server on %s:%d serving %s read-only", self.listenip, self.listenport, self.root)
        try:
            loops[0].run()
        except BaseException:
            self.stop(now=True)
            raise
        finally:
            for thread in threads:
                thread.join()
            self.running_loops = []
            for loop in loops:
                loop.close()
            sock.close()
            self.is_running.clear()
            self.shutdown_gracefully = self.shutdown_immediately = False
            log.info("TFTP server on %s:%d stopped", self.listenip, self.listenport)

    def _run_extra(self, loop: _Loop) -> None:
        try:
            loop.run()
        except Exception:
            log.exception("a TFTP server loop on port %d failed", self.listenport)

    def stop(self, now: bool = False) -> None:
        """Take no new transfers; with ``now``, also cut off the running ones."""
        if now:
            self.shutdown_immediately = True
        else:
            self.shutdown_gracefully = True
        for loop in self.running_loops:
            with contextlib.suppress(OSError):  # the loops have just ended and closed it
                loop.waker.send(b"x")


class TftpServer:
    """Serves one root read-only over TFTP from a daemon thread; use as a context manager.

    ``loops``: how many event loops (threads) share the requests, by default one per core up to two.
    """

    def __init__(self, root: Path, host: str = "0.0.0.0", port: int = 69, timeout: float = 5, retries: int = 3,  # noqa: S104
                 *, mounts: Mapping[str, Path] | None = None, rendered: Rendered | None = None,
                 metrics: PxeMetrics | None = None, loops: int | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"TFTP root {self.root} is not a folder")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.metrics = metrics or PxeMetrics()
        self._server = _ConfinedServer(_Sources(self.root, mounts or {}, rendered), self.metrics,
                                       loops or _default_loops())
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
