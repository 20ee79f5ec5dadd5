"""Loading a stored object by id, or a clear 404."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from octoprov.errors import NotFound

T = TypeVar("T")


def fetch(session: Session, model: type[T], ident: int, what: str) -> T:
    found = session.get(model, ident)
    if found is None:
        raise NotFound(f"no {what} with id {ident}")
    return found
