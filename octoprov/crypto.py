"""Encryption at rest for secrets (passwords, product keys, domain-join blobs, node credentials).

Fernet (AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package) rather than
hand-made crypto. Several keys may be configured, newest first: the newest encrypts,
all of them decrypt, so a key can be rotated without losing stored secrets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from octoprov.settings import Settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""


class Vault:
    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        if settings.secret_key:
            return cls([k.strip() for k in settings.secret_key.split(",") if k.strip()])
        return cls([load_or_create_key_file(settings.key_file)])

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("stored secret cannot be decrypted with the configured key(s)") from None

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt(json.dumps(value, sort_keys=True))

    def decrypt_json(self, token: str | None) -> Any:
        return None if token is None else json.loads(self.decrypt(token))


def load_or_create_key_file(path: Path) -> str:
    """The embedded default key: generated once, readable by the owner only (mode 0600)."""
    return create_once(Path(path), lambda: Fernet.generate_key().decode() + "\n").strip()


def create_once(path: Path, make: Callable[[], str]) -> str:
    """The text of ``path``, written first with ``make()`` (mode 0600) if it does not exist.
    O_EXCL: two processes starting at once must not each write a different key."""
    if path.exists():
        return path.read_text()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text()
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return text
