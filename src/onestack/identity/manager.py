"""Identity business logic: the only code that changes identity tables.

Covers the resource backend (domains, projects, tags), identity backend (users, groups,
passwords), assignments (roles, implied roles, grants, effective roles), catalog (regions,
services, endpoints), application credentials, credentials and revocation events. Token
issuance and validation live in ``identity.auth`` and read through the cache kept here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onestack.common.errors import Conflict
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.identity import CacheGeneration
from onestack.db.identity import RevocationEvent as RevocationRow
from onestack.identity.cache import IdentityCache, RevocationList
from onestack.identity.catalog_store import CatalogStore
from onestack.identity.coherence import ChangeHint
from onestack.identity.credential_store import CredentialStore
from onestack.identity.resource_store import ResourceStore
from onestack.identity.role_store import RoleStore
from onestack.identity.store import (  # noqa: F401 - records re-exported for the API
    SYSTEM_ALL,
    RoleRef,
    ScopeInfo,
    UserInfo,
    _event,
    _short,
)
from onestack.identity.tokens import FernetCodec
from onestack.identity.user_store import UserStore


class IdentityManager(ResourceStore, UserStore, RoleStore, CatalogStore, CredentialStore):
    """Identity state and its rules. Methods are synchronous (run them in a thread). The
    transactions, caches and revocation events are here; the backends it is made of
    (Keystone's resource, identity, assignment, catalog and credential) each in a store
    module."""

    def __init__(self, db: Database, settings: Settings, credential_codec: FernetCodec) -> None:
        self.db = db
        self.settings = settings
        self.cache = IdentityCache()
        self.revocations = RevocationList()
        self.credential_codec = credential_codec
        self.db_generation = -1
        self._refresh_lock = threading.Lock()
        #: Shared change marker of the processes serving identity on this host (optional).
        self.hint: ChangeHint | None = None

    def announce(self) -> None:
        """Tell this host's other identity processes that identity data changed."""
        if self.hint is not None:
            self.hint.bump()

    def poll(self) -> None:
        """Refresh from the database now if another process on this host changed something.

        A cheap check (a read of shared memory) made before answering from the caches.
        """
        if self.hint is not None and self.hint.changed():
            self.refresh()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction that bumps the cache generation and drops local caches."""
        try:
            with self.db.transaction() as s:
                yield s
                s.execute(
                    update(CacheGeneration)
                    .where(CacheGeneration.id == 1)
                    .values(generation=CacheGeneration.generation + 1)
                )
        except IntegrityError as exc:
            self.cache.invalidate()
            raise Conflict(f"Conflict occurred attempting to store data - {_short(exc)}") from exc
        self.cache.invalidate()
        self.announce()

    def refresh(self) -> bool:
        """Pick up changes made by other processes: generation and new revocation events.

        Returns True when caches were dropped. Called periodically, off the hot path.
        """
        with self._refresh_lock, self.db.reader() as s:
            gen = s.scalar(select(CacheGeneration.generation).where(CacheGeneration.id == 1))
            rows = s.scalars(
                select(RevocationRow)
                .where(RevocationRow.id > self.revocations.last_seen_id)
                .order_by(RevocationRow.id)
            ).all()
        for row in rows:
            self.revocations.add(_event(row))
            self.revocations.last_seen_id = max(self.revocations.last_seen_id, row.id)
        if gen is not None and gen != self.db_generation:
            self.db_generation = gen
            self.cache.invalidate()
            return True
        return False

    def ensure_generation_row(self) -> None:
        with self.db.transaction() as s:
            if s.get(CacheGeneration, 1) is None:
                s.add(CacheGeneration(id=1, generation=0))
    # ------------------------------------------------------------------ revocation
    def revoke(self, **fields: Any) -> None:
        """Record a revocation event (tokens issued up to now that match ``fields``)."""
        now = time.time()
        row = RevocationRow(issued_before=now, revoked_at=now, **fields)
        with self.db.transaction() as s:
            s.add(row)
        self.revocations.add(_event(row))
        self.announce()

    def prune_revocations(self, older_than: float) -> int:
        with self.db.transaction() as s:
            res = s.execute(delete(RevocationRow).where(RevocationRow.revoked_at < older_than))
            return int(res.rowcount or 0)

    def list_revocations(self, since: float | None = None) -> list[RevocationRow]:
        with self.db.reader() as s:
            q = select(RevocationRow).order_by(RevocationRow.id)
            if since is not None:
                q = q.where(RevocationRow.revoked_at >= since)
            return list(s.scalars(q))
