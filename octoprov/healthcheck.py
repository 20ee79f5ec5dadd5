"""`octoprov healthcheck ROLE`: is this container's service healthy? For the container engine's HEALTHCHECK.

One function per role; each returns None when the service answers as it should and raises HealthcheckFailed
with one line for the operator otherwise. The engine runs the check every few seconds inside the container,
so every network exchange has a timeout, the whole check runs under a deadline (``within``), nothing is
written to disk or to the service's state, and no message carries a password (broker URLs are sanitised).

The services are reached where they listen from inside their own container: a wildcard bind (0.0.0.0,
``::``) on 127.0.0.1, a specific address on that address (``local_address``).
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from celery import Celery

ROLES = ("api", "worker", "beat", "flower", "pxe", "samba")
DEFAULT_TIMEOUT_S = 3.0
LOOPBACK = "127.0.0.1"
FLOWER_PORT = 5555  # `octoprov flower --port`'s default
SMB_PORT = 445  # the generated smb.conf's `smb ports`


class HealthcheckFailed(Exception):
    """The role is not healthy; the message says what failed, in one line, with no secret in it."""


def local_address(host: str) -> str:
    """Where a service bound to ``host`` is reached from its own container: the wildcard binds on loopback."""
    return LOOPBACK if host in ("", "0.0.0.0", "::", "[::]") else host  # noqa: S104 - comparing, not binding


def within(deadline_s: float, check: Callable[[], None]) -> None:
    """Run ``check`` but give up after ``deadline_s``: a name lookup (getaddrinfo) has no socket timeout, and
    a health check that hangs is worse than one that fails. The check runs in a daemon thread left behind."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            check()
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="healthcheck", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if not outcome:
        raise HealthcheckFailed(f"no outcome within {deadline_s:g} s")
    if outcome[0] is not None:
        raise outcome[0]


# -- HTTP: api, flower -------------------------------------------------------------------------------------


def _http_get(host: str, port: int, path: str, timeout: float, read: int = 0) -> tuple[int, bytes]:
    """Status and the first ``read`` bytes of the body of GET http://host:port/path."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "octoprov-healthcheck"})
        response = connection.getresponse()
        return response.status, response.read(read) if read else b""
    except (OSError, http.client.HTTPException) as exc:
        raise HealthcheckFailed(f"GET http://{host}:{port}{path}: {exc or type(exc).__name__}") from None
    finally:
        connection.close()


def check_api(host: str, port: int, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """The API answers GET /api/v1/swagger.json with 200. The API has no health endpoint of its own; this
    document needs no token and no database (flask-restx builds it once per process), so it proves the
    gunicorn workers serve requests without making a database outage look like a broken API."""
    path = "/api/v1/swagger.json"
    status, _ = _http_get(host, port, path, timeout)
    if status != 200:
        raise HealthcheckFailed(f"GET http://{host}:{port}{path} answered {status}, not 200")


def check_flower(host: str = LOOPBACK, port: int = FLOWER_PORT, timeout: float = DEFAULT_TIMEOUT_S,
                 url_prefix: str | None = None) -> None:
    """Flower answers GET /healthcheck with 200 "OK": Flower 2's own health endpoint, which needs no
    credentials even with FLOWER_BASIC_AUTH set. ``url_prefix`` (default: FLOWER_URL_PREFIX, as Flower reads
    it) goes in front of the path, as Flower routes it."""
    prefix = (os.environ.get("FLOWER_URL_PREFIX", "") if url_prefix is None else url_prefix).strip("/")
    path = f"/{prefix}/healthcheck" if prefix else "/healthcheck"
    status, body = _http_get(host, port, path, timeout, read=64)
    if status != 200 or body.strip() != b"OK":
        raise HealthcheckFailed(f"GET http://{host}:{port}{path} answered {status} {body[:20]!r}, not 200 'OK'")


# -- Celery: worker, beat ----------------------------------------------------------------------------------


def worker_nodename(hostname: str | None) -> str:
    """The node name a worker started with ``--hostname hostname`` has, expanded as Celery's own option does
    (``%h`` host, ``%n`` its first label, ``%d`` its domain; no ``@`` part: ``celery@``); None: the default,
    ``celery@<host>``."""
    from celery.utils.nodenames import default_nodename, host_format

    return str(host_format(default_nodename(hostname)))


def _scrub(text: str, url: str) -> str:
    """``text`` without the password of ``url``, should a library have put it there."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "**") if password else text


