"""The `octoprov` command: run the services, migrate, manage tokens and tasks.

This package is a composition root, beside ``api`` and ``workers``: it starts the API and the
workers, importing them only inside their commands; the domain (``octoprov``) imports none of them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.orm import Session

from octoprov import logs, migrate, users, websessions
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.errors import OctoprovError
from octoprov.roles import Role
from octoprov.settings import Settings, SettingsError, env_example, env_name
from octoprov.states import ALL as TASK_STATES
from octoprov.supervisor import ProcessGroup, octoprov_command
from octoprov.tokens import create_token, verify_token


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _database(settings: Settings) -> Database:
    return Database.from_settings(settings)


@click.group()
@click.version_option(package_name="octoprov")
def main() -> None:
    """Octoprov: zero-touch OS provisioning for Hyper-V, KVM and bare metal."""


# -- services ---------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: OCTOPROV_API_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: OCTOPROV_API_PORT).")
def up(host: str | None, port: int | None) -> None:
    """Run API, worker and beat together, for local use (migrates first, prints the API token)."""
    from octoprov.targets import registry

    settings = _settings()
    settings.ensure_dirs()
    logs.configure(settings.effective_log_dir, "up", settings.log_level)
    host, port = host or settings.api_host, port or settings.api_port
    database = _database(settings)
    migrate.upgrade(database.engine)
    token = _local_token(settings, database)
    database.dispose()
    click.echo(f"Octoprov is starting on http://{host}:{port}  (API docs: http://{host}:{port}/api/v1/docs)")
    click.echo(f"API token: {token}")
    click.echo(f'Try: curl -H "Authorization: Bearer {token}" http://{host}:{port}/api/v1/provisioning/templates')
    if not settings.public_url:  # machines and the fake target call back to where this API listens
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - comparing, not binding
        os.environ[env_name("public_url")] = f"http://{local}:{port}"
    children = {
        "api": octoprov_command("api", "--host", host, "--port", str(port)),
        "worker": octoprov_command("worker", "--queues", ",".join(registry.queues())),
        "beat": octoprov_command("beat"),
    }
    if settings.pxe_enabled:
        children["pxe"] = octoprov_command("pxe")
    group = ProcessGroup(children)
    sys.exit(group.run())


def _local_token(settings: Settings, database: Database) -> str:
    """The token `up` prints: kept in DATA_DIR/api-token (mode 0600) and reused while it is valid."""
    path = settings.data_dir / "api-token"
    with database.session() as session:
        if path.exists():
            token = path.read_text().strip()
            if verify_token(session.connection(), token) is not None:
                return token
        token = create_token(session, "local")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: OCTOPROV_API_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: OCTOPROV_API_PORT).")
def api(host: str | None, port: int | None) -> None:
    """Serve the REST API."""
    from api.server import serve

    settings = _settings()
    settings.ensure_dirs()
    serve(settings, host or settings.api_host, port or settings.api_port)


@main.command()
@click.option("--queues", default=None, help="Comma-separated queues (pools) to consume [default: default; with "
              "--site: all of the site's pools].")
@click.option("--site", default=None, help="Consume this site's queues (<pool>@<site>) instead of the central ones.")
@click.option("--concurrency", type=int, default=None, help="Task slots (default: OCTOPROV_WORKER_CONCURRENCY).")
@click.option("--hostname", default=None, help="Worker node name (default: octoprov@<host>).")
def worker(queues: str | None, site: str | None, concurrency: int | None, hostname: str | None) -> None:
    """Run a Celery worker for the given queues (pools: default and one per target type, e.g. hyperv, kvm).

    With --site NAME it runs the steps of that site's tasks: the queues <pool>@NAME of the pools --queues names."""
    from octoprov.sites import check_site_name
    from octoprov.targets import registry
    from workers.app import app

    known = registry.queues()
    settings = _settings()
    settings.ensure_dirs()
    if site is not None:
        try:
            check_site_name(site)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--site") from None
    given = queues if queues is not None else ("default" if site is None else ",".join(known))
    chosen = [q.strip() for q in given.split(",") if q.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown queue(s) {unknown}; choose from {', '.join(known)}", param_hint="--queues")
    chosen = list(registry.site_queues(site, tuple(chosen))) if site else chosen
    logs.configure(settings.effective_log_dir, "worker", settings.log_level)
    argv = ["worker", "--queues", ",".join(chosen), "--concurrency", str(concurrency or settings.worker_concurrency),
            "--loglevel", settings.log_level, "--without-gossip", "--without-mingle"]
    if hostname:
        argv += ["--hostname", hostname]
    app.worker_main(argv)


@main.command()
def beat() -> None:
    """Run the Celery beat scheduler (periodic jobs)."""
    from workers.app import app

    settings = _settings()
    settings.ensure_dirs()
    logs.configure(settings.effective_log_dir, "beat", settings.log_level)
    app.start(["beat", "--loglevel", settings.log_level])


@main.command()
@click.option("--no-tftp", is_flag=True, help="Do not run the TFTP server.")
@click.option("--no-proxydhcp", is_flag=True, help="Do not run the ProxyDHCP responder.")
@click.option("--site", default=None, help="Run as the edge of this site: no database, the central API only.")
@click.option("--central", default=None,
              help="With --site: the central API's URL (default: OCTOPROV_EDGE_CENTRAL_URL).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --site: file holding the API token (default: OCTOPROV_EDGE_TOKEN_FILE, else "
                   "DATA_DIR/edge-token).")
@click.option("--http-host", default=None, help="With --site: HTTP address (default: OCTOPROV_EDGE_HTTP_HOST).")
@click.option("--http-port", type=int, default=None, help="With --site: HTTP port (default: OCTOPROV_EDGE_HTTP_PORT).")
def pxe(no_tftp: bool, no_proxydhcp: bool, site: str | None, central: str | None, token_file: Path | None,
        http_host: str | None, http_port: int | None) -> None:
    """Run the network-boot services: TFTP (iPXE binaries) and ProxyDHCP beside the site's DHCP server.

    Addresses and ports come from the OCTOPROV_TFTP_*, OCTOPROV_PROXYDHCP_* and OCTOPROV_BOOT_SERVER_ADDRESS
    settings; ports 67, 69 and 4011 need root (or CAP_NET_BIND_SERVICE). With --site NAME it is that site's
    edge: it also serves boot scripts and files over HTTP, from answers and files fetched from --central.
    """
    from octoprov.netboot import service

    settings = _settings()
    settings.ensure_dirs()
    logs.configure(settings.effective_log_dir, "pxe" if site is None else f"pxe-{site}", settings.log_level)
    if not no_proxydhcp and not settings.boot_server_address:
        raise click.ClickException("set OCTOPROV_BOOT_SERVER_ADDRESS (this host's address on the boot network)")
    try:
        if site is None:
            service.run(settings, tftp=not no_tftp, proxydhcp=not no_proxydhcp)
        else:
            _edge(settings, site, central, token_file, http_host, http_port, not no_tftp, not no_proxydhcp)
    except OSError as exc:
        raise click.ClickException(f"cannot open the network-boot ports: {exc}") from None


def _edge(settings: Settings, site: str, central: str | None, token_file: Path | None, http_host: str | None,
          http_port: int | None, tftp: bool, proxydhcp: bool) -> None:
    """`octoprov pxe --site`: the site's edge, from the options or their settings."""
    from octoprov.edge import service
    from octoprov.edge.central import Unreachable, read_token
    from octoprov.sites import check_site_name

    try:
        check_site_name(site)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--site") from None
    url = central or settings.edge_central_url
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("the central API's http(s):// URL is needed (or OCTOPROV_EDGE_CENTRAL_URL)",
                                 param_hint="--central")
    path = token_file or settings.edge_token_file or settings.data_dir / "edge-token"
    try:
        token = read_token(path)
    except (OSError, ValueError, IndexError) as exc:
        raise click.BadParameter(f"cannot read the API token from {path}: {type(exc).__name__}",
                                 param_hint="--token-file") from None
    options = service.EdgeOptions(site, url, token, http_host or settings.edge_http_host,
                                  settings.edge_http_port if http_port is None else http_port, tftp, proxydhcp)
    try:
        service.run(settings, options)
    except Unreachable as exc:
        raise click.ClickException(str(exc)) from None


# -- database, settings, tokens -------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    settings = _settings()
    settings.ensure_dirs()
    database = _database(settings)
    migrate.upgrade(database.engine, revision)
    Vault.from_settings(settings)  # first start with embedded defaults: create the key file now
    click.echo(f"database at revision {revision}: {_safe_url(database.url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.group()
def settings() -> None:
    """Settings (OCTOPROV_* environment variables)."""


@settings.command("example")
def settings_example() -> None:
    """Print .env.example: every setting with its documentation."""
    click.echo(env_example(), nl=False)


@main.command("deploy-key")
def deploy_key() -> None:
    """Print the public SSH key post-install logs on to Linux machines with (generated on first use);
    authorise it in images that do not get it from Octoprov's cloud-init or Kickstart answers."""
    from octoprov import deploykey

    click.echo(deploykey.public_key(_settings()))


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice([role.value for role in Role]), default=Role.ADMIN.value,
              show_default=True, help="viewer: read; operator: also create, cancel and retry tasks; admin: "
                                      "everything (libraries, nodes, machines, packages).")
def token_create(name: str, role: str) -> None:
    """Create an API token called NAME with a role and print it (it is shown only once)."""
    settings = _settings()
    with _database(settings).session() as session:
        try:
            click.echo(create_token(session, name, Role(role)))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from None


# -- users ----------------------------------------------------------------------------------------

ROLE_CHOICE = click.Choice([role.value for role in Role])


@main.group()
def user() -> None:
    """Local accounts for the web UI (for shops without Active Directory, or a way in while it is down)."""


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("create")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True, help="viewer, operator or admin (docs/operations.md).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def user_create(name: str, role: str, password_stdin: bool) -> None:
    """Create the local user NAME (asks for a password of at least 12 characters)."""
    password = _new_password(password_stdin)
    with _database(_settings()).session() as session:
        try:
            created = users.create_user(session, name, password, Role(role))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"user {created.username} ({created.role}) created")


