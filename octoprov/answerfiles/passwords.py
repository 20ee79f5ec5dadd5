"""Passwords in the forms installers read them, so that no answer file carries one in plain text.

Windows unattend files take base64 of the UTF-16LE bytes of the password followed by the
element's name (``AdministratorPassword``, ``Password``) with ``PlainText`` false. That is an
encoding, not encryption: the per-task file URL that serves it is what protects it. Linux
installers take a SHA-512 crypt hash (``$6$``), computed here because Python's ``crypt``
module is gone in 3.13.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def unattend_password(password: str, element: str) -> str:
    """``<Value>`` of a Windows unattend password; ``element`` is the password element's name."""
    return base64.b64encode((password + element).encode("utf-16-le")).decode("ascii")


def _crypt64(data: bytes) -> str:
    """sha512-crypt's own base64: 64 bytes taken three at a time in a fixed permutation."""
    out = []

    def emit(b2: int, b1: int, b0: int, count: int) -> None:
        word = (b2 << 16) | (b1 << 8) | b0
        for _ in range(count):
            out.append(_CRYPT_ALPHABET[word & 0x3F])
            word >>= 6

    for i in range(21):
        a, b, c = data[i], data[i + 21], data[i + 42]
        emit(*((a, b, c), (b, c, a), (c, a, b))[i % 3], 4)
    emit(0, 0, data[63], 2)
    return "".join(out)


def sha512_crypt(password: str, salt: str | None = None, rounds: int = 5000) -> str:
    """The ``$6$salt$hash`` of glibc's crypt(3) (Drepper's SHA-crypt), default rounds."""
    key = password.encode()
    salt = (salt if salt is not None else "".join(secrets.choice(_CRYPT_ALPHABET) for _ in range(16)))[:16]
    salt_bytes = salt.encode()
    b = hashlib.sha512(key + salt_bytes + key).digest()
    a = hashlib.sha512(key + salt_bytes)
    remaining = len(key)
    while remaining > 64:
        a.update(b)
        remaining -= 64
    a.update(b[:remaining])
    length = len(key)
    while length:
        a.update(b if length & 1 else key)
        length >>= 1
    digest = a.digest()
    p_bytes = (hashlib.sha512(key * len(key)).digest() * (len(key) // 64 + 1))[: len(key)]
    s_bytes = (hashlib.sha512(salt_bytes * (16 + digest[0])).digest() * (len(salt_bytes) // 64 + 1))[
        : len(salt_bytes)
    ]
    for i in range(rounds):
        h = hashlib.sha512(p_bytes if i & 1 else digest)
        if i % 3:
            h.update(s_bytes)
        if i % 7:
            h.update(p_bytes)
        h.update(digest if i & 1 else p_bytes)
        digest = h.digest()
    prefix = "$6$" if rounds == 5000 else f"$6$rounds={rounds}$"
    return f"{prefix}{salt}${_crypt64(digest)}"
