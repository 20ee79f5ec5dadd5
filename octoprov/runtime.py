"""What a process needs to work on tasks: settings, the database and the vault."""

from __future__ import annotations

from dataclasses import dataclass

from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.settings import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    database: Database
    vault: Vault

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        settings.ensure_dirs()
        return cls(settings, Database.from_settings(settings), Vault.from_settings(settings))