def check_worker(app: Celery, nodename: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """The worker ``nodename`` answers a ping over the broker (remote control, as `celery inspect ping`):
    its main process reads the broker and answers even while its pool runs long steps. One connection
    attempt, no retries: the engine runs the check again soon enough."""
    from kombu.utils.url import maybe_sanitize_url

    broker = str(app.conf.broker_url)
    safe = maybe_sanitize_url(broker)
    if broker.startswith(("sqla+", "sqlalchemy+")):
        raise HealthcheckFailed(f"cannot ping {nodename}: the embedded broker ({safe}) carries no pings; "
                                "set OCTOPROV_BROKER_URL to Redis")
    try:
        # redis-py's connect timeout comes from the transport options (kombu passes it no other); the wait
        # for the answer is the ping's own timeout, and ``within`` bounds the rest
        options = {"socket_connect_timeout": timeout}
        with app.connection_for_write(connect_timeout=timeout, transport_options=options) as connection:
            connection.ensure_connection(max_retries=0)
            replies: list[dict[str, Any]] = app.control.ping(destination=[nodename], timeout=timeout,
                                                             connection=connection) or []
    except Exception as exc:  # kombu's and redis-py's errors: the broker could not be reached or used
        reason = _scrub(str(exc), broker) or type(exc).__name__
        raise HealthcheckFailed(f"cannot ping {nodename}: broker {safe}: {reason}") from None
    if not any(nodename in reply for reply in replies):
        raise HealthcheckFailed(f"{nodename} did not answer a ping within {timeout:g} s (broker {safe})")


def beat_max_age(app: Celery) -> float:
    """Seconds the schedule file of a healthy beat can go without being written.

    Celery's PersistentScheduler writes its shelve at start and then whenever ``should_sync()`` holds at one
    of its checks: after each task it sends and after each sleep of its loop. It holds once ``sync_every``
    (180 s) have passed since the last write (or after ``beat_sync_every`` tasks, which is only sooner). The
    loop sleeps until the next entry is due, at most ``beat_max_loop_interval`` (300 s by default): so it
    wakes at least every ``wake`` = min(shortest interval, max loop interval) seconds, and the first check
    after the 180 s comes at most ``wake`` later. One more ``wake`` covers a pass made late by the work in
    it (publishing with retries while the broker is away; the write happens even when sending failed).
    With Octoprov's one entry, check-deadlines every DEADLINE_CHECK_S (15 s): 180 + 2 x 15 = 210 s.

    Why the file and not a ping: Celery 5.7 beat can answer pings, but only with beat_enable_remote_control
    (off by default), not on the embedded broker, and not in older Celery; the file works with both brokers.
    """
    from celery.beat import PersistentScheduler
    from celery.schedules import maybe_schedule, schedule

    max_loop = float(app.conf.beat_max_loop_interval or PersistentScheduler.max_interval)
    intervals = [max_loop]
    for entry in (app.conf.beat_schedule or {}).values():
        every = maybe_schedule(entry["schedule"], app=app)
        if isinstance(every, schedule):
            intervals.append(every.run_every.total_seconds())
    wake = max(1.0, min(intervals))
    return float(PersistentScheduler.sync_every) + 2 * wake


def check_beat(app: Celery, now: float | None = None) -> None:
    """Beat's schedule file (beat_schedule_filename; dbm adds a suffix such as .db or .dat/.dir) was written
    within ``beat_max_age``. A beat that stopped ticking, or never started, stops writing it."""
    from celery.beat import PersistentScheduler

    base = str(app.conf.beat_schedule_filename)
    times = []
    for suffix in PersistentScheduler.known_suffixes:
        try:
            times.append(os.stat(base + suffix).st_mtime)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise HealthcheckFailed(f"cannot read the schedule file {base}{suffix}: {exc.strerror}") from None
    if not times:
        raise HealthcheckFailed(f"no schedule file {base}: beat has not started (or writes elsewhere)")
    age, bound = (time.time() if now is None else now) - max(times), beat_max_age(app)
    if age > bound:
        raise HealthcheckFailed(f"schedule file {base} last written {age:.0f} s ago, "
                                f"more than {bound:.0f} s: beat has stopped ticking")


# -- pxe: TFTP ---------------------------------------------------------------------------------------------

_RRQ, _DATA, _ERROR, _OACK = 1, 3, 5, 6


def check_pxe(host: str, port: int, timeout: float = DEFAULT_TIMEOUT_S, filename: str | None = None) -> None:
    """The TFTP server answers a read request for ``filename`` (default: GRUB's entry configuration, which
    the server writes into its root at every start, unlike the iPXE binaries, which may be missing).

    The request asks for the ``tsize`` option, as PXE firmware does: the server opens the file and answers
    with an OACK carrying its size (a server ignoring options would send the first DATA block; either
    counts), and the check then ends the transfer with an ERROR, which the server logs at DEBUG only, so a
    check every few seconds does not fill its log. A TFTP ERROR (such as file not found) fails the check.
    """
    from octoprov.netboot.grub import ENTRY_FILE

    name = filename or ENTRY_FILE
    request = struct.pack("!H", _RRQ) + name.encode() + b"\0octet\0tsize\0" + b"0\0"
    where = f"{host}:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            deadline = time.monotonic() + timeout
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                packet, peer = sock.recvfrom(4096)
                opcode = int.from_bytes(packet[:2], "big")
                if opcode in (_OACK, _DATA):
                    sock.sendto(struct.pack("!HH", _ERROR, 0) + b"health check done\0", peer)
                    return
                if opcode == _ERROR:
                    message = packet[4:].split(b"\0", 1)[0].decode("ascii", "replace")
                    raise HealthcheckFailed(f"TFTP {where} refused {name!r}: {message}")
        except TimeoutError:
            raise HealthcheckFailed(f"TFTP {where}: no answer to a read request for {name!r} "
                                    f"within {timeout:g} s") from None
        except OSError as exc:
            raise HealthcheckFailed(f"TFTP {where}: {exc.strerror or exc}") from None


# -- samba: SMB2 NEGOTIATE ---------------------------------------------------------------------------------

SMB2_DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2"}  # 3.1.1 needs contexts


def smb2_negotiate_request() -> bytes:
    """An SMB2 NEGOTIATE request offering 2.0.2 to 3.0.2, in its NetBIOS session frame (MS-SMB2 2.2.3)."""
    header = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, b"\0" * 16)
    body = struct.pack("<HHHHI16sQ", 36, len(SMB2_DIALECTS), 1, 0, 0, uuid.uuid4().bytes_le, 0)
    body += b"".join(struct.pack("<H", dialect) for dialect in SMB2_DIALECTS)
    message = header + body
    return b"\0" + len(message).to_bytes(3, "big") + message