@user.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def user_password(name: str, password_stdin: bool) -> None:
    """Set a new password for NAME; their open sessions end."""
    password = _new_password(password_stdin)
    _change_user(name, lambda session: users.set_password(session, name, password))


@user.command("role")
@click.argument("name")
@click.argument("role", type=ROLE_CHOICE)
def user_role(name: str, role: str) -> None:
    """Give NAME another role; their open sessions end."""
    _change_user(name, lambda session: users.set_role(session, name, Role(role)))


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Stop NAME from signing in; their open sessions end."""
    _change_user(name, lambda session: users.set_disabled(session, name, True))


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    """Let a disabled NAME sign in again."""
    _change_user(name, lambda session: users.set_disabled(session, name, False))


def _change_user(name: str, change: Callable[[Session], None]) -> None:
    with _database(_settings()).session() as session:
        try:
            change(session)
            ended = websessions.end_all_of(session, f"user:{users.canonical_username(name)}")
        except (LookupError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {name.strip().lower()} changed; {ended} session(s) ended")


@user.command("list")
def user_list() -> None:
    """The local users, their roles and whether they may sign in."""
    with _database(_settings()).session() as session:
        for account in users.list_users(session):
            click.echo(f"{account.username}\t{account.role}\t{'disabled' if account.disabled else 'enabled'}")


# -- tasks ----------------------------------------------------------------------------------------


@main.group()
def task() -> None:
    """Provisioning tasks."""


@task.command("create")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="JSON request body, as for POST /api/v1/provisioning/tasks.")
def task_create(path: Path) -> None:
    """Create a provisioning task from a JSON file."""
    from octoprov import tasks

    settings = _settings()
    try:
        body = json.loads(path.read_text())
    except ValueError as exc:
        raise click.ClickException(f"{path}: not valid JSON: {exc}") from None
    from octoprov.runtime import Runtime
    from workers.dispatch import Dispatcher

    try:
        view = tasks.submit(Runtime(settings, _database(settings), Vault.from_settings(settings)),
                            Dispatcher.from_settings(settings), body).view
    except OctoprovError as exc:
        raise click.ClickException(_describe(exc)) from None
    click.echo(json.dumps(view, indent=2))


@task.command("plan")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="JSON request body, as for POST /api/v1/provisioning/tasks.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the artifacts into.")
def task_plan(path: Path, out: Path) -> None:
    """Validate a request and write every artifact the task would produce, creating nothing."""
    from octoprov.plan import plan_task

    settings = _settings()
    try:
        body = json.loads(path.read_text())
    except ValueError as exc:
        raise click.ClickException(f"{path}: not valid JSON: {exc}") from None
    try:
        plan = plan_task(settings, _database(settings), Vault.from_settings(settings), body)
    except OctoprovError as exc:
        raise click.ClickException(_describe(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    for name, content in plan.artifacts.items():
        (out / name).write_text(content)
        click.echo(f"wrote {out / name}")


OUTPUT = click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True,
                      help="table: for people; json: exactly what the API answers for the same request.")


@task.command("list")
@click.option("--status", type=click.Choice(TASK_STATES), default=None, help="Only tasks in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Tasks per page.")
@click.option("--page", type=click.IntRange(1), default=1, show_default=True, help="Page number (newest first).")
@OUTPUT
def task_list(status: str | None, limit: int, page: int, output: str) -> None:
    """List the newest tasks."""
    from octoprov import tasks

    settings = _settings()
    with _database(settings).session() as session:
        found = tasks.list_tasks(session, tasks.TaskFilter(status=status), page, limit)
        if output == "json":
            click.echo(json.dumps(found.to_json(lambda row: tasks.TaskSummaryView.of(row).to_json()), indent=2))
            return
        click.echo(f"{'ID':>6}  {'HOSTNAME':<16} {'TARGET':<10} {'STATUS':<12} {'PROGRESS':>8}  CURRENT STEP")
        for row in found.items:
            click.echo(f"{row.id:>6}  {row.hostname:<16} {row.target_type:<10} {row.status:<12} "
                       f"{row.progress_percent:>7}%  {row.current_step or ''}")
        click.echo(f"({len(found.items)} of {found.total})")


@task.command("show", short_help="Show one task: its state and steps.")
@click.argument("task_id", type=int)
@OUTPUT
def task_show(task_id: int, output: str) -> None:
    """Show one task: its state and steps (json: also its configuration; secrets masked)."""
    from octoprov import tasks

    settings = _settings()
    with _database(settings).session() as session:
        try:
            view = tasks.TaskView.of(tasks.get_task(session, task_id))
        except OctoprovError as exc:
            raise click.ClickException(_describe(exc)) from None
    if output == "json":
        click.echo(json.dumps(view.to_json(), indent=2))
        return
    click.echo(f"task {view.id}: {view.hostname} ({view.target_type})")
    click.echo(f"  status    {view.status}, {view.progress_percent}%"
               + (f", now: {view.current_step}" if view.current_step else ""))
    if view.error_message:
        click.echo(f"  error     {view.error_message}")
    click.echo(f"  created   {view.created_at:%Y-%m-%d %H:%M:%S}"
               + (f", started {view.started_at:%Y-%m-%d %H:%M:%S}" if view.started_at else "")
               + (f", ended {view.completed_at:%Y-%m-%d %H:%M:%S}" if view.completed_at else ""))
    for step in view.steps:
        click.echo(f"  {step.position:>3}. {step.status:<9} {step.title}" + (f": {step.detail}" if step.detail else ""))


@task.command("watch", short_help="Follow a task until it ends; exit status by outcome.")
@click.argument("task_id", type=int)
@click.option("--tail", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="Log entries to show from before the watch began.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=0.5, show_default=True,
              help="Seconds between two readings while nothing changes.")
def task_watch(task_id: int, tail: int, interval: float) -> None:
    """Follow a task until it ends: a bar of its steps redrawn in place and its log as it grows (plain lines
    when the output is not a terminal).

    Exit status: 0 completed, 1 failed, 2 cancelled, 3 no such task, 130 interrupted (Ctrl-C stops the
    watching only; the task goes on).
    """
    from cli import watch

    database = _database(_settings())
    try:
        code = watch.watch(database, task_id, watch.renderer_for(sys.stdout), tail=tail, interval=interval)
    except KeyboardInterrupt:
        click.echo(f"stopped watching; task {task_id} goes on", err=True)
        sys.exit(watch.EXIT_INTERRUPTED)
    except OctoprovError as exc:
        click.echo(f"Error: {_describe(exc)}", err=True)
        sys.exit(watch.EXIT_UNWATCHABLE)
    sys.exit(code)


@task.command("cancel", short_help="Cancel an unfinished task (it is rolled back).")
@click.argument("task_id", type=int)
def task_cancel(task_id: int) -> None:
    """Cancel a task that has not ended: its running step stops and a worker removes what it created."""
    _queue_change(task_id, "cancel")


@task.command("retry", short_help="Restart a failed task from its failed step.")
@click.argument("task_id", type=int)
def task_retry(task_id: int) -> None:
    """Restart a failed task from its failed step (from the start if the rollback removed its machine)."""
    _queue_change(task_id, "retry")


def _queue_change(task_id: int, action: str) -> None:
    """Cancel or retry as the API does (the same function, the same broker); refusals are one line."""
    from octoprov import tasks
    from workers.dispatch import Dispatcher

    settings = _settings()
    change = tasks.cancel_task if action == "cancel" else tasks.retry_task
    try:
        view = change(_database(settings), Dispatcher.from_settings(settings), task_id)
    except OctoprovError as exc:
        raise click.ClickException(_describe(exc)) from None
    done = "cancelled; the rollback runs in the background" if action == "cancel" else f"restarted ({view['status']})"
    click.echo(f"task {task_id} {done}")


@task.command("logs", short_help="Print a task's log; --follow to keep printing.")
@click.argument("task_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries until the task ends.")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                                              "%Y-%m-%d"]), default=None, metavar="TIME",
              help="Only entries at or after TIME: 2025-01-31, 2025-01-31T12:00:00 (UTC) or with an offset "
                   "(2025-01-31T12:00:00+01:00).")
@click.option("--limit", type=click.IntRange(1, 1000), default=500, show_default=True,
              help="At most this many entries, oldest first (with --follow: per reading).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one line per entry; json: each entry as the API gives it, one per line.")
def task_logs(task_id: int, follow: bool, since: datetime | None, limit: int, output: str) -> None:
    """Print a task's log, oldest first (times in UTC)."""
    from cli import watch
    from octoprov import tasks

    start = _utc(since) if since else None

    def show(entries: list[tasks.LogView]) -> None:
        for entry in entries:
            if start is None or _utc(entry.timestamp) >= start:  # following reads by id, not by time
                click.echo(json.dumps(entry.to_json()) if output == "json" else watch.log_line(entry))

    database = _database(_settings())
    try:
        with database.session() as session:
            first = [tasks.LogView.of(entry) for entry in tasks.task_logs(session, task_id, start, None, limit)]
        show(first)
        if follow:
            for progress in watch.follow(database, task_id, after=first[-1].id if first else 0):
                show(progress.new_logs)
    except KeyboardInterrupt:
        sys.exit(watch.EXIT_INTERRUPTED)
    except OctoprovError as exc:
        raise click.ClickException(_describe(exc)) from None


