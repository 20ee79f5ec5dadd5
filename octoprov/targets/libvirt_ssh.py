"""How a worker reaches a KVM host over SSH with the node's stored key.

A node registered with a private key is connected through libvirt's built-in SSH client
(``qemu+libssh``) rather than the ``ssh`` program: only it takes the key and the known hosts as
files of our choosing, so no worker's ``~/.ssh`` has to be set up, and the host key is checked
against the one stored with the node (``kvm.hostKey``), never skipped. Both files exist only
while the connection is opened (they are read to authenticate) in a private temporary folder.
Without a stored key the URI is used as given (``ssh`` with the worker's own keys and known hosts),
with no terminal to prompt on: a worker has no one to answer.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SSH_SCHEMES = ("qemu+ssh", "qemu+libssh", "qemu+libssh2")
HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) ([A-Za-z0-9+/]+={0,3})(?: .*)?$")


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


def known_hosts_line(parts, host_key: str) -> str:
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
