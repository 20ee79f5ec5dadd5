"""Errors the domain raises and the API turns into 4xx answers."""

from __future__ import annotations

import logging
from collections.abc import Callable


class OctoprovError(Exception):
    """Base of the errors a caller can act on; ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(OctoprovError):
    """Input that fails validation. ``errors`` maps each offending field path to a reason.

    Field paths use the request's own (camelCase) names, with dots for nesting and
    ``[i]`` for list items: ``vm.disks[1].sizeGb``.
    """

    status = 400

    def __init__(self, errors: dict[str, str], message: str = "Invalid request"):
        super().__init__(message + ": " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


class NotFound(OctoprovError):
    status = 404


class Conflict(OctoprovError):
    status = 409


class NotAvailable(OctoprovError):
    """The node's kind has no implementation of this interface (yet)."""

    status = 501


class TransientError(OctoprovError):
    """Worth retrying: a host that did not answer, a lock held elsewhere, a timeout."""

    status = 502


class TargetUnreachable(TransientError):
    """The host did not answer or refused the connection."""


class PermanentError(OctoprovError):
    """Retrying will not help: the task fails at this step."""

    status = 409


class Cancelled(Exception):
    """The task was cancelled while the step ran; the step stops at once."""


def field_path(location: tuple[str | int, ...]) -> str:
    """Render a pydantic-style location tuple as ``a.b[2].c``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "body"


def is_infrastructure(exc: BaseException) -> bool:
    """Whether an error is the platform's, not the task's: the database or the broker could not be
    reached or dropped the connection. Such an error never fails a task; the work is tried again."""
    from kombu.exceptions import OperationalError as BrokerUnreachable
    from sqlalchemy.exc import DBAPIError, InterfaceError
    from sqlalchemy.exc import OperationalError as DatabaseUnreachable

    if isinstance(exc, DatabaseUnreachable | InterfaceError | BrokerUnreachable):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeout
    except ImportError:  # the embedded broker needs no redis client
        return False
    return isinstance(exc, RedisConnectionError | RedisTimeout)


def send_unless_unreachable(task_id: int, what: str, send: Callable[[], None]) -> bool:
    """Send follow-up work the database already records as due (a rollback: ``rollback_due_at``): while
    the broker cannot be reached, log it and leave it to the periodic job. False when it was not sent."""
    try:
        send()
    except Exception as exc:
        if not is_infrastructure(exc):
            raise
        logging.getLogger(__name__).warning("task %s: could not send the %s now: %s", task_id, what, exc)
        return False
    return True
