"""Migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from octoprov import migrate
from octoprov.db import Database
from octoprov.models import Base
from tests.conftest import BACKENDS, database_url_for


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_head_on_empty_database_matches_models(backend, settings, request):
    db = Database(database_url_for(backend, settings, request))
    try:
        assert inspect(db.engine).get_table_names() == []
        migrate.upgrade(db.engine)
        tables = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
        assert migrate.pending_differences(db.engine) == []
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_downgrade_to_base_and_back(backend, settings, request):
    db = Database(database_url_for(backend, settings, request))
    try:
        migrate.upgrade(db.engine)
        migrate.downgrade(db.engine, "base")
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
        migrate.upgrade(db.engine)
        assert migrate.pending_differences(db.engine) == []
    finally:
        db.dispose()


def test_a_model_change_without_migration_is_detected(settings):
    """The agreement check can fail: a column missing from the database is reported."""
    db = Database(settings.effective_database_url)
    try:
        migrate.upgrade(db.engine)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE provisioning_images DROP COLUMN editions")
        differences = migrate.pending_differences(db.engine)
        assert any("editions" in str(d) for d in differences)
    finally:
        db.dispose()
