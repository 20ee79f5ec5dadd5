"""Everything a driver needs to act on one task, loaded once per step."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from octoprov import secureboot, states
from octoprov.crypto import Vault
from octoprov.db import Database, protocol_columns
from octoprov.errors import Cancelled
from octoprov.images import CLOUD_IMAGE_COLUMNS, CloudImage, cloud_image, is_cloud_image
from octoprov.machines import machine_for_mac
from octoprov.models import Image, Node, Task
from octoprov.settings import Settings
from octoprov.targets import registry
from octoprov.taskspec import TaskSpec


@dataclass(frozen=True)
class NodeInfo:
    id: int
    name: str
    kind: str
    endpoint: str | None
    options: dict[str, Any]
    credentials: dict[str, Any] = field(repr=False)
    username: str | None = None
    mac_addresses: tuple[str, ...] = ()  # a bare-metal machine's network cards


@dataclass(frozen=True)
class TaskContext:
    task_id: int
    hostname: str
    target_type: str
    os_type: str
    spec: TaskSpec  # the validated request, secrets included (never logged: they are repr=False)
    mac_address: str | None
    machine_ref: str | None
    node: NodeInfo | None
    settings: Settings
    database: Database = field(repr=False)
    vault: Vault = field(repr=False)
    cloud_image: CloudImage | None = None  # set when the task boots a Linux cloud image (qcow2)
    secure_boot_after_install: bool = False  # installs with Secure Boot off, turned on after (octoprov/secureboot.py)
    known_callback_token: str | None = field(default=None, repr=False)  # read with the task when it was loaded

    @property
    def data_dir(self) -> Path:
        folder = self.settings.data_dir
        return _resolved(folder) if folder.is_absolute() else folder.resolve()  # relative: to today's cwd

    @property
    def callback_url(self) -> str:
        return callback_url(self.settings)

    def callback_token(self) -> str:
        if self.known_callback_token is not None:
            return self.known_callback_token
        with self.database.session() as session:
            token = session.get_one(Task, self.task_id).callback_token_encrypted
        return self.vault.decrypt(token) if token else ""

    def secrets(self) -> dict[str, str]:
        with self.database.session() as session:
            token = session.get_one(Task, self.task_id).secrets_encrypted
        return self.vault.decrypt_json(token) or {}

    def check_cancelled(self) -> None:
        """Long driver actions call this between their parts: a cancelled task stops there."""
        with self.database.session() as session:
            status = session.scalar(select(Task.status).where(Task.id == self.task_id))
        if status in (states.CANCELLED, states.FAILED):
            raise Cancelled(f"task {self.task_id} is {status}")


@functools.lru_cache(maxsize=64)
def _resolved(path: Path) -> Path:
    """An absolute data folder's real path, found once per process: every step asks, and resolving walks it."""
    return path.resolve()


def callback_url(settings: Settings) -> str:
    """Where machines send their status reports."""
    return settings.effective_public_url + "/api/v1/provisioning/pxe/status"


class NodeColumns(Protocol):
    """The node columns ``node_info`` reads: an ORM ``Node``, or a Core row that carries them under their names
    (``load_context`` reads its task's host so, without building ORM objects)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def credentials_encrypted(self) -> str | None: ...
    @property
    def options(self) -> dict[str, Any] | None: ...
    @property
    def mac_addresses(self) -> list[str] | None: ...


NODE_COLUMNS = protocol_columns(NodeColumns)


def node_info(row: NodeColumns, vault: Vault) -> NodeInfo:
    """What a driver needs of a node, credentials decrypted."""
    return NodeInfo(row.id, row.name, row.kind, row.endpoint, row.options or {},
                    vault.decrypt_json(row.credentials_encrypted) or {}, row.username, tuple(row.mac_addresses or ()))


_TASKS, _NODES, _IMAGES = states.TASKS, cast(Table, Node.__table__), cast(Table, Image.__table__)
# Built once (a worker loads a context for every step it runs): the task with its host's columns under their own
# names, so the row stands for the node (all None without a host); the image's columns a cloud image is made of.
_TASK_WITH_HOST = (
    select(_TASKS.c.id.label("task_id"), _TASKS.c.hostname, _TASKS.c.target_type, _TASKS.c.mac_address,
           _TASKS.c.machine_ref, _TASKS.c.config, _TASKS.c.secrets_encrypted, _TASKS.c.callback_token_encrypted,
           *(_NODES.c[name] for name in NODE_COLUMNS))
    .select_from(_TASKS.outerjoin(_NODES, _NODES.c.id == _TASKS.c.hypervisor_node_id))
    .where(_TASKS.c.id == bindparam("task_id"))
)
_IMAGE = (select(*(_IMAGES.c[name] for name in (*CLOUD_IMAGE_COLUMNS, "signed_kernel")))
          .where(_IMAGES.c.id == bindparam("image_id")))


def load_context(session: Session, task_id: int, settings: Settings, database: Database, vault: Vault) -> TaskContext:
    """Read with Core rows, not ORM objects: every step of every task loads one, and the identity map's
    bookkeeping would cost more than the two reads."""
    task = session.connection().execute(_TASK_WITH_HOST, {"task_id": task_id}).first()
    if task is None:
        raise NoResultFound(f"no task {task_id}")
    config = task.config or {}
    image_id = (config.get("os") or {}).get("imageId")
    image = session.connection().execute(_IMAGE, {"image_id": image_id}).first() if image_id else None
    os_type = (image.os_type if image is not None else None) or "windows"
    spec = TaskSpec.from_stored(config, vault.decrypt_json(task.secrets_encrypted) or {}, os_type)
    node = None
    if task.id is not None:  # the host node's id (the task's is task_id): None when the task has no host
        node = node_info(task, vault)
    elif task.target_type in registry.machine_target_names() and task.mac_address:
        row = machine_for_mac(session, task.mac_address)
        node = node_info(row, vault) if row is not None else None
    cloud = is_cloud_image(image)
    after = secureboot.after_install_for(spec, os_type, node.options if node else None,
                                         signed_kernel=image.signed_kernel if image else True, cloud_image=cloud)
    return TaskContext(
        task_id=task.task_id, hostname=task.hostname, target_type=task.target_type, os_type=os_type, spec=spec,
        mac_address=task.mac_address, machine_ref=task.machine_ref, node=node, settings=settings,
        database=database, vault=vault,
        # the images folder is resolved (a few system calls) only for a task that needs its path
        cloud_image=cloud_image(image, settings.effective_images_dir) if cloud else None,
        secure_boot_after_install=after,
        known_callback_token=vault.decrypt(task.callback_token_encrypted) if task.callback_token_encrypted else "",
    )


def with_machine(ctx: TaskContext, mac_address: str | None, machine_ref: str | None) -> TaskContext | None:
    """The context of the same task once a step recorded its machine, without reading the task again; None
    when the machine decides more than that (a bare-metal machine's record is found by its MAC), so the
    context must be loaded anew."""
    if ctx.target_type in registry.machine_target_names():
        return None
    return replace(ctx, mac_address=mac_address, machine_ref=machine_ref)
