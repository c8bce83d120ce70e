"""Database access: engine/session (``engine``), tables per service, Alembic migrations."""
