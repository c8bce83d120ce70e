"""The SQLite in-place writer of ``create_ports_nowait``: its own connection, commits and background
WAL checkpoints."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.network.base import ManagerBase
from onestack.network.common import LOG, _Retry
from onestack.network.store import _NeedsSession, _PortWrites

#: Largest request ``create_ports_nowait`` runs in place (bigger ones go to a thread).
_NOWAIT_MAX_PORTS = 8
#: ``create_ports_nowait``'s commits between two background checkpoints of the SQLite WAL
#: (a port writes about 10 pages: about SQLite's own 1000-page interval).
_CHECKPOINT_EVERY = 100
#: WAL pages above which ``create_ports_nowait`` restarts the WAL itself (writes that
#: never pause keep a background checkpoint from ever emptying it).
_WAL_RESTART_PAGES = 4000


class WriterMixin(ManagerBase):
    """The SQLite in-place writer of ``create_ports_nowait``: its own connection, commits and
    background WAL checkpoints."""

    def _nowait_connection(self) -> Connection:
        """The connection of ``create_ports_nowait``: checked out once and kept, with a
        zero busy timeout and no automatic WAL checkpoint (re-applied whenever the pool
        gave it a new DBAPI connection; see ``_nowait_committed``)."""
        conn = self._nowait_conn
        if conn is None or conn.closed:
            conn = self._nowait_conn = self.db.engine.connect()
        raw = conn.connection.driver_connection
        if raw is not self._nowait_raw:
            assert raw is not None
            raw.execute("PRAGMA busy_timeout=0")
            raw.execute("PRAGMA wal_autocheckpoint=0")
            self._nowait_raw = raw
        return conn

    def _nowait_committed(self, raw: sqlite3.Connection) -> None:
        """Keep the WAL short without checkpointing on the event loop.

        SQLite checkpoints in the connection whose commit takes the WAL past 1000 pages:
        copying them and two fsyncs, 5-50 ms on the event loop every hundred ports. This
        connection leaves that to a thread instead (``_checkpoint``, PASSIVE: it never
        stops writers) every ``_CHECKPOINT_EVERY`` commits. Such a checkpoint cannot empty
        the WAL while writes continue, so when it found more than ``_WAL_RESTART_PAGES``
        pages, this connection restarts the WAL itself after its commit (RESTART: only the
        pages written since that checkpoint are left to copy; with the zero busy timeout it
        gives up at once when another writer, reader or checkpoint is in the way, and the
        next round tries again)."""
        self._nowait_commits += 1
        if self._nowait_commits % _CHECKPOINT_EVERY:
            return
        if self._wal_pages > _WAL_RESTART_PAGES and not self._checkpoint_lock.locked():
            try:
                busy, _pages, _done = raw.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error:  # e.g. the disk: the next round (or another writer) retries
                LOG.warning("WAL checkpoint failed", exc_info=True)
                return
            if not busy:
                self._wal_pages = 0
            return
        if self._checkpoint_lock.acquire(blocking=False):
            try:
                threading.Thread(target=self._checkpoint, name="wal-checkpoint",
                                 daemon=True).start()
            except RuntimeError:  # no thread to be had: the next round tries again
                self._checkpoint_lock.release()
                LOG.warning("could not start a WAL checkpoint thread", exc_info=True)

    def _checkpoint(self) -> None:
        """A PASSIVE checkpoint of the WAL on a pooled connection (in its own thread,
        holding ``_checkpoint_lock``); notes how many pages the WAL holds."""
        try:
            raw = self.db.engine.raw_connection()
            try:
                driver = raw.driver_connection
                assert driver is not None
                _busy, pages, _done = driver.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._wal_pages = int(pages)
            finally:
                raw.close()
        except Exception:  # noqa: BLE001 - the next round (or any other writer) retries
            LOG.warning("background WAL checkpoint failed", exc_info=True)
        finally:
            self._checkpoint_lock.release()

    def _create_ports_in(self, s: Session | None, ctx: RequestContext,
                         bodies: list[dict[str, Any]], conn: Connection | None = None,
                         raw: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
        w = _PortWrites(s, conn, raw, self._driver_statements)
        try:
            rows = [self._create_port(s, ctx, b, w=w) for b in bodies]
            w.flush()
        finally:
            w.close()
        # Everything the views show was just written: no need to read it back.
        return [w.view(r, ctx.is_admin) for r in rows]

    def create_ports_nowait(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                            ) -> list[dict[str, Any]] | None:
        """``create_ports`` for a caller that must not block (the API's event loop), or
        None when that cannot be guaranteed: the caller then runs ``create_ports`` in a
        worker thread.

        A port create is a sub-millisecond SQLite transaction, cheaper than the hop to a
        worker thread and back, so the API runs it in place when nothing can make it wait:
        SQLite (no network round trips), a data-plane driver whose port calls never block
        (``nonblocking_updates``: noop, linux), a small request,
        and the database write lock free *now*. It uses a connection of its own whose busy
        timeout is 0, so its ``BEGIN IMMEDIATE`` fails at once (None) while another writer
        holds the lock; in WAL mode nothing after that can wait. A write race (unique key
        clash) also gives None and the worker-thread path retries it.

        The transaction runs on the sqlite3 connection itself (``_DriverStatement``); a
        request that needs the ORM (a project's first default security group, an error
        that needs a lookup) starts again through SQLAlchemy on the same connection.
        """
        if (self.db.backend != "sqlite" or not self.driver.nonblocking_updates
                or len(bodies) > _NOWAIT_MAX_PORTS):
            return None
        if not self._nowait_lock.acquire(blocking=False):
            return None  # (one caller at a time: the connection is not shared)
        try:
            conn = self._nowait_connection()
            try:
                docs = self._nowait_attempt(conn, ctx, bodies, driver=True)
            except _NeedsSession:
                docs = self._nowait_attempt(conn, ctx, bodies, driver=False)
        finally:
            self._nowait_lock.release()
        for d in docs or []:
            self.driver.port_updated(d)
        return docs

    def _nowait_attempt(self, conn: Connection, ctx: RequestContext,
                        bodies: list[dict[str, Any]], driver: bool
                        ) -> list[dict[str, Any]] | None:
        """One transaction of ``create_ports_nowait``, on the sqlite3 connection (``driver``)
        or through SQLAlchemy; None when the write lock is taken or a write race was lost.
        Whatever happens, the transaction is over (and the lock free) on return."""
        raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        try:
            if driver:
                raw.execute("BEGIN IMMEDIATE")  # busy timeout 0: fails at once if taken
            else:
                conn.begin()  # the engine's BEGIN IMMEDIATE
        except (OperationalError, sqlite3.OperationalError):
            return None
        try:
            docs = self._create_ports_in(None, ctx, bodies, conn, raw if driver else None)
            if driver:
                raw.execute("COMMIT")
            else:
                conn.commit()
        except (IntegrityError, sqlite3.IntegrityError, _Retry):
            self._default_sgs.clear()
            return None
        except (OperationalError, sqlite3.OperationalError) as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                return None
            raise
        finally:
            if conn.in_transaction():  # never leave the write lock held
                conn.rollback()
            if raw.in_transaction:
                raw.execute("ROLLBACK")
        self._nowait_committed(raw)  # (after the commit: nothing here may undo it)
        return docs
