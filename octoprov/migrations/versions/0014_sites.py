"""Sites: named places with their own boot network; nodes and tasks belong to one (none: the central site).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        sa.Column("boot_url", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    # added in place, not by batch mode: rebuilding provisioning_tasks on SQLite would drop its event triggers
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in ("nodes", "provisioning_tasks"):
        if sqlite:  # alembic would add the foreign key as a separate ALTER, which SQLite has not
            op.execute(f"ALTER TABLE {table} ADD COLUMN site_id INTEGER REFERENCES sites (id)")
        else:
            op.add_column(table, sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id")))
        op.create_index(f"ix_{table}_site_id", table, ["site_id"])


def downgrade() -> None:
    for table in ("provisioning_tasks", "nodes"):
        op.drop_index(f"ix_{table}_site_id", table_name=table)
        op.drop_column(table, "site_id")  # in place (SQLite 3.35+): no rebuild that would drop the triggers
    op.drop_table("sites")
