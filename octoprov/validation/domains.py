"""Active Directory domains, OUs and accounts for the domain join.

djoin and the online join both fail only at the end of an installation; a typo in the
domain or an OU from another domain is cheaper to catch in the request.
"""

from __future__ import annotations

import re

from octoprov.validation.names import has_control_characters

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_RDN_KEYS = ("OU", "CN", "DC")
# RFC 4514 section 2.4: these stand in a value only escaped (\"). Unescaped, a quote ends an argument
# djoin.exe is given, + makes a multi-valued RDN AD does not have, ; separates RDNs in the old syntax.
_DN_SPECIAL = '"+;<>'
_DN_MAX_LENGTH = 500
_ACCOUNT_FORBIDDEN = set('"/\\[]:;|=,+*?<>@')


def check_fqdn(name: str) -> str:
    """A DNS domain name such as ``yourdom.local``; returned unchanged."""
    if "." not in name:
        raise ValueError(
            "single-label domain names are not supported: Windows locates domain controllers "
            "through DNS and needs a name with a dot, such as yourdom.local"
        )
    if len(name) > 253:
        raise ValueError("must be at most 253 characters")
    for label in name.split("."):
        if not label:
            raise ValueError("contains an empty label")
        if len(label) > 63:
            raise ValueError("labels must be at most 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValueError("labels may contain only letters, digits and inner hyphens")
    if name.rsplit(".", 1)[1].isdigit():
        raise ValueError("the last label must not be all digits")
    return name


def _rdns(dn: str) -> list[tuple[str, str]]:
    """Split a DN into (KEY, value) pairs, honouring backslash escapes such as ``\\,``."""
    if not dn.strip():
        raise ValueError("must not be empty")
    if len(dn) > _DN_MAX_LENGTH:
        raise ValueError(f"must be at most {_DN_MAX_LENGTH} characters")
    if has_control_characters(dn):
        raise ValueError("must not contain control characters")
    parts: list[str] = []
    current, escaped = "", False
    for ch in dn:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts, current = [*parts, current], ""
        elif ch in _DN_SPECIAL:
            raise ValueError(f"{ch} must be escaped with a backslash (\\{ch}) in a distinguished name")
        else:
            current += ch
    if escaped:
        raise ValueError("ends with a lone backslash")
    rdns = []
    for part in [*parts, current]:
        key, sep, value = part.partition("=")
        key, value = key.strip().upper(), value.strip()
        if not sep or key not in _RDN_KEYS:
            raise ValueError("components must be OU=, CN= or DC= followed by a value, separated by commas")
        if not value:
            raise ValueError(f"{key}= has an empty value")
        rdns.append((key, value))
    return rdns


def _dc_labels(rdns: list[tuple[str, str]]) -> list[str]:
    return [value for key, value in rdns if key == "DC"]


def check_distinguished_name(dn: str) -> str:
    """An AD container such as ``OU=SQL Servers,OU=Servers,DC=yourdom,DC=local``."""
    rdns = _rdns(dn)
    dcs = _dc_labels(rdns)
    if not dcs:
        raise ValueError("must end with the domain's DC= components, e.g. DC=yourdom,DC=local")
    if [key for key, _ in rdns[-len(dcs) :]] != ["DC"] * len(dcs):
        raise ValueError("DC= components must come last")
    return dn


def check_ou_in_domain(dn: str, fqdn: str) -> str:
    """The OU must lie in the domain being joined; its DC= components spell the domain."""
    ou_domain = ".".join(_dc_labels(_rdns(dn)))
    if ou_domain.lower() != fqdn.lower():
        raise ValueError(f"this OU belongs to the domain {ou_domain}, not {fqdn}")
    return dn


def check_account_name(value: str) -> str:
    """An account as Windows accepts it: ``DOMAIN\\user``, ``user@domain`` or ``user``."""
    if not 1 <= len(value) <= 256:
        raise ValueError("must be 1 to 256 characters")
    if "\\" in value:
        domain, _, user = value.partition("\\")
        parts = [domain, user]
    elif "@" in value:
        user, _, domain = value.partition("@")
        parts = [user, domain]
    else:
        parts = [value]
    for part in parts:
        if not part.strip() or part != part.strip() or _ACCOUNT_FORBIDDEN & set(part):
            raise ValueError("expected DOMAIN\\user, user@domain or user")
        if has_control_characters(part):
            raise ValueError("must not contain control characters")
    return value
