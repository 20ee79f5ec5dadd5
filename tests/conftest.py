"""Shared fixtures: settings in a temporary data folder, a migrated database on each backend
(SQLite and the throwaway PostgreSQL), the Flask app and client, and an API token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from api import create_app
from octoprov import migrate
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.runtime import Runtime
from octoprov.settings import Settings
from octoprov.tokens import create_token
from tests.support.servers import postgres_server, postgres_url, redis_server, redis_url  # noqa: F401

# fixtures some modules share: libvirt's test driver (conn, target); steps run in-process (queue, lab); a Samba
# AD domain controller (samba_dc, lab_dns); govmomi's vCenter simulator (vcsim)
pytest_plugins = ["tests.support.libvirt_ctx", "tests.support.inline_pipeline", "tests.support.samba_dc",
                  "tests.support.vcsim"]

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    # live streams end after a second: a test that reads one whole (the role walk) does not wait for minutes
    s = Settings(data_dir=tmp_path / "var", secret_key=Fernet.generate_key().decode(), events_max_stream_s=1,
                 events_poll_ms=100)
    s.ensure_dirs()
    return s


def database_url_for(backend: str, settings: Settings, request) -> str:
    if backend == "sqlite":
        return settings.effective_database_url
    server = request.getfixturevalue("postgres_server")
    return server.create_database()


def sqlite_database(settings: Settings) -> Iterator[Database]:
    """For a module whose tests are not about the database: overrides ``database`` with SQLite only."""
    db = Database(settings.effective_database_url)
    migrate.upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture(params=BACKENDS)
def database(request, settings) -> Database:
    db = Database(database_url_for(request.param, settings, request))
    migrate.upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def runtime(settings, database) -> Runtime:
    return Runtime(settings, database, Vault.from_settings(settings))


@pytest.fixture
def app(runtime):
    flask_app = create_app(runtime=runtime)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def token(database) -> str:
    with database.session() as session:
        return create_token(session, "tests")


@pytest.fixture
def client(app, token):
    """A test client that sends the API token with every request."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return test_client


@pytest.fixture
def anonymous(app):
    return app.test_client()
