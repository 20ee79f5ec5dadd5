"""Throwaway PostgreSQL and Redis servers for the test suite.

Each server is a real process started by this module as a direct child (own process group), listening
on 127.0.0.1 on a free port, and stopped again by its PID:

* at the end of the pytest session (session-scoped fixtures below),
* by an ``atexit`` hook if the session ends without tearing the fixtures down,
* by the kernel (``PR_SET_PDEATHSIG``) if the test process is killed outright (SIGKILL, pytest-timeout's
  ``os._exit``...). The signal is tied to the *thread* that started the server, so start servers from the
  main thread or from a thread that lives as long as the server.

Fixtures (session scope): ``postgres_server``, ``postgres_url``, ``redis_server``, ``redis_url``.
Import the ones you use into ``tests/conftest.py``; each fixture only needs ``tmp_path_factory``, so any
subset can be imported, and every import of them shares one server per session.

Set ``OCTOPROV_TEST_POSTGRES_URL`` / ``OCTOPROV_TEST_REDIS_URL`` to use an existing server instead. When
the server binaries are missing the fixtures skip, or fail when ``CI=true`` (``make test`` installs them).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_URL_ENV = "OCTOPROV_TEST_POSTGRES_URL"
REDIS_URL_ENV = "OCTOPROV_TEST_REDIS_URL"
POSTGRES_DATABASE = "octoprov_test"
POSTGRES_SUPERUSER = "postgres"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
INSTALL_HINT = "run `make test`, which installs them"

_LOG_TAIL_LINES = 40
_START_ATTEMPTS = 3  # a free port can be taken by someone else between picking it and binding it
_FALLBACK_PREFIX = "octoprov-pg-"
_MAX_SOCKET_DIR_LEN = 90  # sun_path holds 107 bytes; postgres appends "/.s.PGSQL.NNNNN"
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ServerError(RuntimeError):
    """A test server could not be started."""


class ServerUnavailable(ServerError):
    """The server binaries (or the user to run them as) are not installed on this machine."""


@dataclass(eq=False)
class RunningServer:
    """A server process started by this module (``pid`` set) or an external server (``pid`` None)."""

    url: str
    pid: int | None
    log_path: Path | None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stop_signal: int = field(default=signal.SIGTERM, repr=False)
    _cleanup_paths: list[Path] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)
    _owner_pid: int = field(default_factory=os.getpid, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _relaunch: Callable[[], RunningServer] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the process by its PID (stop signal, SIGKILL to its process group after 10 s) and wait.

        Idempotent; a no-op for external servers.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            if self._process is not None:
                _terminate(self._process, self._stop_signal)
        finally:
            if self.pid is not None:
                _REGISTRY.pop(self.pid, None)
            for path in self._cleanup_paths:
                shutil.rmtree(path, ignore_errors=True)

    def halt(self, sig: int | None = None) -> None:
        """Stop the process by its PID as :meth:`stop` does, but keep its data and port to :meth:`resume`
        on: an outage of the server, for tests of what its clients do meanwhile. ``sig`` replaces the
        orderly stop signal; SIGKILL goes to the server's whole process group, as a crash would."""
        if self._process is None or self._relaunch is None:
            raise TypeError(f"not a server started by this module: {self.url}")
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        else:
            _terminate(self._process, self._stop_signal if sig is None else sig)
        if self.pid is not None:
            _REGISTRY.pop(self.pid, None)

    def resume(self) -> None:
        """Start the halted server again with the same command line (same port, same data) and wait until
        it accepts connections; :meth:`stop` then stops the new process."""
        if self._relaunch is None or self.running or self._stopped:
            raise RuntimeError(f"not a halted server: {self.url}")
        again = self._relaunch()
        _REGISTRY.pop(again.pid or 0, None)
        self._process, self.pid = again._process, again.pid
        if self.pid is not None:
            _REGISTRY[self.pid] = self

    def restart(self, down_s: float = 0.0, sig: int | None = None) -> None:
        """:meth:`halt` (with ``sig``), ``down_s`` seconds of outage, :meth:`resume`: the same server process
        replaced by a new one on the same port and data, as a crash or an upgrade does."""
        self.halt(sig)
        time.sleep(down_s)
        self.resume()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The server is down for the length of the block and started again (same port and data) after it."""
        self.halt()
        try:
            yield
        finally:
            self.resume()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (from template0, UTF8) on this PostgreSQL server; return its URL.

        Without a name a unique one is generated. Fails if the database already exists.
        """
        self._require_postgres()
        name = name or f"octoprov_test_{uuid.uuid4().hex[:16]}"
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"unsafe database name {name!r}")
        from psycopg2 import sql

        with _admin_connection(self.url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
            )
        return _url_with_database(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop a database created with :meth:`create_database` (disconnecting its sessions)."""
        self._require_postgres()
        from psycopg2 import sql

        with _admin_connection(self.url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _require_postgres(self) -> None:
        if urlsplit(self.url).scheme not in ("postgresql", "postgres"):
            raise TypeError(f"not a PostgreSQL server: {self.url}")


# --- process handling -------------------------------------------------------------------------------

_REGISTRY: dict[int, RunningServer] = {}


@atexit.register
def _stop_all() -> None:
    """Fallback for sessions that end without fixture teardown: stop every server still registered.

    Only in the process that started them: a forked child exiting normally must not stop them.
    """
    for server in list(_REGISTRY.values()):
        if server._owner_pid == os.getpid():
            with contextlib.suppress(Exception):
                server.stop()


def _terminate(process: subprocess.Popen[bytes], stop_signal: int) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, stop_signal)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        # The server leads its own process group (start_new_session), so this also takes down any
        # children it left behind (postgres backends).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(sig: int) -> Callable[[], None]:
    """preexec_fn: have the kernel send ``sig`` to the server when the starting thread dies.

    Runs in the child after the uid switch (so the setting survives it) and before exec.
    """
    parent = os.getpid()

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent already died before prctl took effect
            os._exit(1)

    return preexec


def _spawn(
    cmd: list[str], log_path: Path, stop_signal: int, *, cwd: Path, user: str | None = None, append: bool = False
) -> subprocess.Popen[bytes]:
    kwargs: dict[str, object] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(stop_signal),
            **kwargs,  # type: ignore[arg-type]
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(log_path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    if log_path is None:
        return ""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return f"(no log at {log_path})"
    return "\n".join(text.splitlines()[-lines:])


class _PortTaken(ServerError):
    pass


def _launch(
    name: str,
    cmd: list[str],
    *,
    url: str,
    log_path: Path,
    ready: Callable[[], None],
    stop_signal: int,
    cwd: Path,
    user: str | None = None,
    append: bool = False,
) -> RunningServer:
    """Start ``cmd``, register it for cleanup and poll ``ready()`` until it stops raising."""
    process = _spawn(cmd, log_path, stop_signal, cwd=cwd, user=user, append=append)
    server = RunningServer(
        url=url,
        pid=process.pid,
        log_path=log_path,
        _process=process,
        _stop_signal=stop_signal,
        # RunningServer.resume: the same command again, its log kept (the first start's lines stay)
        _relaunch=lambda: _launch(name, cmd, url=url, log_path=log_path, ready=ready, stop_signal=stop_signal,
                                  cwd=cwd, user=user, append=True),
    )
    _REGISTRY[process.pid] = server
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: Exception | None = None
    try:
        while True:
            if process.poll() is not None:
                tail = _log_tail(log_path)
                error = _PortTaken if "already in use" in tail else ServerError
                raise error(
                    f"{name} exited with status {process.returncode} while starting; "
                    f"last lines of {log_path}:\n{tail}"
                )
            try:
                ready()
                return server
            except Exception as exc:
                last_error = exc
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{name} did not accept connections within {STARTUP_TIMEOUT:.0f} s "
                    f"(last error: {last_error}); last lines of {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(0.05)
    except BaseException:
        server.stop()
        raise


def _with_free_port(start: Callable[[int], RunningServer]) -> RunningServer:
    for attempt in range(_START_ATTEMPTS):
        try:
            return start(_free_port())
        except _PortTaken:
            if attempt == _START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


# --- PostgreSQL -------------------------------------------------------------------------------------


def find_postgres_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: newest /usr/lib/postgresql/*/bin, else PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_SUPERUSER, "--", *cmd] if _is_root() else cmd


def _postgres_can_reach(path: Path) -> bool:
    return subprocess.run(_as_postgres(["test", "-x", str(path)]), check=False).returncode == 0


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies waiting for a parent that never reaps count as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        pass
    else:
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_fallback_dirs() -> None:
    """Remove private cluster dirs left in the temp dir by sessions that were killed."""
    for path in Path(tempfile.gettempdir()).glob(f"{_FALLBACK_PREFIX}*"):
        pids = []
        for marker in (path / "owner.pid", path / "pgdata" / "postmaster.pid"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pids.append(int(marker.read_text().split()[0]))
        if pids and not any(_pid_alive(pid) for pid in pids):
            shutil.rmtree(path, ignore_errors=True)


def _postgres_root(base_dir: Path) -> tuple[Path, list[Path]]:
    """Where the cluster and its socket live, and what to delete when the server stops.

    Normally ``base_dir`` itself. As root, postgres runs as the ``postgres`` user, which cannot enter
    pytest's private (0700, root-owned) temp dirs; the cluster then goes to a private directory of its
    own in the system temp dir, removed again on stop. The same applies when the socket path would be too
    long. ``base_dir/pgdata`` is a symlink to it then.
    """
    socket_dir = base_dir / "sock"
    if len(str(socket_dir)) <= _MAX_SOCKET_DIR_LEN and (not _is_root() or _postgres_can_reach(base_dir)):
        return base_dir, []
    _sweep_stale_fallback_dirs()
    root = Path(tempfile.mkdtemp(prefix=_FALLBACK_PREFIX))
    (root / "owner.pid").write_text(f"{os.getpid()}\n")
    with contextlib.suppress(OSError):
        (base_dir / "pgdata").symlink_to(root / "pgdata")
    return root, [root]


def _admin_connection(url: str):  # -> psycopg2 connection, closed on exit of the with block
    import psycopg2

    conn = psycopg2.connect(_url_with_database(url, "postgres"), connect_timeout=5)
    conn.autocommit = True
    return contextlib.closing(conn)


def _url_with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def start_postgres(base_dir: Path) -> RunningServer:
    """Create a fresh cluster under ``base_dir`` and start PostgreSQL on 127.0.0.1 on a free port.

    Returns once it accepts connections and database ``octoprov_test`` exists; ``url`` points to that
    database (``postgresql://postgres@127.0.0.1:PORT/octoprov_test``).
    """
    bindir = find_postgres_bindir()
    if bindir is None:
        raise ServerUnavailable(
            "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or on PATH"
        )
    user: str | None = None
    if _is_root():
        try:
            pwd.getpwnam(POSTGRES_SUPERUSER)
        except KeyError:
            raise ServerUnavailable(
                f"running as root, but there is no {POSTGRES_SUPERUSER!r} system user to run PostgreSQL as "
                "(the Debian postgresql package creates it)"
            ) from None
        if shutil.which("runuser") is None:
            raise ServerUnavailable("running as root, but runuser (util-linux) is not installed")
        user = POSTGRES_SUPERUSER

    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    root, cleanup = _postgres_root(base_dir)
    pgdata, socket_dir = root / "pgdata", root / "sock"
    try:
        for directory in (pgdata, socket_dir):
            directory.mkdir(mode=0o700)
            if user is not None:
                shutil.chown(directory, user, user)
        if user is not None and cleanup:
            shutil.chown(root, user, user)

        initdb_log = base_dir / "initdb.log"
        with open(initdb_log, "wb") as log:
            result = subprocess.run(
                _as_postgres(
                    [
                        str(bindir / "initdb"),
                        "--pgdata",
                        str(pgdata),
                        "--username",
                        POSTGRES_SUPERUSER,
                        "--auth",
                        "trust",
                        "--encoding",
                        "UTF8",
                        "--locale",
                        "C.UTF-8",
                        "--no-sync",
                    ]
                ),
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise ServerError(
                f"initdb failed ({result.returncode}); last lines of {initdb_log}:\n{_log_tail(initdb_log)}"
            )
        hba = pgdata / "pg_hba.conf"
        hba.write_text(
            "# tests/support/servers.py: trust, local socket and 127.0.0.1 only\n"
            "local  all  all                trust\n"
            "host   all  all  127.0.0.1/32  trust\n"
        )
        if user is not None:
            shutil.chown(hba, user, user)
    except BaseException:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise

    log_path = base_dir / "postgres.log"

    def start(port: int) -> RunningServer:
        import psycopg2

        def ready() -> None:
            psycopg2.connect(
                host="127.0.0.1", port=port, user=POSTGRES_SUPERUSER, dbname="postgres", connect_timeout=2
            ).close()

        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        cmd = [str(bindir / "postgres"), "-D", str(pgdata)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return _launch(
            "postgres",
            cmd,
            url=f"postgresql://{POSTGRES_SUPERUSER}@127.0.0.1:{port}/{POSTGRES_DATABASE}",
            log_path=log_path,
            ready=ready,
            # SIGINT is PostgreSQL's "fast" shutdown: it ends open sessions. SIGTERM ("smart") would
            # wait for every client (e.g. a pooled connection nobody closed) to disconnect first.
            stop_signal=signal.SIGINT,
            cwd=root,
            user=user,
        )

    try:
        server = _with_free_port(start)
    except BaseException:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise
    server._cleanup_paths = cleanup
    try:
        server.create_database(POSTGRES_DATABASE)
    except BaseException:
        server.stop()
        raise
    return server


# --- Redis ------------------------------------------------------------------------------------------


def find_redis_server() -> Path | None:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    return Path(found) if found else None


def start_redis(base_dir: Path, *, appendonly: bool = False) -> RunningServer:
    """Start redis-server on 127.0.0.1 on a free port; ``url`` is ``redis://…/0``. Without persistence by
    default; ``appendonly`` keeps every write in ``base_dir``'s append-only file, so a restarted server
    (:meth:`RunningServer.resume`) has what the killed one had, as compose.yaml's Redis does."""
    binary = find_redis_server()
    if binary is None:
        raise ServerUnavailable("redis-server not found on PATH")
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> RunningServer:
        import redis

        url = f"redis://127.0.0.1:{port}/0"

        def ready() -> None:
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()

        cmd = [
            str(binary),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if appendonly else "no",
            "--dir", str(base_dir),
            "--daemonize", "no",
        ]  # fmt: skip
        return _launch(
            "redis-server",
            cmd,
            url=url,
            log_path=base_dir / "redis.log",
            ready=ready,
            stop_signal=signal.SIGTERM,
            cwd=base_dir,
        )

    return _with_free_port(start)


# --- pytest fixtures --------------------------------------------------------------------------------


def unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it under CI (CI=true), because a server cannot be provided."""
    message = f"{message}; {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_STARTERS: dict[str, tuple[str, Callable[[Path], RunningServer]]] = {
    "postgres": (POSTGRES_URL_ENV, start_postgres),
    "redis": (REDIS_URL_ENV, start_redis),
}
_SESSION_SERVERS = pytest.StashKey[dict[str, RunningServer | BaseException]]()


def _session_server(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server of each kind per session, however many modules import the fixtures.

    The first fixture to need it starts it and stops it at its teardown, which comes after that of
    everything set up later (session finalizers run last-in, first-out).
    """
    shared = request.session.stash.setdefault(_SESSION_SERVERS, {})
    existing = shared.get(kind)
    if isinstance(existing, BaseException):
        raise existing
    if existing is not None:
        yield existing
        return

    env_var, start = _STARTERS[kind]
    if external := os.environ.get(env_var):
        server = RunningServer(url=external, pid=None, log_path=None)
        shared[kind] = server
        yield server
        return

    missing = None
    try:
        server = start(tmp_path_factory.mktemp(kind))
    except ServerUnavailable as exc:
        missing = str(exc)
    except Exception as exc:
        shared[kind] = exc
        raise
    if missing is not None:
        unavailable(missing)  # outside the except block: no chained traceback in the report
    shared[kind] = server
    try:
        yield server
    finally:
        shared.pop(kind, None)
        server.stop()


@pytest.fixture(scope="session")
def postgres_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The session's PostgreSQL server (``.url``, ``.create_database()``)."""
    yield from _session_server("postgres", request, tmp_path_factory)


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of database ``octoprov_test`` on the session's PostgreSQL server."""
    for server in _session_server("postgres", request, tmp_path_factory):
        yield server.url


@pytest.fixture(scope="session")
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The session's Redis server."""
    yield from _session_server("redis", request, tmp_path_factory)


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of database 0 on the session's Redis server."""
    for server in _session_server("redis", request, tmp_path_factory):
        yield server.url
