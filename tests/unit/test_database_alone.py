"""``Database.alone`` (octoprov/db.py): work that needs no transaction around it. On PostgreSQL each statement
commits as it runs, and the connection goes back to the pool in transactions again with its prepared
statements kept; on SQLite the block is one transaction, committed at its end. Both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from octoprov.models import AuditEvent

_AUDIT = AuditEvent.__table__


def _entries(database) -> list[str]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent.actor).order_by(AuditEvent.id)))


def _write(connection, actor: str) -> None:
    connection.execute(insert(_AUDIT).values(actor=actor, action="POST /x", result="ok"))


def test_what_a_block_writes_is_kept(database):
    with database.alone() as connection:
        _write(connection, "token:one")
        _write(connection, "token:two")
    assert _entries(database) == ["token:one", "token:two"]


def test_a_failing_block_keeps_what_postgresql_committed_and_nothing_on_sqlite(database):
    postgres = database.engine.dialect.name == "postgresql"
    with pytest.raises(RuntimeError), database.alone() as connection:
        _write(connection, "token:early")
        # on PostgreSQL another connection sees it before the block ends; SQLite's transaction is not over
        assert _entries(database) == (["token:early"] if postgres else [])
        raise RuntimeError("the block fails after its statement")
    assert _entries(database) == (["token:early"] if postgres else [])


def test_the_connection_goes_back_in_transactions_with_its_prepared_statements(database):
    database.engine.dispose()  # one pooled connection, used by every block below
    statement = select(AuditEvent.id).where(AuditEvent.actor == "nobody")
    for _ in range(8):  # more than psycopg's prepare threshold
        with database.alone() as connection:
            connection.execute(statement).all()
    with database.engine.connect() as connection:
        _write(connection, "token:undone")
        if database.engine.dialect.name == "postgresql":
            prepared = connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()
            assert prepared >= 1
        connection.rollback()  # undoes the write: the connection is in a transaction again
    assert _entries(database) == []
