"""Run Alembic migrations programmatically (on start and from ``onestack db upgrade``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

_VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision(?:\s*:[^=]+)?\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(.+)$", re.M)


def _script_heads() -> set[str]:
    """Head revisions of the migration scripts, read from the files (no Alembic import)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in _VERSIONS.glob("*.py"):
        text_ = path.read_text()
        m = _REVISION.search(text_)
        if m:
            revisions.add(m.group(1))
        d = _DOWN.search(text_)
        if d:
            parents.update(re.findall(r"['\"]([^'\"]+)['\"]", d.group(1)))
    return revisions - parents


def up_to_date(engine: Engine) -> bool:
    """True when the database is at every script head (a cheap check on each start)."""
    if not inspect(engine).has_table("alembic_version"):
        return False
    with engine.connect() as conn:
        current = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    return current == _script_heads()


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "onestack.db:migrations")
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` (idempotent). Each service has its own branch of
    migrations, so the default target is every head."""
    if revision == "heads" and up_to_date(engine):
        return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) if heads else None
