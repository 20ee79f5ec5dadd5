"""Signing UI users in with their Active Directory account: an LDAPS bind as the user (the domain controller
checks the password, and refuses disabled, locked and expired accounts), then the role from the groups of
OCTOPROV_LDAP_ROLE_GROUPS the user belongs to, nested groups included (AD's LDAP_MATCHING_RULE_IN_CHAIN).

Only the user's own credentials are used: Octoprov needs no service account to sign people in. Values reach
LDAP filters escaped (``escape_filter_chars``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from ldap3 import BASE, SUBTREE, Connection
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from octoprov.domainjoin.directory import LDAPS_PORT, Refused, SettingNames, bind_name, bound_connection
from octoprov.roles import Role
from octoprov.settings import Settings

IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups
ACCOUNT_DISABLED = 0x2  # userAccountControl's ACCOUNTDISABLE
NAMES = SettingNames(host="OCTOPROV_LDAP_URL", ca_file="OCTOPROV_LDAP_CA_FILE")


class NotPermitted(Exception):
    """The account is valid but may not sign in to Octoprov (in no mapped group, or disabled)."""


@dataclass(frozen=True)
class DirectoryUser:
    actor: str  # "user:name@domain"
    role: Role


def enabled(settings: Settings) -> bool:
    return bool(settings.ldap_url and settings.ldap_base_dn and settings.ldap_role_groups)


def domain_of(base_dn: str) -> str:
    """yourdom.local for DC=yourdom,DC=local: what a bare user name is bound in."""
    labels = [part.split("=", 1)[1] for part in base_dn.split(",") if part.strip().lower().startswith("dc=")]
    return ".".join(label.strip() for label in labels)


def role_groups(settings: Settings) -> dict[str, Role]:
    mapping: dict[str, str] = json.loads(settings.ldap_role_groups or "{}")
    return {dn: Role(role) for dn, role in mapping.items()}


def _endpoint(url: str) -> tuple[str, int]:
    """Host and port of an ldaps:// URL (the settings accept no other scheme)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or LDAPS_PORT


def authenticate(settings: Settings, username: str, password: str) -> DirectoryUser:
    """The signed-in user; Refused for a wrong password or an account AD refuses, NotPermitted for one in no
    mapped group, Unreachable/Untrusted when the domain controller cannot be used."""
    host, port = _endpoint(settings.ldap_url)
    domain = domain_of(settings.ldap_base_dn)
    ca_file = str(settings.ldap_ca_file) if settings.ldap_ca_file else None
    if not password:
        raise Refused("a password is required")  # an empty password would be an anonymous bind: never a sign-in
    with bound_connection(host, port, ca_file, bind_name(username, domain), password, username, NAMES) as connection:
        account, user_dn, control = _who(connection, settings.ldap_base_dn, username, domain)
        if control & ACCOUNT_DISABLED:
            raise NotPermitted(f"the account {account} is disabled")
        granted = [role for dn, role in role_groups(settings).items() if _member_of(connection, dn, user_dn)]
    if not granted:
        raise NotPermitted(f"{account} is in none of the groups OCTOPROV_LDAP_ROLE_GROUPS maps to a role")
    return DirectoryUser(f"user:{account}", max(granted, key=lambda role: role.rank))


def _who(connection: Connection, base_dn: str, username: str, domain: str) -> tuple[str, str, int]:
    """(name@domain, the user's DN, userAccountControl) of the account ``username`` names: DOMAIN\\name,
    name@domain (its userPrincipalName) or name. Searched as the user just bound, who may read their own entry."""
    if "@" in username:
        wanted = f"(userPrincipalName={escape_filter_chars(username.strip())})"
    else:
        wanted = f"(sAMAccountName={escape_filter_chars(username.strip().split(chr(92), 1)[-1])})"
    try:
        connection.search(base_dn, f"(&(objectCategory=person)(objectClass=user){wanted})", search_scope=SUBTREE,
                          attributes=["userAccountControl", "sAMAccountName"])
    except ldap_errors.LDAPException as exc:
        raise Refused(f"could not look {username} up below {base_dn}: {exc}") from None
    entries = [entry for entry in connection.response or [] if entry.get("type") == "searchResEntry"]
    if len(entries) != 1:
        raise NotPermitted(f"no user account for {username} below {base_dn}")
    attributes = entries[0]["attributes"]
    control = attributes.get("userAccountControl") or 0
    name = attributes.get("sAMAccountName") or username
    name = name[0] if isinstance(name, list) else name
    return f"{str(name).lower()}@{domain}", str(entries[0]["dn"]), int(control[0] if isinstance(control, list)
                                                                      else control)


def _member_of(connection: Connection, group_dn: str, user_dn: str) -> bool:
    """Whether ``user_dn`` is a member of ``group_dn``, directly or through groups in it."""
    try:
        connection.search(group_dn, f"(member:{IN_CHAIN}:={escape_filter_chars(user_dn)})", search_scope=BASE,
                          attributes=["distinguishedName"])
    except ldap_errors.LDAPNoSuchObjectResult:
        return False  # a mapped group that is not there (any more) grants nothing
    except ldap_errors.LDAPException as exc:
        raise Refused(f"could not read the members of {group_dn}: {exc}") from None
    return any(entry.get("type") == "searchResEntry" for entry in connection.response or [])