def smb2_negotiated_dialect(message: bytes) -> str:
    """The dialect of an SMB2 NEGOTIATE response (without its 4-byte frame); HealthcheckFailed if it is
    not a successful one (MS-SMB2 2.2.1, 2.2.4)."""
    if len(message) < 64 + 6 or message[:4] != b"\xfeSMB":
        raise HealthcheckFailed(f"not an SMB2 answer: {message[:8]!r}")
    status, command = struct.unpack_from("<IH", message, 8)
    if command != 0:
        raise HealthcheckFailed(f"SMB2 answer to NEGOTIATE is command {command}")
    if status != 0:
        raise HealthcheckFailed(f"SMB2 NEGOTIATE failed with status 0x{status:08x}")
    size, _, dialect = struct.unpack_from("<HHH", message, 64)
    if size != 65 or dialect not in SMB2_DIALECTS:
        raise HealthcheckFailed(f"SMB2 NEGOTIATE answer with size {size} and dialect 0x{dialect:04x}")
    return SMB2_DIALECTS[dialect]


def _receive(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise HealthcheckFailed(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def check_samba(host: str = LOOPBACK, port: int = SMB_PORT, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """smbd accepts a connection and answers an SMB2 NEGOTIATE: it runs, listens, and speaks SMB2, which is
    what WinPE needs first. A few bytes, no logon, no share; no client (smbclient) needed in the image."""
    negotiate_smb2(host, port, timeout)


def negotiate_smb2(host: str = LOOPBACK, port: int = SMB_PORT, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """The SMB2 dialect the server at host:port chooses from 2.0.2 to 3.0.2; HealthcheckFailed if none."""
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(smb2_negotiate_request())
            frame = _receive(sock, 4)
            length = int.from_bytes(frame[1:], "big")
            if frame[0] != 0 or not 64 <= length <= 65536:
                raise HealthcheckFailed(f"not an SMB answer: {frame!r}")
            return smb2_negotiated_dialect(_receive(sock, length))
    except HealthcheckFailed as exc:
        raise HealthcheckFailed(f"SMB {where}: {exc}") from None
    except TimeoutError:
        raise HealthcheckFailed(f"SMB {where}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise HealthcheckFailed(f"SMB {where}: {exc.strerror or exc}") from None
