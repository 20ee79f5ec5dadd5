"""A task remembers the Idempotency-Key of the request that created it, so the same request sent again (its
answer lost to a restart or a broken connection) gets that task instead of creating a second one.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a unique index, not a constraint: SQLite adds an index in place, where a constraint would rebuild the table
    op.add_column("provisioning_tasks", sa.Column("idempotency_key", sa.String(255)))
    op.create_index("ix_provisioning_tasks_idempotency_key", "provisioning_tasks", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_provisioning_tasks_idempotency_key", table_name="provisioning_tasks")
    op.drop_column("provisioning_tasks", "idempotency_key")
