"""What every request needs from the process: settings, the database and the vault."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import Session

from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.settings import Settings

EXTENSION = "octoprov"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    database: Database
    vault: Vault

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        settings.ensure_dirs()
        return cls(settings, Database.from_settings(settings), Vault.from_settings(settings))


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


@contextmanager
def session_scope() -> Iterator[Session]:
    with runtime().database.session() as session:
        yield session
