"""API tokens carry a role; the audit trail.

Existing tokens become admin tokens: they could do everything before. The audit table is append-only: the
database refuses to update a row, and (PostgreSQL) to delete one outside the retention job, which sets
octoprov.audit_pruning for its transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_POSTGRES_GUARD = [
    """CREATE FUNCTION octoprov_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('octoprov.audit_pruning', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_events is append-only';
    END $$""",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION octoprov_audit_append_only()""",
]
_SQLITE_GUARD = [
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
]


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("role", sa.String(16), nullable=False, server_default="admin"))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("source", sa.String(64)),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("object_type", sa.String(64)),
        sa.Column("object_id", sa.String(255)),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("status", sa.Integer()),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"])
    for statement in _POSTGRES_GUARD if op.get_bind().dialect.name == "postgresql" else _SQLITE_GUARD:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION octoprov_audit_append_only()")
    op.drop_index("ix_audit_events_actor", "audit_events")
    op.drop_index("ix_audit_events_at", "audit_events")
    op.drop_table("audit_events")
    op.drop_column("api_tokens", "role")
