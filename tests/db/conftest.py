"""Database fixtures: every test here runs on SQLite and on each server in
ONESTACK_TEST_DATABASE_URLS (MariaDB, PostgreSQL), each in a scratch database it drops."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.migrate import upgrade
from tests.conftest import IN_CI, database_urls


def _scratch(url: str, tmp_path: Path) -> Iterator[str]:
    if url == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    parsed = make_url(url)
    name = f"onestack_t_{uuid.uuid4().hex[:10]}"
    admin_db = "postgres" if parsed.get_backend_name() == "postgresql" else "mysql"
    server = create_engine(parsed.set(database=admin_db), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001
        server.dispose()
        if IN_CI:
            raise
        pytest.skip(f"database server at {parsed.host} unavailable: {exc}")
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            if parsed.get_backend_name() == "postgresql":
                conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        server.dispose()


@pytest.fixture(params=database_urls(), ids=lambda u: u.split(":")[0].split("+")[0])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _scratch(request.param, tmp_path)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url, pool_size=5)
    upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, bcrypt_rounds=4)
