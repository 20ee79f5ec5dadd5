"""Signing in to the web UI: a local account first (it works while the domain is unreachable), else the
Active Directory account; refused attempts counted per user name and per address, and a session on success.

The refusal never says whether the name or the password was wrong. Attempts beyond the limit are answered
429 with the seconds to wait, without asking the directory, so guessing cannot lock the AD account out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from octoprov import adsignin, users, websessions
from octoprov.domainjoin.directory import DirectoryError, Refused
from octoprov.models import SigninFailure, User, utcnow
from octoprov.roles import Role
from octoprov.settings import Settings

WRONG = "the user name or password is wrong, or the account may not sign in"
PER_ADDRESS_FACTOR = 10  # one address (a jump host, a NAT) may carry many users' typos


class SigninRefused(Exception):
    def __init__(self, message: str, status: int, retry_after_s: int | None = None):
        super().__init__(message)
        self.message, self.status, self.retry_after_s = message, status, retry_after_s


@dataclass(frozen=True)
class SignedIn:
    actor: str
    role: Role
    session: websessions.NewSession


def _key(username: str) -> str:
    return username.strip().lower()[:255]


def _wait(session: Session, settings: Settings, key: str, source: str) -> int | None:
    """Seconds until another attempt is heard, if this name or address has used up its attempts."""
    since = utcnow() - timedelta(seconds=settings.signin_window_s)
    for column, value, limit in ((SigninFailure.username, key, settings.signin_max_failures),
                                 (SigninFailure.source, source, settings.signin_max_failures * PER_ADDRESS_FACTOR)):
        count, oldest = session.execute(select(func.count(), func.min(SigninFailure.at))
                                        .where(column == value, SigninFailure.at >= since)).one()
        if count >= limit and oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=since.tzinfo)
            return max(1, math.ceil((oldest - since).total_seconds()))
    return None


def _failed(session: Session, settings: Settings, key: str, source: str) -> None:
    cutoff = utcnow() - timedelta(seconds=settings.signin_window_s)
    session.execute(delete(SigninFailure).where(SigninFailure.at < cutoff))
    session.add(SigninFailure(username=key, source=source[:64]))


def _local(session: Session, username: str, password: str) -> tuple[bool, User | None]:
    """(whether a local account has this name, the account if the password is its own and it is enabled)."""
    try:
        users.find_user(session, username)
    except LookupError:
        users.check_password(session, username, password)  # the same work as for an existing name
        return False, None
    return True, users.check_password(session, username, password)


def sign_in(session: Session, settings: Settings, username: str, password: str, source: str) -> SignedIn:
    """A new session for the account, or SigninRefused (401 refused, 429 too many attempts, 503 the domain
    controller cannot be used). The caller commits even on a refusal: the counted failure must be kept."""
    key = _key(username)
    wait = _wait(session, settings, key, source)
    if wait is not None:
        raise SigninRefused(f"too many refused sign-ins; try again in {wait} s", 429, wait)
    exists, user = _local(session, username, password)
    try:
        if exists:
            if user is None:
                raise Refused(WRONG)
            actor, role = f"user:{user.username}", Role(user.role)
        elif adsignin.enabled(settings):
            found = adsignin.authenticate(settings, username, password)
            actor, role = found.actor, found.role
        else:
            raise Refused(WRONG)
    except (Refused, adsignin.NotPermitted) as exc:
        _failed(session, settings, key, source)
        message = str(exc) if isinstance(exc, adsignin.NotPermitted) else WRONG
        raise SigninRefused(message, 401) from None
    except DirectoryError as exc:  # unreachable or untrusted: not the user's fault, not counted
        raise SigninRefused(f"Active Directory sign-in is unavailable: {exc.message}", 503) from None
    session.execute(delete(SigninFailure).where(SigninFailure.username == key))
    return SignedIn(actor, role, websessions.start(session, actor, role, settings.session_hours))
