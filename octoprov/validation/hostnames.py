"""Hostnames: the machine's name as the OS and DNS will see it.

Windows keeps only the first 15 characters as the NetBIOS name, so a longer name would
silently become a different one in the domain; Linux allows one full DNS label.
"""

from __future__ import annotations

import re

from octoprov.validation.windowspaths import is_device_name

_LDH = re.compile(r"[A-Za-z0-9-]+")
_MAX_LENGTH = {"windows": 15}
_DNS_LABEL_LENGTH = 63

# Names Windows refuses as a computer name, or that collide with a well-known account: Microsoft's
# "Table of reserved words" in "Naming conventions in Active Directory for computers, domains, sites,
# and OUs" (KB 909264, https://learn.microsoft.com/troubleshoot/windows-server/identity/naming-conventions-
# for-computer-domain-site-ou). Words with a space cannot pass the letters-digits-hyphens rule anyway;
# they are listed so that the table reads as Microsoft's does.
NETBIOS_RESERVED_WORDS = frozenset({
    "ANONYMOUS", "AUTHENTICATED USER", "BATCH", "BUILTIN", "CREATOR GROUP", "CREATOR GROUP SERVER",
    "CREATOR OWNER", "CREATOR OWNER SERVER", "DIALUP", "DIGEST AUTH", "INTERACTIVE", "INTERNET", "LOCAL",
    "LOCAL SYSTEM", "NETWORK", "NETWORK SERVICE", "NT AUTHORITY", "NT DOMAIN", "NTLM AUTH", "NULL", "PROXY",
    "REMOTE INTERACTIVE", "RESTRICTED", "SCHANNEL AUTH", "SELF", "SERVER", "SERVICE", "SYSTEM", "TERMINAL SERVER",
    "THIS ORGANIZATION", "USERS", "WORLD",
})
# The same article's DNS host names section lists "Reserved names per RFC 952": GATEWAY, GW and TAC. RFC 952
# meant them as name parts marking gateways and TACs (web-gw); only the bare words are refused here.
DNS_RESERVED_NAMES = frozenset({"GATEWAY", "GW", "TAC"})


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
    if windows:
        check_windows_computer_name(value)
    return value


def check_windows_computer_name(value: str) -> str:
    """Not a word Windows reserves for accounts, DNS or devices: ``SYSTEM``, ``GATEWAY`` or ``NUL``
    (Setup cannot name the machine so, and Hyper-V cannot make its folder)."""
    upper = value.upper()
    if upper in NETBIOS_RESERVED_WORDS:
        raise ValueError(f"{value} is a reserved word Windows refuses as a computer name (Microsoft KB 909264)")
    if upper in DNS_RESERVED_NAMES:
        raise ValueError(f"{value} is a DNS host name reserved by RFC 952 (Microsoft KB 909264)")
    if is_device_name(value):
        raise ValueError(f"{value} is a device name to Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9)")
    return value
