"""Console token store (``console/tokens.py``): hashing, expiry, deleted instances."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from onestack.console.tokens import ConsoleTokenStore, hash_token
from onestack.db.compute import Instance
from onestack.db.console import ConsoleAuthToken
from onestack.db.engine import Database
from onestack.db.migrate import upgrade


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'console.db'}")
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


def add_instance(db: Database, uuid: str, deleted: bool = False) -> None:
    now = dt.datetime(2026, 1, 1)
    with db.transaction() as s:
        s.add(Instance(uuid=uuid, project_id="p", user_id="u", created_at=now,
                       updated_at=now, deleted=deleted))


UUID = "11111111-2222-3333-4444-555555555555"


def test_token_round_trip_and_only_hash_stored(db: Database) -> None:
    add_instance(db, UUID)
    store = ConsoleTokenStore(db, ttl=600, clock=Clock())
    token, conn = store.create(UUID, "novnc", "127.0.0.1", 5901, "host1")
    assert len(token) >= 40 and conn.port == 5901 and conn.expires == 1_000_600
    got = store.validate(token)
    assert got is not None and got == conn
    assert store.validate(token) == conn  # reusable until it expires (noVNC reconnects)
    with db.reader() as s:
        rows = s.query(ConsoleAuthToken).all()
    assert [r.token_hash for r in rows] == [hash_token(token)]
    assert token not in rows[0].token_hash


def test_token_expiry_and_pruning(db: Database) -> None:
    add_instance(db, UUID)
    clock = Clock()
    store = ConsoleTokenStore(db, ttl=10, clock=clock)
    token, _ = store.create(UUID, "novnc", "127.0.0.1", 5900)
    clock.now += 9
    assert store.validate(token) is not None
    clock.now += 1
    assert store.validate(token) is None
    # Creating another token deletes the expired rows.
    store.create(UUID, "novnc", "127.0.0.1", 5900)
    with db.reader() as s:
        assert s.query(ConsoleAuthToken).count() == 1


@pytest.mark.parametrize("bad", ["", "x", "bad" * 200, "\x00", "a b"])
def test_malformed_or_unknown_tokens(db: Database, bad: str) -> None:
    store = ConsoleTokenStore(db)
    assert store.validate(bad) is None


def test_tokens_die_with_their_instance(db: Database) -> None:
    add_instance(db, UUID)
    store = ConsoleTokenStore(db)
    token, _ = store.create(UUID, "novnc", "127.0.0.1", 5900)
    with db.transaction() as s:
        s.get(Instance, UUID).deleted = True  # type: ignore[union-attr]
    assert store.validate(token) is None
    orphan, _ = store.create("no-such-instance", "novnc", "127.0.0.1", 5900)
    assert store.validate(orphan) is None


def test_ttl_must_be_positive(db: Database) -> None:
    with pytest.raises(ValueError):
        ConsoleTokenStore(db, ttl=0)
