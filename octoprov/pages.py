"""Pagination of list queries: one page of rows plus the total count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
    page: int
    per_page: int


def paginate(session: Session, query: Select[Any], page: int, per_page: int) -> Page:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = session.scalars(query.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(list(rows), total, page, per_page)