def _utc(moment: datetime) -> datetime:
    """A time without an offset is UTC (as stored; SQLite gives it back without one)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _describe(exc: OctoprovError) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "invalid request:\n" + "\n".join(f"  {field}: {reason}" for field, reason in errors.items())
    return exc.message


@main.command()
def states() -> None:
    """Print docs/states.md: the task state diagram, drawn from octoprov/states.py (`make states`)."""
    from octoprov.statediagram import markdown

    click.echo(markdown(), nl=False)


@main.command()
@click.option("--port", type=int, default=5555, show_default=True, help="Port to listen on.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
def flower(port: int, address: str) -> None:
    """Run Flower: a web view of the workers and their tasks, on the configured broker.

    Needs the Redis broker (the embedded one cannot broadcast to workers). Flower's HTTP API (/api/...)
    answers only with authentication (e.g. FLOWER_BASIC_AUTH=user:password) or with
    FLOWER_UNAUTHENTICATED_API=true, which is only safe on 127.0.0.1. Other FLOWER_* variables apply too.
    """
    from workers.app import app

    settings = _settings()
    if not settings.effective_broker_url.startswith(("redis://", "rediss://")):
        click.echo("warning: Flower sees no workers through the embedded broker; set OCTOPROV_BROKER_URL "
                   "to a Redis URL", err=True)
    logs.configure(settings.effective_log_dir, "flower", settings.log_level)
    app.start(["flower", f"--port={port}", f"--address={address}"])



@main.command()
@click.argument("role", type=click.Choice(["api", "worker", "beat", "flower", "pxe", "samba"]))
@click.option("--port", type=int, default=None,
              help="Port of the role's service. Default: api OCTOPROV_API_PORT, pxe OCTOPROV_TFTP_PORT, "
                   "flower 5555, samba 445.")
@click.option("--hostname", default=None,
              help="worker: its node name as given to `octoprov worker --hostname` (%h, %n, %d expand the same "
                   "way). Default: the worker's own, celery@<host>.")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=60), default=3.0, show_default=True,
              help="Seconds to wait for each connection and answer.")
def healthcheck(role: str, port: int | None, hostname: str | None, timeout: float) -> None:
    """Exit 0 when ROLE's service in this container is healthy, else 1 with one line on stderr saying what
    failed: for the container engine's health check (compose `healthcheck: test:`), run every few seconds.

    api: GET /api/v1/swagger.json answers 200. worker: the worker answers a ping over the broker. beat: its
    schedule file is fresh. flower: GET /healthcheck answers OK. pxe: the TFTP server answers a read request.
    samba: smbd answers an SMB2 NEGOTIATE on port 445. Services bound to 0.0.0.0 are asked on 127.0.0.1.
    """
    from octoprov import healthcheck as checks

    def check() -> None:
        if role == "api":
            settings = _settings()
            checks.check_api(checks.local_address(settings.api_host), port or settings.api_port, timeout)
        elif role == "flower":
            checks.check_flower(checks.LOOPBACK, port or checks.FLOWER_PORT, timeout)
        elif role == "pxe":
            settings = _settings()
            checks.check_pxe(checks.local_address(settings.tftp_host), port or settings.tftp_port, timeout)
        elif role == "samba":
            checks.check_samba(checks.LOOPBACK, port or checks.SMB_PORT, timeout)
        elif role in ("worker", "beat"):
            _settings()  # a bad setting is reported as such, before workers.app reads them
            from workers.app import app

            if role == "worker":
                checks.check_worker(app, checks.worker_nodename(hostname), timeout)
            else:
                checks.check_beat(app)

    try:
        checks.within(3 * timeout + 5, check)  # connect, ask, answer; +5 s: imports and settings
    except checks.HealthcheckFailed as exc:
        click.echo(f"unhealthy: {role}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"healthy: {role}")
