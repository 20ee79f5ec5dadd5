"""Logging on to an installed Linux machine over SSH (paramiko) to run post-install items.

The host key is pinned: the keys the machine reported in its authenticated callback are the only
ones accepted, and a host answering with another key is refused, never trusted. A machine that
reported none is trusted on first use: its key's fingerprint goes into the task log and is kept
on the machine's node, so every later connection is pinned to it.

Items run as a script on the remote shell's standard input (``sh -s``), never as a command line
with values pasted in; with an account other than root, through ``sudo -n`` (no password prompt
to hang on). Their output is streamed line by line to a callback as it comes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from octoprov.errors import PermanentError, TargetUnreachable

if TYPE_CHECKING:
    import paramiko

CONNECT_TIMEOUT_S = 20


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    username: str
    host_keys: tuple[str, ...]  # OpenSSH lines "type base64 [comment]"; empty: trust on first use


@dataclass(frozen=True)
class Connection:
    client: paramiko.SSHClient
    host_key: str  # the key the host showed, "type base64"
    first_use: bool


def fingerprint(key_line: str) -> str:
    """SHA256:… as ssh-keygen -l prints it."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _known_hosts(target: SshTarget) -> paramiko.HostKeys:
    import paramiko

    host_keys = paramiko.HostKeys()
    name = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    for line in target.host_keys:
        kind, blob = line.split()[:2]
        host_keys.add(name, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
    return host_keys


@contextlib.contextmanager
def connect(target: SshTarget, private_key: str, password: str | None = None) -> Iterator[Connection]:
    """An authenticated connection (key first, then the password if one is given)."""
    import paramiko

    client = paramiko.SSHClient()
    pinned = bool(target.host_keys)
    if pinned:
        client._host_keys = _known_hosts(target)  # type: ignore[attr-defined]  # paramiko has no setter for these
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:
        # first use only: the caller logs the fingerprint and pins the key for every later connection
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
    where = f"{target.host}:{target.port}"
    try:
        client.connect(target.host, port=target.port, username=target.username,
                       pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(private_key)), password=password,
                       timeout=CONNECT_TIMEOUT_S, banner_timeout=CONNECT_TIMEOUT_S, auth_timeout=CONNECT_TIMEOUT_S,
                       allow_agent=False, look_for_keys=False)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise PermanentError(f"{where} shows host key {fingerprint(_line(exc.key))}, not the one pinned for this "
                             f"machine ({fingerprint(target.host_keys[0])}): refused") from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise PermanentError(f"{where} shows a host key of a type other than the pinned one(s): refused") from None
        if isinstance(exc, paramiko.AuthenticationException):
            raise PermanentError(f"{where} refused Octoprov's key for {target.username} (is the deploy key "
                                 f"authorised on the machine?)") from None
        raise TargetUnreachable(f"SSH to {where}: {exc}") from None
    except OSError as exc:
        client.close()
        raise TargetUnreachable(f"SSH to {where} failed: {exc}") from None
    try:
        shown = _line(_transport(client).get_remote_server_key())
        yield Connection(client, shown, not pinned)
    finally:
        client.close()


def _transport(client: paramiko.SSHClient) -> paramiko.Transport:
    transport = client.get_transport()
    assert transport is not None  # set once the client has connected, until it is closed
    return transport


def _line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def run_script(connection: Connection, script: str, *, sudo: bool, timeout_s: float,
               on_line: Callable[[str], None], check_cancelled: Callable[[], None] | None = None) -> int:
    """Run ``script`` with ``sh -s`` (through ``sudo -n`` for an account other than root); returns its
    exit status. Output (stdout and stderr, merged) reaches ``on_line`` a line at a time."""
    command = "sudo -n sh -s" if sudo else "sh -s"
    channel = _transport(connection.client).open_session()
    try:
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        channel.sendall(script.encode())
        channel.shutdown_write()
        deadline = time.monotonic() + timeout_s
        pending = b""
        while True:
            if channel.recv_ready():
                pending += channel.recv(65536)
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace").rstrip("\r"))
                continue
            if channel.exit_status_ready() and not channel.recv_ready():
                break
            if time.monotonic() > deadline:
                raise PermanentError(f"still running after {timeout_s:.0f} s: stopped")
            if check_cancelled is not None:
                check_cancelled()
            time.sleep(0.05)
        if pending:
            on_line(pending.decode(errors="replace").rstrip("\r"))
        return channel.recv_exit_status()
    finally:
        channel.close()


def upload(connection: Connection, data: bytes, name: str) -> str:
    """Write ``data`` to ``name`` in the account's home folder (readable by it alone) through ``cat``,
    not SFTP, which not every server offers; returns the file's absolute path."""
    if not re.fullmatch(r"\.?[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name):
        raise ValueError(f"unsafe file name {name!r}")
    channel = _transport(connection.client).open_session()
    try:
        channel.exec_command(f'umask 077 && cat > "$HOME/{name}" && printf %s "$HOME/{name}"')
        channel.sendall(data)
        channel.shutdown_write()
        path = b""
        while not channel.exit_status_ready() or channel.recv_ready():
            path += channel.recv(4096)
        if channel.recv_exit_status() != 0:
            raise PermanentError(f"could not write {name} on the machine")
        return path.decode()
    finally:
        channel.close()
