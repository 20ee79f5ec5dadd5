"""Active Directory over LDAPS: bind as an account, look computer accounts and OUs up, create a computer
account and delete one with whatever it holds. The one place Octoprov speaks LDAP.

ldap3 does the protocol: pure Python (no libldap to build), LDAPS with a CA file, and extended controls
(the tree delete). Plain LDAP is never used: a simple bind would send the password in clear, and domain
controllers refuse it anyway. Values from a request reach the directory escaped, filter values with
``escape_filter_chars`` and RDN values with ``escape_rdn``, never pasted into LDAP text.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from octoprov.logs import redactor

if TYPE_CHECKING:
    from octoprov.settings import Settings

LDAPS_PORT = 636
CONNECT_TIMEOUT_S = 5  # a POST /tasks waits this long per address for a domain controller that does not answer
RECEIVE_TIMEOUT_S = 30  # for one answer (a tree delete takes longer than a bind)
TREE_DELETE = "1.2.840.113556.1.4.805"  # LDAP_SERVER_TREE_DELETE_OID: the object and everything below it
COMPUTERS_WKGUID = "aa312825768811d1aded00c04fd8d5cd"  # the domain's default computers container (redircmp)
WORKSTATION_TRUST_ACCOUNT = 0x1000  # userAccountControl of a member computer's account
COMPUTER_CLASSES = ("top", "person", "organizationalPerson", "user", "computer")
CONTAINER_CLASSES = {"organizationalunit", "container"}


class DirectoryError(Exception):
    """The domain controller could not do what was asked; the message names no secret."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unreachable(DirectoryError):
    """No answer: the name does not resolve, nothing listens, or it timed out. Worth retrying."""


class Untrusted(DirectoryError):
    """The domain controller's certificate is not trusted (OCTOPROV_DOMAIN_CA_FILE) or names another host."""


class Refused(DirectoryError):
    """The bind was refused: wrong password, unknown, disabled, locked or expired account."""


class WrongDomain(DirectoryError):
    """The domain controller serves another domain than the task's."""


class OperationFailed(DirectoryError):
    """A search, add or delete failed: no such object, one already there, no right to do it."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code  # ldap3's result description: "noSuchObject", "entryAlreadyExists", ...


@dataclass(frozen=True)
class Credentials:
    """An account as a request or the settings give it: ``DOMAIN\\user``, ``user@domain`` or ``user``."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Computer:
    dn: str
    description: str | None
    is_computer: bool  # another kind of principal (a user) may hold the name, too


def controller_for(settings: Settings, domain: str) -> str:
    """The configured domain controller, else the domain's name (AD resolves it to its DCs)."""
    return settings.domain_controller or domain


def bind_name(username: str, domain: str) -> str:
    """AD's simple bind takes ``DOMAIN\\user`` and ``user@domain``; a bare name is taken as belonging to the
    domain being joined, as Windows Setup does."""
    return username if "\\" in username or "@" in username else f"{username}@{domain}"


def domain_dn(domain: str) -> str:
    return ",".join(f"DC={escape_rdn(label)}" for label in domain.split("."))


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _reason(exc: Exception) -> str:
    """ldap3's text of a failure, with any registered secret masked (it never holds the password, but
    this is the second line of defence, as in the logs)."""
    text = exc.message if isinstance(exc, ldap_errors.LDAPOperationResult) and exc.message else str(exc)
    return redactor.redact(" ".join(text.split()))[:300]


_BIND_DATA = {  # AD's "data" code in a refused bind's message
    "525": "no such account", "52e": "the user name or password is wrong", "530": "logon not permitted now",
    "531": "logon not permitted from this workstation", "532": "the password has expired",
    "533": "the account is disabled", "701": "the account has expired",
    "773": "the password must be changed first", "775": "the account is locked out",
}


def refusal(message: str) -> str:
    for code, meaning in _BIND_DATA.items():
        if f"data {code}" in message:
            return meaning
    return "the user name or password is wrong"


