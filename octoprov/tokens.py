"""Bearer tokens for the management API. Only a SHA-256 of each token is stored.

Tokens carry 256 bits of randomness, so a plain SHA-256 (not a slow password hash)
is enough to make a stolen database useless for calling the API.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov.models import ApiToken, aware, utcnow
from octoprov.roles import Role

PREFIX = "opv_"
USE_MARK_S = timedelta(minutes=1)  # how fresh a token's last_used_at is kept


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: Role = Role.ADMIN) -> str:
    """Store a new token under ``name`` with ``role`` and return it; it cannot be shown again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("token name must be 1-100 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=token_hash(token), role=Role(role).value))
    session.flush()
    return token


def verify_token(session: Session, token: str) -> ApiToken | None:
    """The stored token matching ``token``, or None. Marks it as used, to the minute: a busy client's
    requests do not each write the token's row."""
    if not token.startswith(PREFIX):
        return None
    found = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if found is not None:
        now = utcnow()
        if found.last_used_at is None or now - aware(found.last_used_at) >= USE_MARK_S:
            found.last_used_at = now
    return found
