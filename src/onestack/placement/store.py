"""The plumbing every placement store shares: retried write transactions, provider rows and
generation bumps, row locks, and the checks of resource class and trait names."""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from onestack.common.timeutils import utcnow
from onestack.db.engine import Database
from onestack.db.placement import (
    CustomResourceClass,
    CustomTrait,
    ProviderAggregate,
    ProviderTrait,
    ResourceProvider,
)
from onestack.placement import errors
from onestack.placement.models import (  # noqa: F401
    _STANDARD_RC,
    ANY,
    CUSTOM_RE,
    INCOMPLETE_ID,
    INT_MAX,
    INVENTORY_DEFAULTS,
    INVENTORY_FIELDS,
    LOG,
    SHARING_TRAIT,
    STANDARD_RESOURCE_CLASSES,
    STANDARD_TRAITS,
    AllocationRequest,
    Candidates,
    ConsumerAllocations,
    ConsumerRequest,
    ProviderInfo,
    ProviderQuery,
    ProviderSummary,
    RequestGroup,
    T,
    _Any,
    _check_capacity,
    _check_units,
    _Fallback,
    _gen_conflict,
    _no_inventory,
    _Prov,
    _retryable,
    _Snapshot,
    capacity,
    expected_mismatch,
    traits_ok,
)


