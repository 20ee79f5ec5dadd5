"""Task events: the numbered changes the live streams send (GET /provisioning/events, /tasks/{id}/events).

Triggers write them, so every writer of a task, its steps or its log (API processes and workers alike) is
covered without a line of application code: a task row inserted or updated, a step updated -> a "task"
event; a log line inserted -> a "log" event naming it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_POSTGRES = [
    """CREATE FUNCTION octoprov_task_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'provisioning_task_logs' THEN
            INSERT INTO task_events (task_id, kind, log_id, at) VALUES (NEW.task_id, 'log', NEW.id, clock_timestamp());
        ELSIF TG_TABLE_NAME = 'provisioning_tasks' THEN
            INSERT INTO task_events (task_id, kind, at) VALUES (NEW.id, 'task', clock_timestamp());
        ELSE
            INSERT INTO task_events (task_id, kind, at) VALUES (NEW.task_id, 'task', clock_timestamp());
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER task_events_task AFTER INSERT OR UPDATE ON provisioning_tasks
    FOR EACH ROW EXECUTE FUNCTION octoprov_task_event()""",
    """CREATE TRIGGER task_events_step AFTER UPDATE ON provisioning_task_steps
    FOR EACH ROW EXECUTE FUNCTION octoprov_task_event()""",
    """CREATE TRIGGER task_events_log AFTER INSERT ON provisioning_task_logs
    FOR EACH ROW EXECUTE FUNCTION octoprov_task_event()""",
]
_SQLITE = [
    """CREATE TRIGGER task_events_task_insert AFTER INSERT ON provisioning_tasks
    BEGIN INSERT INTO task_events (task_id, kind) VALUES (NEW.id, 'task'); END""",
    """CREATE TRIGGER task_events_task_update AFTER UPDATE ON provisioning_tasks
    BEGIN INSERT INTO task_events (task_id, kind) VALUES (NEW.id, 'task'); END""",
    """CREATE TRIGGER task_events_step AFTER UPDATE ON provisioning_task_steps
    BEGIN INSERT INTO task_events (task_id, kind) VALUES (NEW.task_id, 'task'); END""",
    """CREATE TRIGGER task_events_log AFTER INSERT ON provisioning_task_logs
    BEGIN INSERT INTO task_events (task_id, kind, log_id) VALUES (NEW.task_id, 'log', NEW.id); END""",
]


def upgrade() -> None:
    op.create_table(
        "task_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("provisioning_tasks.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("log_id", sa.Integer()),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_task_events_task_id", "task_events", ["task_id", "id"])
    op.create_index("ix_task_events_at", "task_events", ["at"])
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for trigger, table in (("task_events_task", "provisioning_tasks"),
                               ("task_events_step", "provisioning_task_steps"),
                               ("task_events_log", "provisioning_task_logs")):
            op.execute(f"DROP TRIGGER {trigger} ON {table}")
        op.execute("DROP FUNCTION octoprov_task_event()")
    else:
        for trigger in ("task_events_task_insert", "task_events_task_update", "task_events_step", "task_events_log"):
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_index("ix_task_events_at", "task_events")
    op.drop_index("ix_task_events_task_id", "task_events")
    op.drop_table("task_events")
