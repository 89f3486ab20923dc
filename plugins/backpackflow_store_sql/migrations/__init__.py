"""Alembic environment of the run store; run it through ``SqlRunStore.upgrade()``."""