class PlacementStore:
    """Transactions, rows and name checks of the placement stores (``PlacementManager``
    sets ``db`` and ``max_candidates``)."""

    db: Database
    max_candidates: int
    #: Retries of a write transaction after a deadlock or lock timeout.
    RETRIES = 8

    # ------------------------------------------------------------------ plumbing
    def _write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction, retrying on deadlocks/lock timeouts."""
        def attempt() -> T:
            with self.db.transaction() as s:
                return fn(s)
        return self._retrying(attempt)

    def _write_unique(self, fn: Callable[[Session], T], duplicate: str) -> T:
        """``_write(fn)``; a unique-constraint race (another writer took the name first)
        answers 409 ``placement.duplicate_name`` saying ``duplicate``."""
        try:
            return self._write(fn)
        except IntegrityError as exc:
            raise errors.conflict(duplicate, errors.DUPLICATE_NAME) from exc

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """``attempt()`` (one transaction), run again after a deadlock or lock timeout, up to
        ``RETRIES`` times with a growing pause; an integrity error is never retried."""
        for n in range(self.RETRIES):
            try:
                return attempt()
            except IntegrityError:
                raise
            except DBAPIError as exc:
                if n + 1 < self.RETRIES and _retryable(exc):
                    time.sleep(0.005 * (2 ** n))
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _lock(s: Session, ids: Iterable[int]) -> dict[int, ResourceProvider]:
        """Lock provider rows (ascending id order, so concurrent lockers cannot deadlock)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = s.execute(select(ResourceProvider).where(ResourceProvider.id.in_(wanted))
                         .order_by(ResourceProvider.id).with_for_update()).scalars().all()
        return {r.id: r for r in rows}

    @staticmethod
    def _row(s: Session, rp_uuid: str, lock: bool = False) -> ResourceProvider:
        stmt = select(ResourceProvider).where(ResourceProvider.uuid == rp_uuid)
        if lock:
            stmt = stmt.with_for_update()
        row = s.execute(stmt).scalar_one_or_none()
        if row is None:
            raise errors.not_found(f"No resource provider with uuid {rp_uuid} found",
                                   errors.PROVIDER_NOT_FOUND)
        return row

    @staticmethod
    def _bump(s: Session, row: ResourceProvider, expected: Any = ANY) -> int:
        """Compare-and-swap the provider generation; returns the new generation."""
        seen = row.generation
        if expected is not ANY and expected != seen:
            raise errors.concurrent_update(
                f"resource provider generation conflict: the provider {row.uuid} is at "
                f"generation {seen}, not {expected}. Please update the generation and retry.")
        res = s.execute(update(ResourceProvider)
                        .where(ResourceProvider.id == row.id,
                               ResourceProvider.generation == seen)
                        .values(generation=seen + 1, updated_at=utcnow())
                        .execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise errors.concurrent_update(
                f"resource provider {row.uuid} was changed concurrently; please retry.")
        s.expire(row)
        return seen + 1

    @staticmethod
    def _info(s: Session, rows: list[ResourceProvider]) -> list[ProviderInfo]:
        ids = {r.parent_provider_id for r in rows if r.parent_provider_id}
        ids |= {r.root_provider_id for r in rows if r.root_provider_id}
        names: dict[int, str] = {}
        if ids:
            names = {r[0]: r[1] for r in s.execute(select(
                ResourceProvider.id, ResourceProvider.uuid).where(ResourceProvider.id.in_(ids)))}
        out = []
        for r in rows:
            out.append(ProviderInfo(
                uuid=r.uuid, name=r.name, generation=r.generation,
                parent_provider_uuid=names.get(r.parent_provider_id)
                if r.parent_provider_id else None,
                root_provider_uuid=names.get(r.root_provider_id or r.id, r.uuid),
                created_at=r.created_at, updated_at=r.updated_at))
        return out

    # ------------------------------------------------------------------ traits, aggregates
    def _members(self, uuid: str, model: type[ProviderTrait | ProviderAggregate],
                 field: str) -> tuple[int, list[str]]:
        """``(generation, sorted values of model.field)`` of the provider ``uuid``: its
        traits or its aggregates."""
        with self.db.reader() as s:
            row = self._row(s, uuid)
            return row.generation, sorted(s.execute(select(getattr(model, field)).where(
                model.resource_provider_id == row.id)).scalars())

    def _replace_members(self, uuid: str, model: type[ProviderTrait | ProviderAggregate],
                         field: str, wanted: list[str], generation: Any,
                         check: Callable[[Session, list[str]], None] | None = None,
                         ) -> tuple[int, list[str]]:
        """Make ``wanted`` the provider's values of ``model.field`` (after ``check``, then a
        409 when the provider is not at ``generation``); ``(new generation, wanted)``."""
        def work(s: Session) -> tuple[int, list[str]]:
            row = self._row(s, uuid, lock=True)
            if check is not None:
                check(s, wanted)
            if expected_mismatch(generation, row.generation):
                raise _gen_conflict(row, generation)
            s.execute(delete(model).where(model.resource_provider_id == row.id))
            for value in wanted:
                s.add(model(resource_provider_id=row.id, **{field: value}))
            s.flush()
            return self._bump(s, row), wanted

        return self._write(work)

    # ------------------------------------------------------------------ name checks
    def resource_class_exists(self, s: Session, name: str) -> bool:
        if name in _STANDARD_RC:
            return True
        return s.get(CustomResourceClass, name) is not None

    @staticmethod
    def _unknown(s: Session, custom_names: InstrumentedAttribute[str], names: Iterable[str],
                 standard: Container[str]) -> list[str]:
        """The ``names`` (resource classes or traits) neither ``standard`` nor stored in
        ``custom_names``, sorted."""
        custom = {n for n in names if n not in standard}
        if not custom:
            return []
        known = set(s.execute(select(custom_names).where(custom_names.in_(custom))).scalars())
        return sorted(custom - known)

    def _check_classes(self, s: Session, names: Iterable[str], what: str) -> None:
        missing = self._unknown(s, CustomResourceClass.name, names, _STANDARD_RC)
        if missing:
            raise errors.bad_request(f"Unknown resource class in {what}: "
                                     f"{', '.join(missing)}")

    def _check_traits(self, s: Session, names: Iterable[str]) -> None:
        missing = self._unknown(s, CustomTrait.name, names, STANDARD_TRAITS)
        if missing:
            raise errors.bad_request(f"No such trait(s): {', '.join(missing)}")
