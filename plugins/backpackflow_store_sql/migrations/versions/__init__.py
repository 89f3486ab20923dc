"""Alembic revisions of the run store (Alembic skips this file)."""
