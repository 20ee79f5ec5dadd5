"""Alembic environment: runs migrations on the connection handed over by ``octoprov.migrate``."""

from alembic import context

from octoprov.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - migrations always run through octoprov.migrate
    raise RuntimeError("run migrations with `octoprov db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
