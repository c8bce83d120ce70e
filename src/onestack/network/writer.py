"""``create_ports_nowait``: small port creates run in place on the API's event loop, on
SQLite's in-place write path (``db/sqlite_writer.py``: its own connection that never waits,
statements run on the sqlite3 connection, background WAL checkpoints)."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.db.sqlite_writer import InPlaceWriter
from onestack.network.base import ManagerBase
from onestack.network.common import _Retry
from onestack.network.store import _NeedsSession, _PortWrites

#: Largest request ``create_ports_nowait`` runs in place (bigger ones go to a thread).
_NOWAIT_MAX_PORTS = 8


class WriterMixin(ManagerBase):
    """``create_ports_nowait`` over the manager's ``InPlaceWriter`` (``_inplace``)."""

    _inplace: InPlaceWriter

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
        writer = self._inplace
        if not writer.lock.acquire(blocking=False):
            return None  # (one caller at a time: the connection is not shared)
        try:
            conn = writer.connection()
            try:
                docs = self._nowait_attempt(conn, ctx, bodies, driver=True)
            except _NeedsSession:
                docs = self._nowait_attempt(conn, ctx, bodies, driver=False)
        finally:
            writer.lock.release()
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
        if not self._inplace.begin(conn, raw if driver else None):
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
            self._inplace.finish(conn, raw)  # never leave the write lock held
        self._inplace.committed(raw)  # (after the commit: nothing here may undo it)
        return docs
