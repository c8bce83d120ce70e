"""SQLite's in-place write path: Core statements compiled once and run on the sqlite3
connection itself (``DriverStatement``), and a writer connection of its own that never waits
and leaves WAL checkpoints to a background thread (``InPlaceWriter``).

The network service creates small batches of ports this way on the API's event loop
(``network/writer.py``): a sub-millisecond transaction there is cheaper than the hop to a
worker thread, as long as nothing can make it wait. Everything specific to SQLite about
that lives here; the business rules stay in the service.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import namedtuple
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

LOG = logging.getLogger(__name__)

#: Commits between two background checkpoints of the WAL (a port writes about 10 pages:
#: about SQLite's own 1000-page interval).
CHECKPOINT_EVERY = 100
#: WAL pages above which the writer restarts the WAL itself (writes that never pause keep a
#: background checkpoint from ever emptying it).
WAL_RESTART_PAGES = 4000


class DriverStatement:
    """A Core statement compiled once for SQLite and executed on the sqlite3 connection
    itself: the same SQL, and the same parameter and result conversions (its column types'
    bind and result processors, e.g. JSON, booleans, timestamps), as when SQLAlchemy runs it,
    without SQLAlchemy's per-execution work (context, events, result objects). An insert
    takes every column of its table."""

    __slots__ = ("sql", "names", "defaults", "binds", "results", "row")

    def __init__(self, stmt: Any, dialect: Any) -> None:
        keys = list(stmt.table.c.keys()) if stmt.is_insert else None
        compiled = stmt.compile(dialect=dialect, column_keys=keys)
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        params = compiled.binds
        self.defaults = {n: params[n].value for n in self.names}
        self.binds = tuple((i, proc) for i, n in enumerate(self.names)
                           if (proc := params[n].type.dialect_impl(dialect)
                               .bind_processor(dialect)) is not None)
        columns = list(stmt.selected_columns) if stmt.is_select else []
        self.results = tuple((i, proc) for i, c in enumerate(columns)
                             if (proc := c.type.dialect_impl(dialect)
                                 .result_processor(dialect, None)) is not None)
        self.row: Any = namedtuple("Row", [c.key for c in columns], rename=True  # type: ignore[misc]
                                   ) if columns else None

    def args(self, params: dict[str, Any]) -> list[Any]:
        out = [params[n] if n in params else self.defaults[n] for n in self.names]
        for i, proc in self.binds:
            out[i] = proc(out[i])
        return out

    def rows(self, raw: sqlite3.Connection, params: dict[str, Any]) -> list[Any]:
        found = raw.execute(self.sql, self.args(params)).fetchall()
        if self.results:
            for k, values in enumerate(found):
                values = list(values)
                for i, proc in self.results:
                    values[i] = proc(values[i])
                found[k] = values
        return [self.row._make(r) for r in found]

    def insert(self, raw: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        raw.executemany(self.sql, [self.args(r) for r in rows])


class InPlaceWriter:
    """A connection of its own on an SQLite engine (WAL mode) for writes that must never
    wait: zero busy timeout, so ``begin`` fails at once while another writer holds the lock,
    and no automatic WAL checkpoint on its commits (see ``committed``). One caller at a time
    holds ``lock`` around a transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.conn: Connection | None = None
        self._raw: Any = None
        #: Commits so far, pages in the WAL after the last background checkpoint, and a
        #: lock held while one runs.
        self.commits = 0
        self.wal_pages = 0
        self.checkpoint_lock = threading.Lock()

    def connection(self) -> Connection:
        """The writer's connection: checked out once and kept, with a zero busy timeout and
        no automatic WAL checkpoint (re-applied whenever the pool gave it a new DBAPI
        connection)."""
        conn = self.conn
        if conn is None or conn.closed:
            conn = self.conn = self.engine.connect()
        raw = conn.connection.driver_connection
        if raw is not self._raw:
            assert raw is not None
            raw.execute("PRAGMA busy_timeout=0")
            raw.execute("PRAGMA wal_autocheckpoint=0")
            self._raw = raw
        return conn

    @staticmethod
    def begin(conn: Connection, raw: sqlite3.Connection | None) -> bool:
        """Start the write transaction on the sqlite3 connection ``raw`` (``BEGIN
        IMMEDIATE``) or, when None, through SQLAlchemy (the engine's ``BEGIN IMMEDIATE``);
        False when the write lock is taken."""
        try:
            if raw is not None:
                raw.execute("BEGIN IMMEDIATE")  # busy timeout 0: fails at once if taken
            else:
                conn.begin()
        except (OperationalError, sqlite3.OperationalError):
            return False
        return True

    @staticmethod
    def finish(conn: Connection, raw: sqlite3.Connection) -> None:
        """Whatever happened, end the transaction (never leave the write lock held)."""
        if conn.in_transaction():
            conn.rollback()
        if raw.in_transaction:
            raw.execute("ROLLBACK")

    def committed(self, raw: sqlite3.Connection) -> None:
        """Keep the WAL short without checkpointing in the caller.

        SQLite checkpoints in the connection whose commit takes the WAL past 1000 pages:
        copying them and two fsyncs, 5-50 ms on the event loop every hundred commits. This
        connection leaves that to a thread instead (``_checkpoint``, PASSIVE: it never
        stops writers) every ``CHECKPOINT_EVERY`` commits. Such a checkpoint cannot empty
        the WAL while writes continue, so when it found more than ``WAL_RESTART_PAGES``
        pages, this connection restarts the WAL itself after its commit (RESTART: only the
        pages written since that checkpoint are left to copy; with the zero busy timeout it
        gives up at once when another writer, reader or checkpoint is in the way, and the
        next round tries again)."""
        self.commits += 1
        if self.commits % CHECKPOINT_EVERY:
            return
        if self.wal_pages > WAL_RESTART_PAGES and not self.checkpoint_lock.locked():
            try:
                busy, _pages, _done = raw.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error:  # e.g. the disk: the next round (or another writer) retries
                LOG.warning("WAL checkpoint failed", exc_info=True)
                return
            if not busy:
                self.wal_pages = 0
            return
        if self.checkpoint_lock.acquire(blocking=False):
            try:
                threading.Thread(target=self._checkpoint, name="wal-checkpoint",
                                 daemon=True).start()
            except RuntimeError:  # no thread to be had: the next round tries again
                self.checkpoint_lock.release()
                LOG.warning("could not start a WAL checkpoint thread", exc_info=True)

    def _checkpoint(self) -> None:
        """A PASSIVE checkpoint of the WAL on a pooled connection (in its own thread,
        holding ``checkpoint_lock``); notes how many pages the WAL holds."""
        try:
            raw = self.engine.raw_connection()
            try:
                driver = raw.driver_connection
                assert driver is not None
                _busy, pages, _done = driver.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.wal_pages = int(pages)
            finally:
                raw.close()
        except Exception:  # noqa: BLE001 - the next round (or any other writer) retries
            LOG.warning("background WAL checkpoint failed", exc_info=True)
        finally:
            self.checkpoint_lock.release()
