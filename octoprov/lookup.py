"""Loading a stored object by id, or a clear 404."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable, Row
from sqlalchemy.orm import Session

from octoprov.errors import NotFound

T = TypeVar("T")


def fetch(session: Session, model: type[T], ident: int, what: str) -> T:
    found = session.get(model, ident)
    if found is None:
        raise NotFound(f"no {what} with id {ident}")
    return found


def fetch_rows(session: Session, statement: Executable, params: Mapping[str, Any], ident: int,
               what: str) -> Sequence[Row[Any]]:
    """The rows a prebuilt statement reads about one object (with its children, say), without building ORM
    objects where a hot path needs a few columns only; the 404 of ``fetch`` when there are none."""
    rows = session.connection().execute(statement, params).all()
    if not rows:
        raise NotFound(f"no {what} with id {ident}")
    return rows
