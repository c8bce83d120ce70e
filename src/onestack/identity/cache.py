"""In-memory views of identity data for the token hot path, and revocation events.

Token validation and rescoping must not read the database. The cache keeps what they need —
users, projects, domains, effective roles per (user, scope), the catalog — and is dropped
whenever identity data changes: immediately in the process that made the change, and within
``cache_refresh_interval`` seconds in every other process, which polls a generation counter.
Revocation events are held in indexes keyed by the field they match on.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from onestack.identity.tokens import TokenData

T = TypeVar("T")

#: When set (on the event loop), a cache miss raises ``CacheMiss`` instead of loading from the
#: database, so the caller can retry the whole operation in a worker thread.
NO_LOAD: contextvars.ContextVar[bool] = contextvars.ContextVar("identity_no_load", default=False)


class CacheMiss(Exception):
    """Raised by ``IdentityCache.get`` under ``NO_LOAD`` when the value is not cached."""


@dataclass(frozen=True)
class RevocationEvent:
    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    audit_id: str | None = None
    audit_chain_id: str | None = None
    app_cred_id: str | None = None
    issued_before: float = 0.0
    revoked_at: float = 0.0

    def matches(self, token: TokenData, user_domain_id: str | None = None) -> bool:
        if token.issued_at > self.issued_before:
            return False
        if self.user_id is not None and self.user_id != token.user_id:
            return False
        if self.project_id is not None and self.project_id != token.project_id:
            return False
        if self.domain_id is not None and self.domain_id not in (
            token.domain_id, user_domain_id,
        ):
            return False
        if self.audit_id is not None and (
            not token.audit_ids or self.audit_id != token.audit_ids[0]
        ):
            return False
        if self.audit_chain_id is not None and (
            not token.audit_ids or self.audit_chain_id != token.audit_ids[-1]
        ):
            return False
        return not (self.app_cred_id is not None and self.app_cred_id != token.app_cred_id)


class RevocationList:
    """Revocation events indexed for O(1)-ish matching."""

    _KEYS = ("audit_id", "audit_chain_id", "user_id", "project_id", "domain_id", "app_cred_id")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[tuple[str, str], list[RevocationEvent]] = {}
        self.last_seen_id = 0
        #: Bumped on every change, so memoised validations know to re-check.
        self.version = 0

    def add(self, event: RevocationEvent) -> None:
        for key in self._KEYS:
            value = getattr(event, key)
            if value is not None:
                with self._lock:
                    self._index.setdefault((key, value), []).append(event)
                    self.version += 1
                return

    def clear(self) -> None:
        with self._lock:
            self._index.clear()
            self.last_seen_id = 0
            self.version += 1

    def is_revoked(self, token: TokenData, user_domain_id: str | None = None) -> bool:
        candidates: list[tuple[str, str | None]] = [
            ("user_id", token.user_id),
            ("project_id", token.project_id),
            ("domain_id", token.domain_id),
            ("domain_id", user_domain_id),
            ("app_cred_id", token.app_cred_id),
        ]
        if token.audit_ids:
            candidates.append(("audit_id", token.audit_ids[0]))
            candidates.append(("audit_chain_id", token.audit_ids[-1]))
        index = self._index
        for key, value in candidates:
            if value is None:
                continue
            for event in index.get((key, value), ()):
                if event.matches(token, user_domain_id):
                    return True
        return False


class IdentityCache:
    """Memoised identity lookups, dropped wholesale when identity data changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[Any, ...], Any] = {}
        self.generation = 0

    def get(self, key: tuple[Any, ...], loader: Callable[[], T]) -> T:
        try:
            return self._data[key]  # type: ignore[no-any-return]
        except KeyError:
            if NO_LOAD.get():
                raise CacheMiss(key) from None
        generation = self.generation
        value = loader()
        with self._lock:
            if generation == self.generation:
                self._data[key] = value
        return value

    def peek(self, key: tuple[Any, ...]) -> Any:
        return self._data.get(key)

    def invalidate(self, generation: int | None = None) -> None:
        with self._lock:
            self._data = {}
            self.generation = generation if generation is not None else self.generation + 1
