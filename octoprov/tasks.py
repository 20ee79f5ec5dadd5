"""Provisioning tasks: creating them from a request, listing, inspecting, cancelling, logs.

A task keeps the effective configuration it was created with (template merged with the
request), so later edits of the template do not change what an existing task does.
Secrets from the request are encrypted into ``secrets_encrypted``; the stored
configuration carries a mask in their place, so no view can leak them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from secrets import token_urlsafe
from typing import Any, Protocol, cast, runtime_checkable

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from octoprov import idempotency, images, pipeline, secureboot, sites, states, steps, taskspec
from octoprov.context import NodeInfo, node_info
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.domainjoin.checks import check_domain_join
from octoprov.errors import InvalidRequest, NotAvailable, send_unless_unreachable
from octoprov.logs import redactor
from octoprov.lookup import fetch
from octoprov.machines import check_secure_boot_control, check_task_fits, machine_for_mac
from octoprov.models import Task, TaskLog, TaskStep
from octoprov.netboot.bootconfig import files_token_hash
from octoprov.pages import Page, paginate
from octoprov.references import DbReferences
from octoprov.runtime import Runtime
from octoprov.settings import Settings
from octoprov.specs import MASK, Timestamp, View
from octoprov.targets import virtualmedia
from octoprov.targets.registry import machine_target_names, target_for


class StepView(View):
    position: int
    name: str
    title: str
    status: str
    started_at: Timestamp | None
    finished_at: Timestamp | None
    detail: str | None
    awaits_event: str | None = Field(
        validation_alias="event", description="A wait step: the status-callback event that completes it "
        "(POST /pxe/status); null for a work step, which a worker runs")


class TaskSummaryView(View):
    """A task as lists show it: no configuration, no steps."""

    id: int
    hostname: str
    target_type: str
    hypervisor_node_id: int | None
    mac_address: str | None
    template_id: int | None
    site_id: int | None = None
    status: str
    current_step: str | None
    progress_percent: int
    error_message: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None


class TaskView(TaskSummaryView):
    """A task in full: its effective configuration (secrets masked) and its steps."""

    result_node_id: int | None
    config: dict[str, Any] | None
    steps: list[StepView]


class LogView(View):
    id: int
    timestamp: Timestamp
    level: str
    step: str | None
    message: str | None


@dataclass(frozen=True)
class TaskFilter:
    status: str | None = None
    target_type: str | None = None
    hostname: str | None = None
    hypervisor_node_id: int | None = None
    mac_address: str | None = None


def _lookup(data: object, path: tuple[str, ...]) -> object:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _with_mask(data: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of ``data`` with MASK at each of ``paths`` (missing containers are created)."""
    return _mask(copy.deepcopy(data), paths)


