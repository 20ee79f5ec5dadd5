"""SHA-256 digests of boot files, as a site's edge checks them: the digest travels in the ``Digest`` header
(RFC 3230, ``sha-256=<base64>``) of the central boot-file response when the edge asks for it (``Want-Digest``).

Kept per file and its identity (device, inode, size, modification time), so a multi-gigabyte WIM is read once
per process; a file rewritten in place with a new modification time is read again."""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

HEADER, WANT = "Digest", "Want-Digest"
ALGORITHM = "sha-256"
_CHUNK = 1 << 20

_known: dict[tuple[str, int, int, int, int], str] = {}
_lock = threading.Lock()


def wants_sha256(want_digest: str | None) -> bool:
    """Whether a ``Want-Digest`` header asks for SHA-256 (``sha-256``, ``SHA-256;q=1``, ...)."""
    return any(part.split(";")[0].strip().lower() == ALGORITHM for part in (want_digest or "").split(","))


def sha256_file(path: Path) -> str:
    """The file's SHA-256 as lower-case hex, from the per-process record when the file is unchanged."""
    info = path.stat()
    key = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    with _lock:
        found = _known.get(key)
    if found is None:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        found = digest.hexdigest()
        with _lock:
            if len(_known) > 10_000:
                _known.clear()
            _known[key] = found
    return found


def header_value(hex_digest: str) -> str:
    return f"{ALGORITHM}={base64.b64encode(bytes.fromhex(hex_digest)).decode()}"


def parse_header(value: str | None) -> str | None:
    """The SHA-256 (hex) a ``Digest`` header carries; None when it carries none."""
    for part in (value or "").split(","):
        name, _, encoded = part.strip().partition("=")
        if name.lower() == ALGORITHM and encoded:
            try:
                raw = base64.b64decode(encoded, validate=True)
            except ValueError:
                return None
            return raw.hex() if len(raw) == 32 else None
    return None
