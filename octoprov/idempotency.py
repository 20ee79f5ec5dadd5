"""The ``Idempotency-Key`` of ``POST /tasks``: a request sent again gets the task the first one created.

A client that lost the answer to a submission (the API restarted, the connection broke, a proxy timed
out) cannot know whether the task was stored. Sending the same request again with the same key is safe:
the task the key created is answered again, not a second task for the same machine. The key comes from
the client (a UUID, say); the request is compared as tasks keep it (secrets masked), so the same key with
another request is refused (422), following the IETF draft "The Idempotency-Key HTTP Header Field".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov.errors import InvalidRequest
from octoprov.models import Task

HEADER = "Idempotency-Key"
MAX_LENGTH = 255


class KeyReused(InvalidRequest):
    """The key was sent before with a different request."""

    status = 422


def check_key(raw: str | None) -> str | None:
    """The header's value, or None when absent; refused unless it is 1 to 255 printable ASCII characters."""
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_LENGTH or not all(" " <= char <= "~" for char in raw):
        raise InvalidRequest({HEADER: f"must be 1 to {MAX_LENGTH} printable ASCII characters"})
    return raw


def earlier_task(session: Session, key: str, kept_request: dict[str, Any]) -> Task | None:
    """The task an earlier request with ``key`` created, or None. Refused when that request differs from
    this one as a task keeps it (``kept_request``: secrets masked, since they are not kept to compare)."""
    task = session.scalars(select(Task).where(Task.idempotency_key == key)).one_or_none()
    if task is None:
        return None
    if kept_request != task.config_override:
        raise KeyReused({HEADER: f"was sent before with a different request (task {task.id})"})
    return task
