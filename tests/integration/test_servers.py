"""The throwaway PostgreSQL / Redis servers of tests/support/servers.py really start, work and stop."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest
import redis
from psycopg2 import sql

from tests.support import servers
from tests.support.processes import process_table
from tests.support.servers import (
    POSTGRES_URL_ENV,
    REDIS_URL_ENV,
    RunningServer,
    ServerUnavailable,
    start_postgres,
    start_redis,
    unavailable,
)

# Also provided by tests/conftest.py; bound here too so this module stands on its own. Every binding of
# the fixtures shares one server per session (test_fixtures_share_one_* below).
postgres_server = servers.postgres_server
postgres_url = servers.postgres_url
redis_server = servers.redis_server
redis_url = servers.redis_url


def _start(start: Callable[[Path], RunningServer], base_dir: Path) -> RunningServer:
    try:
        return start(base_dir)
    except ServerUnavailable as exc:
        missing = str(exc)
    unavailable(missing)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    return [child for child, fields in process_table() if int(fields[1]) == pid]


def _wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _tables(url: str) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        rows = cur.fetchall()
    conn.close()
    return {name for (name,) in rows}


@pytest.mark.postgres
def test_postgres_round_trip(postgres_url: str) -> None:
    table = sql.Identifier(f"roundtrip_{uuid.uuid4().hex[:8]}")
    conn = psycopg2.connect(postgres_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, name text NOT NULL)").format(table))
            cur.execute(
                sql.SQL("INSERT INTO {} (name) VALUES (%s), (%s)").format(table), ("node-1", "nœud-2")
            )
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT id, name FROM {} ORDER BY id").format(table))
            assert cur.fetchall() == [(1, "node-1"), (2, "nœud-2")]
            cur.execute("SHOW server_encoding")
            assert cur.fetchone() == ("UTF8",)
            cur.execute(sql.SQL("DROP TABLE {}").format(table))
    finally:
        conn.close()


@pytest.mark.postgres
def test_local_postgres_is_private(postgres_server: RunningServer) -> None:
    if os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} points to an external server")
    assert postgres_server.pid is not None and _alive(postgres_server.pid)
    assert postgres_server.url.startswith("postgresql://postgres@127.0.0.1:")
    assert postgres_server.url.endswith("/octoprov_test")
    with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
        settings = {}
        for name in (
            "listen_addresses",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "max_connections",
        ):
            cur.execute(f"SHOW {name}")
            settings[name] = cur.fetchone()[0]
        cur.execute("SELECT current_database()")
        assert cur.fetchone() == ("octoprov_test",)
    conn.close()
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }


@pytest.mark.postgres
def test_fixtures_share_one_postgres(postgres_server: RunningServer, postgres_url: str) -> None:
    assert postgres_url == postgres_server.url


@pytest.mark.postgres
def test_create_database_is_empty_and_separate(postgres_server: RunningServer) -> None:
    main_table = f"main_only_{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {main_table} (id int)")
    conn.close()
    name = f"octoprov_scratch_{uuid.uuid4().hex[:8]}"
    url = postgres_server.create_database(name)
    try:
        assert url.rsplit("/", 1) == [postgres_server.url.rsplit("/", 1)[0], name]
        assert _tables(url) == set()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone() == (name,)
            cur.execute("CREATE TABLE scratch_only (id int)")
        conn.close()
        assert "scratch_only" not in _tables(postgres_server.url)
        assert _tables(url) == {"scratch_only"}

        other = postgres_server.create_database()  # generated name
        assert other != url
        assert _tables(other) == set()
        postgres_server.drop_database(other.rsplit("/", 1)[1])

        with pytest.raises(psycopg2.errors.DuplicateDatabase):
            postgres_server.create_database(name)
        with pytest.raises(ValueError):
            postgres_server.create_database('bad"name')
    finally:
        postgres_server.drop_database(name)
        with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {main_table}")
        conn.close()
    with pytest.raises(psycopg2.OperationalError, match="does not exist"):
        psycopg2.connect(url).close()


@pytest.mark.redis
def test_redis_set_get(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"octoprov-test:{uuid.uuid4().hex}"
    try:
        assert client.set(key, "hello", ex=60)
        assert client.get(key) == b"hello"
        assert client.incr(f"{key}:n") == 1
    finally:
        client.delete(key, f"{key}:n")
        client.close()


@pytest.mark.redis
def test_fixtures_share_one_redis(redis_server: RunningServer, redis_url: str) -> None:
    assert redis_url == redis_server.url
    if not os.environ.get(REDIS_URL_ENV):
        assert redis_url.startswith("redis://127.0.0.1:") and redis_url.endswith("/0")
        assert redis_server.pid is not None and _alive(redis_server.pid)


@pytest.mark.postgres
def test_postgres_stop_ends_the_process(tmp_path: Path) -> None:
    server = _start(start_postgres, tmp_path)
    assert server.pid is not None
    pid = server.pid
    conn = psycopg2.connect(server.url)  # an open session must not hold up the shutdown
    children = _children(pid)
    assert _alive(pid) and children, "postmaster and its helper processes should be running"
    assert server.running

    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5, "fast shutdown should not wait for the open session"
    assert not _alive(pid)
    assert _wait_gone(children) == []
    assert not server.running
    server.stop()  # idempotent
    conn.close()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(server.url, connect_timeout=2).close()
    assert "database system is shut down" in server.log_path.read_text()


@pytest.mark.redis
def test_redis_stop_ends_the_process(tmp_path: Path) -> None:
    server = _start(start_redis, tmp_path)
    assert server.pid is not None
    pid = server.pid
    client = redis.Redis.from_url(server.url, socket_connect_timeout=2)
    assert client.ping()
    client.close()

    server.stop()
    assert not _alive(pid)
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=2).ping()


def test_servers_do_not_share_ports(tmp_path: Path) -> None:
    first = _start(start_redis, tmp_path / "a")
    second = _start(start_redis, tmp_path / "b")
    try:
        assert first.url != second.url
        assert first.pid != second.pid
    finally:
        second.stop()
        first.stop()
    assert not _alive(first.pid) and not _alive(second.pid)


def test_external_server_stop_is_a_noop() -> None:
    server = RunningServer(url="redis://127.0.0.1:1/0", pid=None, log_path=None)
    server.stop()
    server.stop()
    assert not server.running


@pytest.mark.redis
@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "appendonly"])
def test_redis_killed_and_restarted_keeps_its_port_and_only_persisted_data(tmp_path: Path, appendonly: bool) -> None:
    """A crash (SIGKILL) and a new process on the same port: the data survives only with append-only persistence."""
    server = _start(lambda base: start_redis(base, appendonly=appendonly), tmp_path)
    try:
        old_pid = server.pid
        assert old_pid is not None
        redis.Redis.from_url(server.url).set("kept", "yes")
        server.restart(0.1, signal.SIGKILL)
        assert server.pid != old_pid and not _alive(old_pid) and server.running
        client = redis.Redis.from_url(server.url, socket_connect_timeout=2)
        assert client.get("kept") == (b"yes" if appendonly else None)
        client.close()
    finally:
        server.stop()
    assert not _alive(server.pid)


@pytest.mark.postgres
def test_postgres_restarted_keeps_its_port_and_data(tmp_path: Path) -> None:
    server = _start(start_postgres, tmp_path)
    try:
        with psycopg2.connect(server.url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (id int)")
        conn.close()
        old_pid = server.pid
        server.restart(0.1)
        assert server.pid != old_pid and server.running
        assert "kept" in _tables(server.url)
    finally:
        server.stop()
    assert not _alive(server.pid)
