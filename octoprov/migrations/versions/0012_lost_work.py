"""No task is ever lost: when a work step was last sent again by the periodic job, and a failed or
cancelled task's rollback that has not run yet.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("provisioning_task_steps", sa.Column("queued_at", sa.DateTime(timezone=True)))
    op.add_column("provisioning_tasks", sa.Column("rollback_due_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("provisioning_tasks", "rollback_due_at")
    op.drop_column("provisioning_task_steps", "queued_at")
