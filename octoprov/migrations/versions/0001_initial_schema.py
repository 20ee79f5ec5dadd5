"""Initial schema: the spec's provisioning tables, nodes, task steps and API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamps(updated: bool = True) -> list[sa.Column[datetime]]:
    columns = [sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)]
    if updated:
        columns.append(
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
        )
    return columns


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("endpoint", sa.String(500)),
        sa.Column("username", sa.String(255)),
        sa.Column("credentials_encrypted", sa.Text()),
        sa.Column("options", JSON),
        sa.Column("hostname", sa.String(255)),
        sa.Column("os_name", sa.String(100)),
        sa.Column("mac_addresses", JSON),
        sa.Column("ip_addresses", JSON),
        *_timestamps(),
    )
    op.create_table(
        "provisioning_images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("os_type", sa.String(50), nullable=False),
        sa.Column("os_version", sa.String(100)),
        sa.Column("architecture", sa.String(20), server_default="x64", nullable=False),
        sa.Column("image_path", sa.String(500), nullable=False),
        sa.Column("image_index", sa.Integer(), server_default="1", nullable=False),
        sa.Column("boot_wim_path", sa.String(500)),
        sa.Column("size_bytes", sa.BigInteger()),
        sa.Column("checksum_sha256", sa.String(64)),
        sa.Column("editions", JSON),
        *_timestamps(),
    )
    op.create_table(
        "provisioning_driver_packs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("vendor", sa.String(100)),
        sa.Column("model_pattern", sa.String(255)),
        sa.Column("os_type", sa.String(50), nullable=False),
        sa.Column("driver_path", sa.String(500), nullable=False),
        *_timestamps(updated=False),
    )
    op.create_table(
        "provisioning_templates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("default_cpu", sa.Integer(), server_default="4", nullable=False),
        sa.Column("default_memory_gb", sa.Integer(), server_default="16", nullable=False),
        sa.Column("default_disks", JSON),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("provisioning_images.id")),
        sa.Column("language", sa.String(10), server_default="de-DE", nullable=False),
        sa.Column("timezone", sa.String(100), server_default="W. Europe Standard Time", nullable=False),
        sa.Column("domain_join", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("domain_name", sa.String(255)),
        sa.Column("domain_ou", sa.String(500)),
        sa.Column("domain_join_method", sa.String(20), server_default="offline", nullable=False),
        sa.Column("post_install_packages", JSON),
        *_timestamps(),
    )
    op.create_table(
        "provisioning_tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("target_type", sa.String(20), nullable=False),
        sa.Column("hypervisor_node_id", sa.Integer(), sa.ForeignKey("nodes.id")),
        sa.Column("mac_address", sa.String(17)),
        sa.Column("template_id", sa.Integer(), sa.ForeignKey("provisioning_templates.id")),
        sa.Column("config_override", JSON),
        sa.Column("config", JSON),
        sa.Column("secrets_encrypted", sa.Text()),
        sa.Column("domain_join_blob", sa.Text()),
        sa.Column("status", sa.String(50), server_default="pending", nullable=False),
        sa.Column("current_step", sa.String(100)),
        sa.Column("progress_percent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_message", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("result_node_id", sa.Integer(), sa.ForeignKey("nodes.id")),
    )
    op.create_index("ix_provisioning_tasks_status", "provisioning_tasks", ["status"])
    op.create_index("ix_provisioning_tasks_mac_address", "provisioning_tasks", ["mac_address"])
    op.create_table(
        "provisioning_task_steps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "task_id", sa.Integer(), sa.ForeignKey("provisioning_tasks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), server_default="pending", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("detail", sa.Text()),
        sa.UniqueConstraint("task_id", "position", name="uq_task_step_position"),
    )
    op.create_table(
        "provisioning_task_logs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "task_id", sa.Integer(), sa.ForeignKey("provisioning_tasks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("timestamp", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("level", sa.String(20), server_default="info", nullable=False),
        sa.Column("step", sa.String(100)),
        sa.Column("message", sa.Text()),
    )
    op.create_index("ix_provisioning_task_logs_task_id", "provisioning_task_logs", ["task_id", "id"])


def downgrade() -> None:
    op.drop_table("provisioning_task_logs")
    op.drop_table("provisioning_task_steps")
    op.drop_table("provisioning_tasks")
    op.drop_table("provisioning_templates")
    op.drop_table("provisioning_driver_packs")
    op.drop_table("provisioning_images")
    op.drop_table("nodes")
    op.drop_table("api_tokens")