def _mask(data: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """``data`` itself with MASK at each of ``paths``: for a dict of the caller's own, which needs no copy."""
    for *parents, leaf in paths:
        node = data
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = MASK
    return data


def masked_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request as a task keeps it: every secret it holds replaced by the mask."""
    return _with_mask(request, [path for path in taskspec.SECRET_PATHS if _lookup(request, path) is not None])


def create_task(session: Session, vault: Vault, body: object, *, check_on_host: bool = True,
                settings: Settings | None = None) -> Task:
    """Validate ``body`` against the request schema and the stored references (and, with
    ``check_on_host``, against what the hypervisor offers and, given the ``settings`` that say where
    the domain is, against the domain a join names), and store it."""
    return _store_task(session, vault, body, check_on_host=check_on_host, settings=settings).task


@dataclass(frozen=True)
class _Stored:
    """A task just stored, with the work steps its first message carries (known from its plan)."""

    task: Task
    first_run: list[str]


def _store_task(session: Session, vault: Vault, body: object, *, check_on_host: bool, settings: Settings | None,
                idempotency_key: str | None = None, kept: dict[str, Any] | None = None) -> _Stored:
    """``create_task``, given the request as the task keeps it when the caller has it (``kept``); the task row is
    written once, complete, and its steps are not read back."""
    refs = DbReferences(session)
    defaults = {}
    if isinstance(body, dict) and isinstance(body.get("templateId"), int) and not isinstance(
        body.get("templateId"), bool
    ):
        template = refs.template(body["templateId"])
        if template is not None:
            defaults = taskspec.template_defaults(template)
    spec = taskspec.parse_task_request(body, defaults, refs)
    request = cast(dict[str, Any], body)  # parse_task_request refuses anything but a JSON object
    image = refs.image(spec.os.image_id)
    problems = images.cloud_image_request_errors(image, spec)
    if problems:
        raise InvalidRequest(problems)
    secrets = spec.secrets()
    redactor.register(*secrets.values())
    node = refs.node(spec.hypervisor_node_id) if spec.hypervisor_node_id else None
    config = _mask(spec.to_config(), [tuple(dotted.split(".")) for dotted in secrets])  # a fresh dump
    _validate_on_target(spec, node_info(node, vault) if node and check_on_host else None)
    os_type = refs.image_os_type(spec.os.image_id) or "windows"
    cloud = images.is_cloud_image(image)
    machine = machine_for_mac(session, spec.mac_address) if node is None and spec.mac_address else None
    owner = node if node is not None else machine
    after = secureboot.after_install_for(spec, os_type, owner.options if owner else None,
                                         signed_kernel=image.signed_kernel if image else True, cloud_image=cloud)
    check_secure_boot_control(machine, after)
    site_id = sites.task_site(session, owner, spec.site_id)
    if spec.target_type in machine_target_names():  # against the machine its BMC described, when it did
        check_task_fits(session, spec.mac_address, spec.os_disk_gb)
        if problems := virtualmedia.request_errors(spec.options.boot_method, machine, image):
            raise InvalidRequest(problems)
    elif spec.options.boot_method is not None:
        raise InvalidRequest({"options.bootMethod": f"only for bare metal: a {spec.target_type} VM boots as its "
                                                    "node says"})
    warnings = check_domain_join(spec, settings) if check_on_host and settings is not None else []
    callback_token, files_token = token_urlsafe(32), token_urlsafe(32)
    redactor.register(callback_token, files_token)
    planned = steps.plan(spec, node.name if node else None, os_type, cloud_image=cloud,
                         secure_boot_after_install=after)
    task = Task(
        hostname=spec.hostname,
        target_type=spec.target_type,
        hypervisor_node_id=spec.hypervisor_node_id,
        mac_address=spec.mac_address,
        template_id=spec.template_id,
        site_id=site_id,
        config_override=kept if kept is not None else masked_request(request),
        config=config,
        secrets_encrypted=vault.encrypt_json(secrets) if secrets else None,
        callback_token_encrypted=vault.encrypt(callback_token),
        files_token_hash=files_token_hash(files_token),
        files_token_encrypted=vault.encrypt(files_token),
        status=states.PENDING,
        current_step=planned[0].title,  # the first step's: the row is inserted complete, no UPDATE follows
        idempotency_key=idempotency_key,
    )
    session.add(task)
    session.flush()
    pipeline.add_steps(session, task.id, planned)
    _know_steps(task, planned)
    pipeline.log(session, task.id, "Task created", step="create")
    for warning in warnings:
        pipeline.log(session, task.id, warning, level="warn", step="create")
    return _Stored(task, steps.first_run(planned))


def _know_steps(task: Task, planned: list[steps.StepDef]) -> None:
    """The new task's steps as its view shows them, given to the task as if loaded: they went in by one
    executemany, and reading them back for the answer would cost a statement and nine rows."""
    set_committed_value(task, "steps", [
        TaskStep(task_id=task.id, position=position, name=step.name, title=step.title, kind=step.kind,
                 phase=step.phase, event=step.event, status=pipeline.StepStatus.PENDING, attempts=0)
        for position, step in enumerate(planned, start=1)])


class StepQueue(Protocol):
    """Where a new task's first work steps are sent (the Celery dispatcher of the caller)."""

    def run_steps(self, task_id: int, target_type: str, names: list[str]) -> bool: ...


@runtime_checkable
class SiteQueue(Protocol):
    """A queue that chooses the queue of a task's site (the Celery dispatcher): told a new task's site by its
    submission, it does not read it back."""

    def remember_site(self, task_id: int, site: str | None) -> None: ...


class TaskQueue(StepQueue, Protocol):
    """Where a task's work is sent once it exists: its steps, and the rollback of a cancelled task."""

    def rollback(self, task_id: int, target_type: str) -> None: ...


@dataclass(frozen=True)
class Submission:
    view: dict[str, Any]
    replayed: bool = False  # an earlier request with the same idempotency key created the task


def submit(runtime: Runtime, queue: StepQueue, body: object, idempotency_key: str | None = None) -> Submission:
    """The one way a task is submitted, by the API and the CLI alike: validate and store it, queue
    its first steps, and return its view. A broker that cannot be reached leaves the task pending
    (logged); the periodic job queues it once the broker is back. With ``idempotency_key``, a request
    sent again (its answer was lost) gets the task the first one created instead of a second task."""
    kept = masked_request(body) if isinstance(body, dict) else {}
    try:
        with runtime.database.session() as session:
            if idempotency_key is not None and (earlier := idempotency.earlier_task(session, idempotency_key, kept)):
                return Submission(TaskView.of(earlier).to_json(), replayed=True)
            stored = _store_task(session, runtime.vault, body, check_on_host=runtime.settings.check_on_host,
                                 settings=runtime.settings, idempotency_key=idempotency_key, kept=kept)
            view = TaskView.of(stored.task).to_json()
            site = sites.site_name(session, stored.task.site_id)
    except IntegrityError:
        if idempotency_key is None:
            raise
        with runtime.database.session() as session:  # the same request, sent twice at once: the other one won
            earlier = idempotency.earlier_task(session, idempotency_key, kept)
            if earlier is None:
                raise
            return Submission(TaskView.of(earlier).to_json(), replayed=True)
    if isinstance(queue, SiteQueue):  # stored: the queue need not read the new task's site back
        queue.remember_site(view["id"], site)
    if not queue.run_steps(view["id"], view["targetType"], stored.first_run):
        with runtime.database.session() as session:
            pipeline.log(session, view["id"], "The broker could not be reached; the task starts when it is back",
                         level="warn", step="create")
    return Submission(view)


def cancel_task(database: Database, queue: TaskQueue, task_id: int) -> dict[str, Any]:
    """The one way a task is cancelled, by the API and the CLI alike: its steps stop, then the
    rollback removes what it created (in the background, on the target's pool). Returns its view."""
    with database.session() as session:
        view = TaskView.of(pipeline.cancel(session, task_id)).to_json()
    # the cancel recorded the rollback as due: while the broker is away the periodic job sends it later
    send_unless_unreachable(task_id, "rollback", lambda: queue.rollback(task_id, view["targetType"]))
    return view


def retry_task(database: Database, queue: TaskQueue, task_id: int) -> dict[str, Any]:
    """The one way a failed task is retried, by the API and the CLI alike: from its failed step, or
    from the start when the rollback removed its machine; the steps are queued. Returns its view."""
    with database.session() as session:
        task = get_task(session, task_id)
        run = pipeline.retry(session, task_id, rolled_back=task.machine_ref is None)
        session.refresh(task)
        view = TaskView.of(task).to_json()
    queue.run_steps(task_id, view["targetType"], run)
    return view


def _validate_on_target(spec: taskspec.TaskSpec, node: NodeInfo | None) -> None:
    """The target's own cheap check (a driver that is not available yet fails the task when it runs)."""
    try:
        target = target_for(spec.target_type)
    except NotAvailable:
        return
    target.compute.validate(spec, node)


def get_task(session: Session, task_id: int) -> Task:
    return fetch(session, Task, task_id, "task")


def list_tasks(session: Session, where: TaskFilter, page: int, per_page: int) -> Page:
    query = select(Task).order_by(Task.id.desc())
    if where.status:
        query = query.where(Task.status == where.status)
    if where.target_type:
        query = query.where(Task.target_type == where.target_type)
    if where.hostname:
        query = query.where(Task.hostname.ilike(f"%{_escape_like(where.hostname)}%", escape="\\"))
    if where.hypervisor_node_id is not None:
        query = query.where(Task.hypervisor_node_id == where.hypervisor_node_id)
    if where.mac_address:
        query = query.where(Task.mac_address == where.mac_address)
    return paginate(session, query, page, per_page)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def task_logs(
    session: Session, task_id: int, since: datetime | None, after_id: int | None, limit: int
) -> list[TaskLog]:
    get_task(session, task_id)
    query = select(TaskLog).where(TaskLog.task_id == task_id).order_by(TaskLog.id).limit(limit)
    if since is not None:
        query = query.where(TaskLog.timestamp >= since)
    if after_id is not None:
        query = query.where(TaskLog.id > after_id)
    return list(session.scalars(query))


def latest_logs(session: Session, task_id: int, count: int) -> list[TaskLog]:
    """The last ``count`` entries of a task's log, oldest first: where following its log starts."""
    get_task(session, task_id)
    query = select(TaskLog).where(TaskLog.task_id == task_id).order_by(TaskLog.id.desc()).limit(count)
    return list(reversed(session.scalars(query).all()))
