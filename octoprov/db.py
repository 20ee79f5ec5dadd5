"""Database engine and sessions: one ``Database`` per process, built from settings."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from octoprov.settings import Settings


def _tune_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Several processes (API, worker, beat) share one SQLite file in the embedded stack:
    # WAL lets readers proceed beside a writer, busy_timeout waits instead of failing,
    # and foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here: it prepares a statement on the server once a connection has
    sent it a few times, so the pipeline's few statements, sent thousands of times, are parsed and planned
    once per connection rather than on every call (psycopg2 cannot). ``postgresql+psycopg2://`` still
    selects psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


PING_IDLE_S = 1.0  # a pooled connection idle for longer than this is pinged before it is handed out


def _returned(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info["returned"] = time.monotonic()


def _ping_if_idle(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Ping a connection that sat in the pool (a server restarted meanwhile would have dropped it), and not one
    handed back a moment ago: under load a connection goes round in milliseconds, and a ping before every
    transaction is a round trip and a statement for the server each time. A connection that the server dropped
    within that moment fails its first statement: SQLAlchemy then discards the pool's connections, and the
    caller answers as for any outage (the API's 503, a worker's retry)."""
    returned = record.info.get("returned")
    if returned is None or time.monotonic() - returned < PING_IDLE_S:
        return  # new, or back in the pool a moment ago
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1")
    except Exception as exc:  # the pool drops this connection and hands out another (a new one, pinged by connecting)
        raise DisconnectionError(f"a pooled connection was lost: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    engine = create_engine(url)
    event.listen(engine, "checkin", _returned)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


@contextmanager
def autocommit(pooled: PoolProxiedConnection) -> Iterator[bool]:
    """A checked-out psycopg connection in autocommit for the block, if it is outside any transaction (the pool's
    ping, when it pinged, left one open); whether it is. It goes back in transactions before the pool has it, and
    one that cannot is not pooled again. Other drivers (SQLite) are left as they are."""
    driver: Any = pooled.dbapi_connection
    alone = isinstance(driver, psycopg.Connection) and driver.info.transaction_status == TransactionStatus.IDLE
    if alone:
        driver.autocommit = True
    try:
        yield alone
    finally:
        if alone:
            try:
                driver.autocommit = False
            except Exception as exc:
                pooled.invalidate(exc)


class Database:
    """The engine and session factory of one database URL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if not settings.database_url:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings.effective_database_url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends normally and rolls back otherwise."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def alone(self) -> Iterator[Connection]:
        """A connection for work that needs no transaction around it: one statement, or reads that need not
        see one moment together. On PostgreSQL each statement commits as it runs (autocommit), which spares
        the BEGIN and COMMIT round trips, and the server's work for them, that a transaction of one statement
        costs. A connection the pool's ping left in a transaction, and SQLite, run the block as one
        transaction, committed when it ends normally."""
        with self.engine.connect() as connection, autocommit(connection.connection) as alone:
            yield connection
            if not alone:
                connection.commit()

    @contextmanager
    def scratch_session(self) -> Iterator[Session]:
        """A session whose work is always rolled back: for dry runs that must store nothing."""
        session = self._sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def expire_loaded(session: Session, model: type[Any], row_id: int, attributes: list[str] | None = None) -> None:
    """A copy of a row this session loaded reads it (or these ``attributes``) again: a statement sent past
    the ORM changed it, and the ORM does not know."""
    loaded = session.identity_map.get(session.identity_key(model, row_id))
    if loaded is not None:
        session.expire(loaded, attributes)


def protocol_columns(protocol: type) -> tuple[str, ...]:
    """The read-only properties a ``typing.Protocol`` declares, its bases' first: the columns a Core statement
    selects so that its rows satisfy the protocol where an ORM object would."""
    return tuple(dict.fromkeys(name for cls in reversed(protocol.__mro__)
                               for name, member in vars(cls).items() if isinstance(member, property)))
