"""Counters for the Prometheus metrics that processes on several hosts add to.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_counters",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("labels", sa.String(500), primary_key=True),
        sa.Column("value", sa.BigInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metric_counters")
