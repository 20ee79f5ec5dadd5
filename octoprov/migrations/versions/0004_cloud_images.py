"""Cloud images: the disk format (qcow2) and virtual size read from an image's header.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provisioning_images") as table:
        table.add_column(sa.Column("disk_format", sa.String(20)))
        table.add_column(sa.Column("virtual_size_bytes", sa.BigInteger()))


def downgrade() -> None:
    with op.batch_alter_table("provisioning_images") as table:
        for column in ("virtual_size_bytes", "disk_format"):
            table.drop_column(column)
