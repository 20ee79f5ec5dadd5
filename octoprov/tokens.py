"""Bearer tokens for the management API. Only a SHA-256 of each token is stored.

Tokens carry 256 bits of randomness, so a plain SHA-256 (not a slow password hash)
is enough to make a stolen database useless for calling the API.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Integer, Row, Table, bindparam, select, update
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


_TOKENS = cast(Table, ApiToken.__table__)
# built once: every API request with a token asks
_BY_HASH = (select(_TOKENS.c.id, _TOKENS.c.name, _TOKENS.c.role, _TOKENS.c.last_used_at)
            .where(_TOKENS.c.token_hash == bindparam("token_hash")))
_USED = (update(_TOKENS).where(_TOKENS.c.id == bindparam("token_id", type_=Integer))
         .values(last_used_at=bindparam("now", type_=_TOKENS.c.last_used_at.type)))


def verify_token(connection: Connection, token: str) -> Row[int, str, str, datetime | None] | None:
    """The stored token matching ``token`` (its id, name, role and when it was last used), or None. Marks it as
    used, to the minute: a busy client's requests do not each write the token's row."""
    if not token.startswith(PREFIX):
        return None
    found = connection.execute(_BY_HASH, {"token_hash": token_hash(token)}).first()
    if found is not None:
        now = utcnow()
        if found.last_used_at is None or now - aware(found.last_used_at) >= USE_MARK_S:
            connection.execute(_USED, {"token_id": found.id, "now": now})
    return found
