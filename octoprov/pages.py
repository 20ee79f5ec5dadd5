"""Pagination of list queries: one page of rows plus the total count."""

from __future__ import annotations

from collections.abc import Callable
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

    def to_json(self, item_json: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """The page as the API lists it (and the CLI's ``--output json``), each item by ``item_json``."""
        return {"items": [item_json(item) for item in self.items], "total": self.total, "page": self.page,
                "perPage": self.per_page}


def paginate(session: Session, query: Select[Any], page: int, per_page: int) -> Page:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = session.scalars(query.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(list(rows), total, page, per_page)
