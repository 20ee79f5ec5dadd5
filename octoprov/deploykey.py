"""Octoprov's own SSH key: workers log on with it to the Linux machines they installed, to run the
post-install items, and the answers they render (cloud-init user-data, Kickstart) authorise its
public half. Generated once (Ed25519, mode 0600) like the embedded secret key, unless a key file is
configured; every worker and API process of one installation must see the same file.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from octoprov.crypto import create_once
from octoprov.settings import Settings

COMMENT = "octoprov-deploy"


def key_file(settings: Settings) -> Path:
    return Path(settings.ssh_key_file) if settings.ssh_key_file else settings.data_dir.resolve() / "ssh" / \
        "octoprov_ed25519"


def _new_key() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


def private_key_text(settings: Settings) -> str:
    """The private key in OpenSSH format, created on first use."""
    return create_once(key_file(settings), _new_key)


def public_key(settings: Settings) -> str:
    """The ``authorized_keys`` line for the key."""
    key = serialization.load_ssh_private_key(private_key_text(settings).encode(), password=None)
    blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{blob.decode()} {COMMENT}"
