"""What every request needs from the process: settings, database, vault, and the dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from sqlalchemy.orm import Session

from octoprov.runtime import Runtime

EXTENSION = "octoprov"
DISPATCH = "octoprov.dispatch"


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


@contextmanager
def session_scope() -> Iterator[Session]:
    with runtime().database.session() as session:
        yield session


def dispatcher():
    """Where the API sends pipeline work: the Celery broker of this app's settings."""
    return current_app.extensions[DISPATCH]
