"""Virtual-media installs: the hash of a task's boot-media token, which BMCs fetch the media with, and a
Windows image's installation ISO.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("provisioning_tasks", sa.Column("media_token_hash", sa.String(64)))
    op.create_index("ix_provisioning_tasks_media_token_hash", "provisioning_tasks", ["media_token_hash"])
    op.add_column("provisioning_images", sa.Column("install_iso_path", sa.String(500)))


def downgrade() -> None:
    op.drop_column("provisioning_images", "install_iso_path")
    op.drop_index("ix_provisioning_tasks_media_token_hash", "provisioning_tasks")
    op.drop_column("provisioning_tasks", "media_token_hash")
