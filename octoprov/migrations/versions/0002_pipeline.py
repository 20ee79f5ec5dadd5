"""Pipeline: callback token and machine reference on tasks; kind, phase, deadline and lease on steps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provisioning_tasks") as table:
        table.add_column(sa.Column("callback_token_encrypted", sa.Text()))
        table.add_column(sa.Column("machine_ref", sa.String(255)))
    with op.batch_alter_table("provisioning_task_steps") as table:
        table.add_column(sa.Column("kind", sa.String(10), server_default="work", nullable=False))
        table.add_column(sa.Column("phase", sa.String(50), server_default="creating_vm", nullable=False))
        table.add_column(sa.Column("event", sa.String(50)))
        table.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        table.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True)))
        table.add_column(sa.Column("lease_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("provisioning_task_steps") as table:
        for column in ("lease_until", "deadline_at", "attempts", "event", "phase", "kind"):
            table.drop_column(column)
    with op.batch_alter_table("provisioning_tasks") as table:
        table.drop_column("machine_ref")
        table.drop_column("callback_token_encrypted")
