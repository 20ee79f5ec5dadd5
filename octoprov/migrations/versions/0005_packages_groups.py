"""Post-install packages, node groups and group membership.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamps() -> list[sa.Column[datetime]]:
    return [sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
            for name in ("created_at", "updated_at")]


def upgrade() -> None:
    op.create_table(
        "provisioning_packages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        sa.Column("os_type", sa.String(20), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("parameters_schema", JSON, nullable=False),
        sa.Column("idempotent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), server_default="1800", nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "provisioning_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        *_timestamps(),
    )
    op.create_table(
        "provisioning_group_members",
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("provisioning_groups.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("node_id", sa.Integer(), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_provisioning_group_members_node_id", "provisioning_group_members", ["node_id"])


def downgrade() -> None:
    op.drop_index("ix_provisioning_group_members_node_id", "provisioning_group_members")
    op.drop_table("provisioning_group_members")
    op.drop_table("provisioning_groups")
    op.drop_table("provisioning_packages")
