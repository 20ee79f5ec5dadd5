"""What a Linux machine's first boot is given: an account name, SSH public keys, shell commands.

They reach the machine as cloud-init data (YAML written by a library, never pasted), so these
checks are about what the machine can use, not about quoting: a user name ``useradd`` accepts,
a key ``sshd`` reads from one ``authorized_keys`` line, a command ``sh -c`` can run.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

from octoprov.validation.names import has_control_characters

_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# accounts a distribution already has: taking one over would change what it does
_SYSTEM_USERS = frozenset({"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
                           "proxy", "www-data", "backup", "list", "irc", "nobody", "systemd-network", "sshd",
                           "messagebus", "_apt", "adm", "wheel", "sudo", "halt", "shutdown", "operator"})
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
MAX_SSH_KEY = 16384
MAX_COMMAND = 10000


def check_linux_user_name(name: str) -> str:
    """A new local account, e.g. ``admin``: lower case, as ``useradd`` accepts without --badname."""
    if not _USER_NAME.fullmatch(name):
        raise ValueError("must be 1 to 32 characters: lower-case letters, digits, '_' and '-', "
                         "starting with a letter or '_'")
    if name in _SYSTEM_USERS:
        raise ValueError(f"{name} is a system account")
    return name


def check_ssh_public_key(key: str) -> str:
    """One OpenSSH public key, ``type base64 [comment]``, without ``authorized_keys`` options."""
    if len(key) > MAX_SSH_KEY:
        raise ValueError(f"must be at most {MAX_SSH_KEY} characters")
    _check_utf8(key)
    if has_control_characters(key):
        raise ValueError("must be a single line without control characters")
    parts = key.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise ValueError(f"must start with a key type ({', '.join(SSH_KEY_TYPES)}) followed by the key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        inner = blob[4:4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise ValueError("the key is not valid base64 of an OpenSSH public key") from None
    if inner != parts[0] or len(blob) <= 4 + length:
        raise ValueError(f"the key data does not hold a {parts[0]} key")
    return key.strip()


def check_shell_command(command: str) -> str:
    """A command for ``sh -c``: any text (newlines allowed), but no NUL, which no shell can take."""
    if not command.strip():
        raise ValueError("must not be empty")
    if len(command) > MAX_COMMAND:
        raise ValueError(f"must be at most {MAX_COMMAND} characters")
    if "\x00" in command:
        raise ValueError("must not contain NUL characters")
    _check_utf8(command)
    return command


def _check_utf8(text: str) -> None:
    """The machine reads UTF-8: a lone surrogate (which JSON can carry) has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
