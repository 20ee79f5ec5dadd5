"""What every request needs from the process: settings, database, vault, and the dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy.orm import Session

from octoprov.runtime import Runtime

if TYPE_CHECKING:
    from workers.dispatch import Dispatcher

EXTENSION = "octoprov"
DISPATCH = "octoprov.dispatch"


def runtime() -> Runtime:
    found: Runtime = current_app.extensions[EXTENSION]  # create_app() put it there
    return found


@contextmanager
def session_scope() -> Iterator[Session]:
    with runtime().database.session() as session:
        yield session


def dispatcher() -> Dispatcher:
    """Where the API sends pipeline work: the Celery broker of this app's settings."""
    found: Dispatcher = current_app.extensions[DISPATCH]  # create_app() put it there
    return found