class Directory:
    """A bound connection to one domain controller, for one domain."""

    def __init__(self, connection: Connection, domain: str, naming_context: str, dc_name: str):
        self._connection = connection
        self.domain = domain
        self.naming_context = naming_context
        self.dc_name = dc_name  # the DC's own DNS name, from its rootDSE: net talks to this same DC

    def _search(self, base: str, search_filter: str, scope: str, attributes: list[str]) -> list[dict[str, Any]]:
        try:
            self._connection.search(base, search_filter, search_scope=scope, attributes=attributes)
        except ldap_errors.LDAPNoSuchObjectResult:
            return []
        except ldap_errors.LDAPOperationResult as exc:
            raise OperationFailed(f"searching {base} failed: {_reason(exc)}", exc.description) from None
        except ldap_errors.LDAPException as exc:
            raise Unreachable(f"{self.dc_name} stopped answering: {_reason(exc)}") from None
        return [entry for entry in self._connection.response or [] if entry.get("type") == "searchResEntry"]

    def find_computer(self, name: str) -> Computer | None:
        """The principal holding the account name ``NAME$`` anywhere in the domain (sAMAccountName is unique)."""
        found = self._search(self.naming_context, f"(sAMAccountName={escape_filter_chars(name + '$')})", SUBTREE,
                             ["description", "objectClass"])
        if not found:
            return None
        attributes = found[0].get("attributes", {})
        classes = {str(value).lower() for value in attributes.get("objectClass") or []}
        return Computer(found[0]["dn"], _first(attributes.get("description")), "computer" in classes)

    def computer_description(self, dn: str) -> str | None:
        found = self._search(dn, "(objectClass=*)", BASE, ["description"])
        return _first(found[0].get("attributes", {}).get("description")) if found else None

    def is_container(self, dn: str) -> bool:
        """``dn`` names an OU or container that computer accounts can be created in."""
        found = self._search(dn, "(objectClass=*)", BASE, ["objectClass"])
        if not found:
            return False
        classes = {str(value).lower() for value in found[0].get("attributes", {}).get("objectClass") or []}
        return bool(classes & CONTAINER_CLASSES)

    def computers_container(self) -> str:
        """Where the domain puts computer accounts by default (CN=Computers unless redirected)."""
        found = self._search(f"<WKGUID={COMPUTERS_WKGUID},{self.naming_context}>", "(objectClass=*)", BASE, ["cn"])
        return str(found[0]["dn"]) if found else f"CN=Computers,{self.naming_context}"

    def add_computer(self, name: str, container: str, description: str) -> str:
        """Create the account ``NAME$`` in ``container`` carrying ``description``, in one add: it never
        exists without its tag. The random password is replaced by the join; it only keeps the account
        from being created without one (AD's password policy applies to computers, too)."""
        dn = f"CN={escape_rdn(name)},{container}"
        password = secrets.token_urlsafe(48) + "Aa1-"  # four character classes, whatever the random part is
        attributes = {
            "sAMAccountName": f"{name}$",
            "userAccountControl": WORKSTATION_TRUST_ACCOUNT,
            "description": description,
            "unicodePwd": f'"{password}"'.encode("utf-16-le"),
        }
        try:
            self._connection.add(dn, list(COMPUTER_CLASSES), attributes)
        except ldap_errors.LDAPOperationResult as exc:
            raise OperationFailed(f"creating {dn} failed: {_reason(exc)}", exc.description) from None
        except ldap_errors.LDAPException as exc:
            raise Unreachable(f"{self.dc_name} stopped answering: {_reason(exc)}") from None
        return dn

    def delete_tree(self, dn: str) -> None:
        """Delete ``dn`` and every object below it (BitLocker keys, service connection points, ...)."""
        try:
            self._connection.delete(dn, controls=[(TREE_DELETE, True, None)])
        except ldap_errors.LDAPNoSuchObjectResult:
            return
        except ldap_errors.LDAPOperationResult as exc:
            raise OperationFailed(f"deleting {dn} failed: {_reason(exc)}", exc.description) from None
        except ldap_errors.LDAPException as exc:
            raise Unreachable(f"{self.dc_name} stopped answering: {_reason(exc)}") from None


