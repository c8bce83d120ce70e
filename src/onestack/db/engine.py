"""Engine and transactional sessions for the configured database.

``sqlite:///path`` gets WAL, foreign keys and a busy timeout; ``mysql+pymysql://`` and
``postgresql+psycopg://`` URLs get a pre-pinged pool. Every state change happens inside
``Database.transaction()``, which commits on success and rolls back on any error, so a failed
request leaves nothing half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """Create an engine with the settings each backend needs."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size * 2,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Take the write lock up front so concurrent read-then-write transactions
            # serialise instead of failing with "database is locked" on upgrade.
            if conn.get_execution_options().get("onestack_readonly"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        # Let SQLAlchemy's "begin" event issue BEGIN itself.
        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        return engine
    kwargs: dict[str, object] = {
        "pool_pre_ping": True,
        "pool_recycle": 3600,
        "pool_size": pool_size,
        "max_overflow": pool_size * 2,
    }
    if backend in ("mysql", "mariadb"):
        kwargs["isolation_level"] = "READ COMMITTED"
        if "charset" not in parsed.query:
            url = str(parsed.update_query_dict({"charset": "utf8mb4"}).render_as_string(
                hide_password=False))
    return create_engine(url, **kwargs)


class Database:
    """Owns the engine and hands out transactional sessions."""

    def __init__(self, url: str, pool_size: int = 10, inline: bool | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.backend = self.engine.dialect.name
        #: ``run`` calls in place instead of in a thread (default: on SQLite).
        self.inline = self.backend == "sqlite" if inline is None else inline
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._ro_engine = self.engine.execution_options(onestack_readonly=True)
        self._read_sessions = sessionmaker(self._ro_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: commit on success, roll back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def reader(self) -> Iterator[Session]:
        """A session for reads (one transaction for a consistent view; no write lock)."""
        with self._read_sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def connect(self, readonly: bool = False) -> Iterator[Connection]:
        """A Core connection in one transaction (commit on success, roll back on error).

        For hot paths written with Core statements: no ORM session, identity map or unit
        of work, several times cheaper per statement than ``transaction()``/``reader()``.
        ``readonly`` takes no write lock on SQLite (like ``reader()``).
        """
        with (self._ro_engine if readonly else self.engine).begin() as conn:
            yield conn

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` — short database work: a transaction or two, nothing else blocking —
        from async code.

        On SQLite (WAL) it runs in place on the event loop: such a transaction takes less
        time than handing it to a worker thread and back, readers never wait, and a writer
        waits only while another holds the write lock for its (short) transaction. On
        server databases every statement is a network round trip: ``fn`` runs in the
        loop's default executor.
        """
        if self.inline:
            return fn(*args, **kwargs)
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    def dispose(self) -> None:
        self.engine.dispose()
