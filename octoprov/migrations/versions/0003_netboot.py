"""Network boot: Linux kernel/initrd on images; per-task file token and hardware inventory on tasks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("provisioning_images") as table:
        table.add_column(sa.Column("kernel_path", sa.String(500)))
        table.add_column(sa.Column("initrd_path", sa.String(500)))
        table.add_column(sa.Column("kernel_args", sa.String(1000)))
    with op.batch_alter_table("provisioning_tasks") as table:
        table.add_column(sa.Column("files_token_hash", sa.String(64)))
        table.add_column(sa.Column("files_token_encrypted", sa.Text()))
        table.add_column(sa.Column("hardware", JSON))
    op.create_index("ix_provisioning_tasks_files_token_hash", "provisioning_tasks", ["files_token_hash"])


def downgrade() -> None:
    op.drop_index("ix_provisioning_tasks_files_token_hash", "provisioning_tasks")
    with op.batch_alter_table("provisioning_tasks") as table:
        for column in ("hardware", "files_token_encrypted", "files_token_hash"):
            table.drop_column(column)
    with op.batch_alter_table("provisioning_images") as table:
        for column in ("kernel_args", "initrd_path", "kernel_path"):
            table.drop_column(column)