def _tls(ca_file: str | None, host: str) -> Tls:
    return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file, sni=host)


@dataclass(frozen=True)
class SettingNames:
    """The settings an error about the controller's address or certificate points the reader to."""

    host: str = "OCTOPROV_DOMAIN_CONTROLLER"
    ca_file: str = "OCTOPROV_DOMAIN_CA_FILE"


def _unusable(exc: Exception, host: str, port: int, names: SettingNames) -> DirectoryError:
    text = str(exc)
    if isinstance(exc, ldap_errors.LDAPCertificateError) or "doesn't match any name" in text:
        return Untrusted(f"the LDAPS certificate of {host} is not trusted: it does not name {host} "
                         f"({names.host} must be the name in it)")
    failed = re.search(r"certificate verify failed: [^(\"']*", text)
    if failed:
        return Untrusted(f"the LDAPS certificate of {host} is not trusted: {failed.group(0).strip()} "
                         f"({names.ca_file})")
    return Unreachable(f"domain controller {host} (LDAPS, port {port}) did not answer: {_reason(exc)}")


@contextlib.contextmanager
def bound_connection(host: str, port: int, ca_file: str | None, bind_user: str, password: str, who: str,
                     names: SettingNames = SettingNames()) -> Iterator[Connection]:
    """An LDAPS connection to ``host`` bound as ``bind_user``; unbound when done. Refusals name ``who``
    (the account as given), never the password."""
    server = Server(host, port=port, use_ssl=True, tls=_tls(ca_file, host), get_info=NONE,
                    connect_timeout=CONNECT_TIMEOUT_S)
    connection = Connection(server, user=bind_user, password=password, raise_exceptions=True,
                            auto_referrals=False, receive_timeout=RECEIVE_TIMEOUT_S)
    try:
        try:
            connection.bind()
        except ldap_errors.LDAPInvalidCredentialsResult as exc:
            raise Refused(f"{host} refused the bind of {who}: {refusal(exc.message or '')}") from None
        except ldap_errors.LDAPOperationResult as exc:
            raise Refused(f"{host} refused the bind of {who}: {_reason(exc)}") from None
        except (ldap_errors.LDAPException, OSError) as exc:
            raise _unusable(exc, host, port, names) from None
        yield connection
    finally:
        with contextlib.suppress(Exception):
            connection.unbind()


@contextlib.contextmanager
def open_directory(settings: Settings, domain: str, credentials: Credentials) -> Iterator[Directory]:
    """Bind to the domain's controller over LDAPS as ``credentials``; checks that it serves ``domain``."""
    host = controller_for(settings, domain)
    ca_file = str(settings.domain_ca_file) if settings.domain_ca_file else None
    with bound_connection(host, LDAPS_PORT, ca_file, bind_name(credentials.username, domain), credentials.password,
                          credentials.username) as connection:
        yield _bound(connection, domain, host)


def _bound(connection: Connection, domain: str, host: str) -> Directory:
    try:
        connection.search("", "(objectClass=*)", search_scope=BASE,
                          attributes=["defaultNamingContext", "dnsHostName"])
    except ldap_errors.LDAPException as exc:
        raise Unreachable(f"domain controller {host} did not answer: {_reason(exc)}") from None
    root = (connection.response or [{}])[0].get("attributes", {})
    naming_context = str(_first(root.get("defaultNamingContext")) or "")
    if naming_context.lower() != domain_dn(domain).lower():
        raise WrongDomain(f"domain controller {host} serves {naming_context or 'no domain'}, not {domain}")
    return Directory(connection, domain, naming_context, str(_first(root.get("dnsHostName")) or host))
