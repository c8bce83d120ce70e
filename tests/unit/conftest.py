"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onestack.db.engine import Database
from onestack.db.migrate import upgrade


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database of the test's own."""
    database = Database(f"sqlite:///{tmp_path / 'c.db'}", 5)
    upgrade(database.engine)
    yield database
    database.dispose()
