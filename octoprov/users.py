"""Local accounts for the web UI, for shops without Active Directory (or beside it).

Passwords are kept as bcrypt hashes (cost 12), never in clear; a name with no account is checked against a
dummy hash, so the answer takes as long for an unknown name as for a wrong password.
"""

from __future__ import annotations

import functools
import re

import bcrypt
from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov.models import User
from octoprov.roles import Role

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
PASSWORD_MIN = 12
BCRYPT_MAX = 72  # bcrypt reads no further: a longer password would be checked on its first 72 bytes only
COST = 12


@functools.cache
def _dummy_hash() -> bytes:
    """Made once, at the first sign-in with an unknown name, at the cost of a real hash."""
    return bcrypt.hashpw(b"no such user", bcrypt.gensalt(COST))


def canonical_username(name: str) -> str:
    """The stored form (lower case); ValueError if it is not a plain account name."""
    name = name.strip().lower()
    if not USERNAME.fullmatch(name):
        raise ValueError("a user name is 1-64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
    return name


def password_problem(password: str) -> str | None:
    if len(password) < PASSWORD_MIN:
        return f"must be at least {PASSWORD_MIN} characters"
    if len(password.encode()) > BCRYPT_MAX:
        return f"must be at most {BCRYPT_MAX} bytes"
    return None


def _hash(password: str) -> str:
    problem = password_problem(password)
    if problem:
        raise ValueError(f"the password {problem}")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(COST)).decode()


def create_user(session: Session, name: str, password: str, role: Role) -> User:
    username = canonical_username(name)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise ValueError(f"user {username} exists already")
    user = User(username=username, password_hash=_hash(password), role=Role(role).value, disabled=False)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, name: str) -> User:
    try:
        username = canonical_username(name)
    except ValueError:
        username = ""
    user = session.scalar(select(User).where(User.username == username)) if username else None
    if user is None:
        raise LookupError(f"no user {name.strip().lower()!r}")
    return user


def set_password(session: Session, name: str, password: str) -> None:
    find_user(session, name).password_hash = _hash(password)


def set_disabled(session: Session, name: str, disabled: bool) -> None:
    find_user(session, name).disabled = disabled


def set_role(session: Session, name: str, role: Role) -> None:
    find_user(session, name).role = Role(role).value


def check_password(session: Session, name: str, password: str) -> User | None:
    """The enabled account ``name`` if ``password`` is its password, else None (same work either way)."""
    try:
        user: User | None = find_user(session, name)
    except LookupError:
        user = None
    stored = user.password_hash.encode() if user is not None else _dummy_hash()
    matches = bcrypt.checkpw(password.encode()[:BCRYPT_MAX], stored)
    return user if matches and user is not None and not user.disabled else None


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))
