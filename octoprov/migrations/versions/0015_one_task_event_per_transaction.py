"""Task events: one "task" event per task per transaction on PostgreSQL, not one per row written.

A step's completion writes the step, the next step and the task in one transaction; the streams show the
task as it is when they read it, so one numbered change per transaction tells them all they need. The
trigger remembers, for the rest of its transaction (a transaction-local setting), the task it numbered
last and skips that task's further changes. Log lines keep an event each. SQLite keeps its triggers.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_ONCE_PER_TRANSACTION = """CREATE OR REPLACE FUNCTION octoprov_task_event() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        changed integer;
    BEGIN
        IF TG_TABLE_NAME = 'provisioning_task_logs' THEN
            INSERT INTO task_events (task_id, kind, log_id, at) VALUES (NEW.task_id, 'log', NEW.id, clock_timestamp());
            RETURN NULL;
        END IF;
        IF TG_TABLE_NAME = 'provisioning_tasks' THEN
            changed := NEW.id;
        ELSE
            changed := NEW.task_id;
        END IF;
        IF current_setting('octoprov.numbered_task', true) IS DISTINCT FROM changed::text THEN
            INSERT INTO task_events (task_id, kind, at) VALUES (changed, 'task', clock_timestamp());
            PERFORM set_config('octoprov.numbered_task', changed::text, true);
        END IF;
        RETURN NULL;
    END $$"""

_ONCE_PER_ROW = """CREATE OR REPLACE FUNCTION octoprov_task_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'provisioning_task_logs' THEN
            INSERT INTO task_events (task_id, kind, log_id, at) VALUES (NEW.task_id, 'log', NEW.id, clock_timestamp());
        ELSIF TG_TABLE_NAME = 'provisioning_tasks' THEN
            INSERT INTO task_events (task_id, kind, at) VALUES (NEW.id, 'task', clock_timestamp());
        ELSE
            INSERT INTO task_events (task_id, kind, at) VALUES (NEW.task_id, 'task', clock_timestamp());
        END IF;
        RETURN NULL;
    END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ONCE_PER_TRANSACTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ONCE_PER_ROW)
