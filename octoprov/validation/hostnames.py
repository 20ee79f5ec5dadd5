"""Hostnames: the machine's name as the OS and DNS will see it.

Windows keeps only the first 15 characters as the NetBIOS name, so a longer name would
silently become a different one in the domain; Linux allows one full DNS label.
"""

from __future__ import annotations

import re

_LDH = re.compile(r"[A-Za-z0-9-]+")
_MAX_LENGTH = {"windows": 15}
_DNS_LABEL_LENGTH = 63


def check_hostname(value: str, os_type: str) -> str:
    """Return ``value`` unchanged if it is a valid hostname for ``os_type`` ("windows" or "linux")."""
    windows = os_type.lower() == "windows"
    limit = _MAX_LENGTH.get(os_type.lower(), _DNS_LABEL_LENGTH)
    if not value:
        raise ValueError("must not be empty")
    if len(value) > limit:
        why = "Windows keeps only a 15-character NetBIOS name" if windows else "one DNS label"
        raise ValueError(f"must be at most {limit} characters ({why}), got {len(value)}")
    if not _LDH.fullmatch(value):
        raise ValueError("may contain only letters, digits and hyphens")
    if value.startswith("-") or value.endswith("-"):
        raise ValueError("must not start or end with a hyphen")
    if value.isdigit():
        raise ValueError("must not consist of digits only")
    return value
