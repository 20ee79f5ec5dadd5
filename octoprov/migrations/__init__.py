"""Alembic migrations of the Octoprov schema."""
