"""Database fixtures: every test here runs on SQLite and on each server in
ONESTACK_TEST_DATABASE_URLS (MariaDB, PostgreSQL), each in a scratch database it drops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.migrate import upgrade
from tests.conftest import database_urls, scratch_database


@pytest.fixture(params=database_urls(), ids=lambda u: u.split(":")[0].split("+")[0])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from scratch_database(request.param, tmp_path)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url, pool_size=5)
    upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, bcrypt_rounds=4)
