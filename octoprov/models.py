"""The data model: the spec's five provisioning tables, plus nodes, task steps, API tokens, post-install
packages, node groups, and the counters behind some Prometheus metrics.

Column names follow the spec's schema. Changes go through Alembic migrations
(``octoprov/migrations``); a test checks that models and migrations agree.
Columns ending in ``_encrypted`` hold Fernet tokens (see ``octoprov.crypto``), never plain text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column, relationship

JSONType = JSON().with_variant(JSONB(), "postgresql")
MAX_ID = 2**31 - 1  # ids are 32-bit INTEGER columns; a bigger number must never reach a query


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives them back naive; they were stored in UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _created() -> MappedColumn[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())


def _updated() -> MappedColumn[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now())


class Base(DeclarativeBase):
    pass


class Site(Base):
    """A named place with its own boot network: its edge serves boot answers and files from ``boot_url``, and its
    workers consume the queues ``<pool>@<name>`` (``octoprov.sites``)."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    boot_url: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Node(Base):
    """A hypervisor host Octoprov drives, or a machine that provisioning produced."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # hypervisor | machine
    kind: Mapped[str] = mapped_column(String(20))  # hyperv | kvm (hypervisors); windows | linux (machines)
    endpoint: Mapped[str | None] = mapped_column(String(500))  # WinRM URL, libvirt URI
    username: Mapped[str | None] = mapped_column(String(255))
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # transport, certificate validation, ...
    hostname: Mapped[str | None] = mapped_column(String(255))
    os_name: Mapped[str | None] = mapped_column(String(100))
    mac_addresses: Mapped[list[str] | None] = mapped_column(JSONType)
    ip_addresses: Mapped[list[str] | None] = mapped_column(JSONType)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)  # None: the central site
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Image(Base):
    __tablename__ = "provisioning_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    os_type: Mapped[str] = mapped_column(String(50))  # windows | linux
    os_version: Mapped[str | None] = mapped_column(String(100))
    architecture: Mapped[str] = mapped_column(String(20), default="x64", server_default="x64")
    image_path: Mapped[str] = mapped_column(String(500))
    image_index: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    boot_wim_path: Mapped[str | None] = mapped_column(String(500))
    install_iso_path: Mapped[str | None] = mapped_column(String(500))  # Windows by virtual media
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    checksum_sha256: Mapped[str | None] = mapped_column(String(64))
    disk_format: Mapped[str | None] = mapped_column(String(20))  # "qcow2" when the file is one (cloud images)
    virtual_size_bytes: Mapped[int | None] = mapped_column(BigInteger)  # a qcow2 image's disk size
    editions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)  # filled by a WIM scan
    kernel_path: Mapped[str | None] = mapped_column(String(500))  # Linux installers: kernel + initrd
    initrd_path: Mapped[str | None] = mapped_column(String(500))
    kernel_args: Mapped[str | None] = mapped_column(String(1000))
    # the installer kernel is signed by its distribution (Secure Boot machines then install with it on)
    signed_kernel: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class DriverPack(Base):
    __tablename__ = "provisioning_driver_packs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    vendor: Mapped[str | None] = mapped_column(String(100))
    model_pattern: Mapped[str | None] = mapped_column(String(255))  # regex matched against SMBIOS model
    os_type: Mapped[str] = mapped_column(String(50))
    driver_path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = _created()


class Template(Base):
    __tablename__ = "provisioning_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    default_cpu: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    default_memory_gb: Mapped[int] = mapped_column(Integer, default=16, server_default="16")
    default_disks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("provisioning_images.id"))
    language: Mapped[str] = mapped_column(String(10), default="de-DE", server_default="de-DE")
    timezone: Mapped[str] = mapped_column(
        String(100), default="W. Europe Standard Time", server_default="W. Europe Standard Time"
    )
    domain_join: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    domain_name: Mapped[str | None] = mapped_column(String(255))
    domain_ou: Mapped[str | None] = mapped_column(String(500))
    domain_join_method: Mapped[str] = mapped_column(String(20), default="offline", server_default="offline")
    post_install_packages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Task(Base):
    __tablename__ = "provisioning_tasks"
    __table_args__ = (
        Index("ix_provisioning_tasks_status", "status"),
        Index("ix_provisioning_tasks_mac_address", "mac_address"),
        Index("ix_provisioning_tasks_idempotency_key", "idempotency_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    target_type: Mapped[str] = mapped_column(String(20))  # hyperv | kvm | baremetal
    hypervisor_node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"))
    mac_address: Mapped[str | None] = mapped_column(String(17))  # canonical: 00:15:5d:01:02:03
    template_id: Mapped[int | None] = mapped_column(ForeignKey("provisioning_templates.id"))
    config_override: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the request as sent, secrets removed
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # template merged with the request, secrets removed
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)  # the request's secrets, encrypted
    callback_token_encrypted: Mapped[str | None] = mapped_column(Text)  # the machine's callback token
    machine_ref: Mapped[str | None] = mapped_column(String(255))  # the target's id of the machine it created
    files_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # per-task file URLs
    files_token_encrypted: Mapped[str | None] = mapped_column(Text)
    media_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # a virtual-media install's ISO URL
    hardware: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # SMBIOS manufacturer/product/uuid from iPXE
    domain_join_blob: Mapped[str | None] = mapped_column(Text)  # djoin output, encrypted
    status: Mapped[str] = mapped_column(String(50), default="pending", server_default="pending")
    current_step: Mapped[str | None] = mapped_column(String(100))
    progress_percent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result_node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"))
    # a failed or cancelled task whose rollback has not run yet: the periodic job sends it again until it does
    rollback_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the client's Idempotency-Key of the request that created it: the same request sent again gets this task
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # the site whose workers run its steps and whose edge boots its machine (from its node or machine); None: central
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)

    steps: Mapped[list[TaskStep]] = relationship(
        back_populates="task", order_by="TaskStep.position", cascade="all, delete-orphan"
    )


class TaskStep(Base):
    """One line of the task detail view: what the step is, how far it got, how long it took."""

    __tablename__ = "provisioning_task_steps"
    __table_args__ = (UniqueConstraint("task_id", "position", name="uq_task_step_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("provisioning_tasks.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))  # stable key, e.g. create_vm
    title: Mapped[str] = mapped_column(String(255))  # shown to people, e.g. "Create VM"
    kind: Mapped[str] = mapped_column(String(10), default="work", server_default="work")  # work | wait
    phase: Mapped[str] = mapped_column(String(50), default="creating_vm", server_default="creating_vm")
    event: Mapped[str | None] = mapped_column(String(50))  # the callback event that completes a wait step
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # wait steps
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # work steps being run
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # when the periodic job last sent this work step again (or when a retry's message is due): not before
    # another grace period does it send it once more
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str | None] = mapped_column(Text)

    task: Mapped[Task] = relationship(back_populates="steps")


class TaskLog(Base):
    __tablename__ = "provisioning_task_logs"
    __table_args__ = (Index("ix_provisioning_task_logs_task_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("provisioning_tasks.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = _created()
    level: Mapped[str] = mapped_column(String(20), default="info", server_default="info")
    step: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)


class TaskEvent(Base):
    """One change of a task or one new log line of it, in the order the database numbered them: what the live
    streams (``octoprov.events``) send. Database triggers write the rows (migration 0008) whenever a task or one
    of its steps changes or a log line is added, so every writer, in any process, is covered."""

    __tablename__ = "task_events"
    __table_args__ = (
        Index("ix_task_events_task_id", "task_id", "id"),
        Index("ix_task_events_at", "at"),
        {"sqlite_autoincrement": True},  # an id is never given out twice, even after the newest rows went
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("provisioning_tasks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # "task" (the task or a step changed) | "log" (a new line)
    log_id: Mapped[int | None] = mapped_column(Integer)  # the provisioning_task_logs row of a "log" event
    at: Mapped[datetime] = _created()


class ApiToken(Base):
    """A bearer token for the management API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")  # octoprov.roles.Role
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A local account for the web UI, for shops without Active Directory; only a bcrypt hash is stored."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)  # lower case
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # octoprov.roles.Role
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = _created()


