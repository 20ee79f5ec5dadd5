"""No task is ever lost (issue 20): the whole stack on a PostgreSQL and a Redis of its own, tasks of the fake
target submitted through the API while a fault strikes; after the settle period every task is completed,
no machine was created twice, no step's side effect happened twice, every failed task was rolled back and
the API answered no 5xx but 503. tests/support/chaos.py runs it; `make chaos` runs it at the issue's sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import chaos
from tests.support.servers import ServerUnavailable, find_postgres_bindir, find_redis_server, unavailable


@pytest.fixture(autouse=True)
def _servers_installed() -> None:
    """The chaos runs start servers of their own: skip (fail under CI) without their binaries."""
    if find_postgres_bindir() is None or find_redis_server() is None:
        unavailable("PostgreSQL or Redis server binaries not found")


def run(name: str, tmp_path: Path) -> chaos.ChaosResult:
    try:
        result = chaos.run(chaos.SCENARIOS[name], chaos.TEST, tmp_path)
    except ServerUnavailable as exc:
        unavailable(str(exc))
    print(result.report())
    return result


def assert_nothing_lost(result: chaos.ChaosResult) -> None:
    assert result.submitted == chaos.SCENARIOS[result.scenario].tasks, result.report()
    assert result.stuck == 0, result.report()
    assert result.completed == result.submitted, result.report()
    assert result.duplicates == 0 and result.repeats == 0, result.report()
    assert result.not_rolled_back == 0, result.report()
    assert result.http500 == 0, result.report()
    assert result.ok, result.report()


@pytest.mark.postgres
@pytest.mark.redis
def test_worker_process_groups_killed_at_random_moments(tmp_path: Path) -> None:
    """At least 30 SIGKILLs of a random worker's whole process group, each worker started again at once."""
    result = run("workers", tmp_path)
    assert result.faults >= 30
    assert_nothing_lost(result)


@pytest.mark.postgres
@pytest.mark.redis
def test_redis_restarted_without_persistence(tmp_path: Path) -> None:
    """Every queued and unacknowledged message is gone with the old Redis: the periodic job sends the work again."""
    result = run("redis", tmp_path)
    assert result.faults == 1
    assert_nothing_lost(result)


@pytest.mark.postgres
@pytest.mark.redis
def test_postgres_restarted(tmp_path: Path) -> None:
    """5 s without a database: the API answers 503 with Retry-After, the workers retry, nothing fails."""
    result = run("postgres", tmp_path)
    assert result.faults == 1
    assert_nothing_lost(result)


@pytest.mark.postgres
@pytest.mark.redis
def test_api_restarted(tmp_path: Path) -> None:
    """The gunicorn master killed and started again: submissions and machines' reports are sent again."""
    result = run("api", tmp_path)
    assert result.faults == 1
    assert_nothing_lost(result)
