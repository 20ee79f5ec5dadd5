"""Signed-in browsers: a random cookie, of which only the SHA-256 is stored (like the API tokens), the role
granted at sign-in, and a CSRF token that every state-changing request made with the cookie must echo in
the X-CSRF-Token header (a page of another site can make the browser send the cookie, never the header).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from octoprov.models import WebSession, utcnow
from octoprov.roles import Role

COOKIE = "octoprov_session"
CSRF_HEADER = "X-CSRF-Token"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    cookie: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class ActiveSession:
    actor: str
    role: Role
    csrf_hash: str

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(_digest(token or ""), self.csrf_hash)


def start(session: Session, actor: str, role: Role, hours: int) -> NewSession:
    """A new session for ``actor``; expired ones of anyone are dropped on the way."""
    session.execute(delete(WebSession).where(WebSession.expires_at < utcnow()))
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(hours=hours)
    session.add(WebSession(cookie_hash=_digest(cookie), actor=actor, role=Role(role).value, csrf_hash=_digest(csrf),
                           expires_at=expires))
    return NewSession(cookie, csrf, expires)


def find(session: Session, cookie: str) -> ActiveSession | None:
    """The unexpired session of ``cookie``, or None."""
    found = session.scalar(select(WebSession).where(WebSession.cookie_hash == _digest(cookie)))
    if found is None:
        return None
    expires = found.expires_at if found.expires_at.tzinfo else found.expires_at.replace(tzinfo=utcnow().tzinfo)
    if expires <= utcnow():
        return None
    return ActiveSession(found.actor, Role(found.role), found.csrf_hash)


def end(session: Session, cookie: str) -> None:
    session.execute(delete(WebSession).where(WebSession.cookie_hash == _digest(cookie)))


def end_all_of(session: Session, actor: str) -> int:
    """Sign ``actor`` out everywhere (a disabled or demoted user); how many sessions ended."""
    ids = session.scalars(select(WebSession.id).where(WebSession.actor == actor)).all()
    session.execute(delete(WebSession).where(WebSession.id.in_(ids)))
    return len(ids)