class WebSession(Base):
    """A signed-in browser: the cookie's SHA-256 (never the cookie), who, the role granted at sign-in, the token
    state-changing requests must echo (CSRF), and when it ends."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    actor: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    csrf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SigninFailure(Base):
    """A refused sign-in, counted per user name and per address to slow down password guessing."""

    __tablename__ = "signin_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), index=True)  # lower case
    source: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = _created()


class AuditEvent(Base):
    """One state-changing request or sign-in: who, with which role, from where, what, on which object, with
    which result, when. Append-only (the database refuses updates; only the retention job deletes) and never
    a secret: the request body is not kept."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = _created()
    actor: Mapped[str] = mapped_column(String(255))  # "token:NAME", "user:NAME" or "anonymous"
    role: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(64))  # the client's address
    action: Mapped[str] = mapped_column(String(255))  # "POST /provisioning/tasks", "sign-in"
    object_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[str] = mapped_column(String(32))  # "ok", "denied", "refused", "failed"
    status: Mapped[int | None] = mapped_column(Integer)  # the HTTP status answered

    __table_args__ = (Index("ix_audit_events_at", "at"), Index("ix_audit_events_actor", "actor"))


class Package(Base):
    """Software a post-install run puts on a machine: a script run with parameters bound, never pasted in."""

    __tablename__ = "provisioning_packages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    os_type: Mapped[str] = mapped_column(String(20))  # windows (PowerShell script) | linux (POSIX sh script)
    script: Mapped[str] = mapped_column(Text)
    parameters_schema: Mapped[dict[str, Any]] = mapped_column(JSONType)  # a subset of JSON Schema (octoprov.packages)
    idempotent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # may be retried
    timeout_s: Mapped[int] = mapped_column(Integer, default=1800, server_default="1800")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Group(Base):
    """A named set of nodes; post-install adds new machines to the groups a task names."""

    __tablename__ = "provisioning_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class GroupMember(Base):
    """A node's membership of a group; it goes with either of them."""

    __tablename__ = "provisioning_group_members"
    __table_args__ = (Index("ix_provisioning_group_members_node_id", "node_id"),)

    group_id: Mapped[int] = mapped_column(ForeignKey("provisioning_groups.id", ondelete="CASCADE"), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = _created()

    node: Mapped[Node] = relationship(lazy="joined")


class MetricCounter(Base):
    """A Prometheus counter that processes on any host add to (webhook deliveries happen in Celery
    workers): one row per metric name and label set, only ever incremented (``octoprov.metrics``)."""

    __tablename__ = "metric_counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    labels: Mapped[str] = mapped_column(String(500), primary_key=True)  # canonical JSON: keys sorted
    value: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
