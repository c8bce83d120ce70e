"""Placement business logic: the only place placement state changes.

The compute scheduler calls this class in-process; the HTTP API (``placement.api``) is a thin
layer over it. Every method is blocking (run it in a thread from async code).

Concurrency contract
--------------------
Claims never oversubscribe. Every write that depends on a provider's capacity or generation
first locks the provider rows it touches (``SELECT … FOR UPDATE`` in ascending id order on
MariaDB/PostgreSQL; SQLite transactions already take the database write lock with
``BEGIN IMMEDIATE``), then re-reads inventory and usage inside the same transaction, checks
``used + requested <= (total - reserved) * allocation_ratio`` plus ``min_unit``/``max_unit``/
``step_size``, writes, and bumps the provider generation with a compare-and-swap
``UPDATE … WHERE generation = :seen``. Deadlocks and lock timeouts are retried a few times.

Generations: pass ``generation=`` (provider) or ``consumer_generation=`` (consumer) to get
Placement's optimistic concurrency (a stale value raises 409 ``placement.concurrent_update``);
pass ``ANY`` (the default of the in-process helpers) to skip the comparison.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid as uuidlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import os_traits
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from onestack.common.errors import APIError
from onestack.common.timeutils import utcnow
from onestack.db.engine import Database
from onestack.db.placement import (
    Allocation,
    Consumer,
    CustomResourceClass,
    CustomTrait,
    Inventory,
    ProviderAggregate,
    ProviderTrait,
    ResourceProvider,
)
from onestack.placement import errors

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: Standard resource classes (those every Placement knows; custom ones start with CUSTOM_).
STANDARD_RESOURCE_CLASSES: tuple[str, ...] = (
    "VCPU", "MEMORY_MB", "DISK_GB", "PCI_DEVICE", "SRIOV_NET_VF", "NUMA_SOCKET", "NUMA_CORE",
    "NUMA_THREAD", "NUMA_MEMORY_MB", "IPV4_ADDRESS", "VGPU", "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC", "NET_BW_IGR_KILOBIT_PER_SEC", "PCPU",
    "MEM_ENCRYPTION_CONTEXT", "FPGA", "PGPU", "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC", "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
)
_STANDARD_RC = frozenset(STANDARD_RESOURCE_CLASSES)
#: Standard traits, from the ``os-traits`` package.
STANDARD_TRAITS: frozenset[str] = frozenset(os_traits.get_traits())
SHARING_TRAIT = "MISC_SHARES_VIA_AGGREGATE"
CUSTOM_RE = re.compile(r"^CUSTOM_[A-Z0-9_]+$")
INT_MAX = 2147483647
#: Project/user recorded for consumers created without them (microversions < 1.8).
INCOMPLETE_ID = "00000000-0000-0000-0000-000000000000"
INVENTORY_FIELDS = ("total", "reserved", "min_unit", "max_unit", "step_size",
                    "allocation_ratio")
INVENTORY_DEFAULTS: dict[str, Any] = {"reserved": 0, "min_unit": 1, "max_unit": INT_MAX,
                                      "step_size": 1, "allocation_ratio": 1.0}


class _Any:
    """Sentinel: do not compare generations."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


def is_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(str(value))
    except ValueError:
        return False
    return True


def _no_inventory(rc: str, rp_uuid: str) -> APIError:
    return errors.conflict(f"Unable to allocate inventory: Inventory for '{rc}' on "
                           f"resource provider '{rp_uuid}' invalid.")


def _check_units(rp_uuid: str, rc: str, amount: int, inv: Any) -> None:
    """400 when ``amount`` is outside the inventory's min/max unit or not a step multiple."""
    if amount < inv.min_unit or amount > inv.max_unit:
        raise errors.bad_request(
            f"Unable to allocate inventory: Unable to allocate {amount} {rc} on resource "
            f"provider {rp_uuid}: outside min_unit {inv.min_unit} / max_unit "
            f"{inv.max_unit}.")
    if amount % inv.step_size:
        raise errors.bad_request(
            f"Unable to allocate inventory: {amount} {rc} on resource provider {rp_uuid} "
            f"is not a multiple of step_size {inv.step_size}.")


def _check_capacity(rp_uuid: str, rc: str, amount: int, inv: Any, have: int) -> None:
    """409 when ``have + amount`` exceeds the inventory's capacity."""
    cap = capacity(inv.total, inv.reserved, inv.allocation_ratio)
    if have + amount > cap:
        raise errors.conflict(
            f"Unable to allocate inventory: Unable to create allocation for '{rc}' on "
            f"resource provider '{rp_uuid}'. The requested amount would exceed the capacity "
            f"(used {have} + requested {amount} > capacity {cap}).")


class _Fallback(Exception):
    """The fast claim path does not apply: use the general one."""


def capacity(total: int, reserved: int, ratio: float) -> int:
    """Allocatable amount of one inventory: ``int((total - reserved) * allocation_ratio)``."""
    return int((total - reserved) * ratio)


# --------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class ProviderInfo:
    """A resource provider as callers see it."""

    uuid: str
    name: str
    generation: int
    parent_provider_uuid: str | None
    root_provider_uuid: str
    created_at: Any = None
    updated_at: Any = None


@dataclass
class ConsumerAllocations:
    """What one consumer holds: ``allocations[provider_uuid][resource_class] = amount``."""

    consumer_id: str
    allocations: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Provider generations, by provider uuid.
    generations: dict[str, int] = field(default_factory=dict)
    project_id: str | None = None
    user_id: str | None = None
    consumer_generation: int | None = None
    consumer_type: str | None = None

    @property
    def exists(self) -> bool:
        return self.consumer_generation is not None


@dataclass
class ConsumerRequest:
    """The allocations one consumer should hold after ``set_allocations`` (empty = none)."""

    allocations: Mapping[str, Mapping[str, int]]
    project_id: str = INCOMPLETE_ID
    user_id: str = INCOMPLETE_ID
    consumer_generation: Any = ANY
    consumer_type: str | None = None


@dataclass
class RequestGroup:
    """One request group of an allocation-candidates query.

    ``suffix == ""`` is the unnamed group, whose resources may come from several providers of
    one tree (plus sharing providers); a numbered/named group must be satisfied by a single
    provider. ``required`` is a list of any-of sets (``[{"A"}, {"B", "C"}]`` means A and (B or
    C)); ``member_of`` likewise for aggregates.
    """

    suffix: str = ""
    resources: dict[str, int] = field(default_factory=dict)
    required: list[frozenset[str]] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)
    member_of: list[frozenset[str]] = field(default_factory=list)
    forbidden_aggregates: set[str] = field(default_factory=set)
    in_tree: str | None = None


@dataclass
class ProviderQuery:
    """Filters of ``list_providers`` (all optional, combined with AND)."""

    name: str | None = None
    uuid: str | None = None
    member_of: list[frozenset[str]] = field(default_factory=list)
    forbidden_aggregates: set[str] = field(default_factory=set)
    resources: dict[str, int] = field(default_factory=dict)
    required: list[frozenset[str]] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)
    in_tree: str | None = None


@dataclass
class AllocationRequest:
    """One way to satisfy a candidates query: ``allocations[provider_uuid][rc] = amount``;
    ``mappings[group_suffix]`` lists the providers that satisfy each group."""

    allocations: dict[str, dict[str, int]]
    mappings: dict[str, list[str]]


@dataclass
class ProviderSummary:
    uuid: str
    #: ``{resource_class: (capacity, used)}`` for every inventory of the provider.
    resources: dict[str, tuple[int, int]]
    traits: list[str]
    parent_provider_uuid: str | None
    root_provider_uuid: str


@dataclass
class Candidates:
    allocation_requests: list[AllocationRequest]
    provider_summaries: dict[str, ProviderSummary]


# --------------------------------------------------------------------------- snapshot
@dataclass
class _Prov:
    id: int
    uuid: str
    name: str
    generation: int
    parent_id: int | None
    root_id: int


class _Snapshot:
    """Every provider with inventory, usage, traits and aggregates, read in one transaction
    (for queries: listing with filters and allocation candidates)."""

    def __init__(self, s: Session) -> None:
        self.providers: dict[int, _Prov] = {}
        for row in s.execute(select(
                ResourceProvider.id, ResourceProvider.uuid, ResourceProvider.name,
                ResourceProvider.generation, ResourceProvider.parent_provider_id,
                ResourceProvider.root_provider_id).order_by(ResourceProvider.id)):
            self.providers[row[0]] = _Prov(row[0], row[1], row[2], row[3], row[4],
                                           row[5] or row[0])
        self.by_uuid = {p.uuid: p.id for p in self.providers.values()}
        self.inv: dict[int, dict[str, Inventory]] = defaultdict(dict)
        for inv in s.execute(select(Inventory)).scalars():
            self.inv[inv.resource_provider_id][inv.resource_class] = inv
        self.used: dict[int, dict[str, int]] = defaultdict(dict)
        for rp_id, rc, used in s.execute(
                select(Allocation.resource_provider_id, Allocation.resource_class,
                       func.sum(Allocation.used))
                .group_by(Allocation.resource_provider_id, Allocation.resource_class)):
            self.used[rp_id][rc] = int(used or 0)
        self.traits: dict[int, set[str]] = defaultdict(set)
        for rp_id, trait in s.execute(select(ProviderTrait.resource_provider_id,
                                             ProviderTrait.trait)):
            self.traits[rp_id].add(trait)
        self.aggs: dict[int, set[str]] = defaultdict(set)
        for rp_id, agg in s.execute(select(ProviderAggregate.resource_provider_id,
                                           ProviderAggregate.aggregate_uuid)):
            self.aggs[rp_id].add(agg)
        self.sharing = [pid for pid, traits in self.traits.items()
                        if SHARING_TRAIT in traits and pid in self.providers]
        self.tree: dict[int, list[int]] = defaultdict(list)
        for p in self.providers.values():
            self.tree[p.root_id].append(p.id)

    def free(self, pid: int, rc: str) -> int:
        inv = self.inv.get(pid, {}).get(rc)
        if inv is None:
            return -1
        return (capacity(inv.total, inv.reserved, inv.allocation_ratio)
                - self.used.get(pid, {}).get(rc, 0))

    def fits(self, pid: int, rc: str, amount: int) -> bool:
        inv = self.inv.get(pid, {}).get(rc)
        if inv is None:
            return False
        if amount < inv.min_unit or amount > inv.max_unit or amount % inv.step_size:
            return False
        return self.free(pid, rc) >= amount

    def member_ok(self, pid: int, member_of: list[frozenset[str]],
                  forbidden: set[str]) -> bool:
        if not member_of and not forbidden:
            return True
        p = self.providers[pid]
        aggs = self.aggs.get(pid, set()) | self.aggs.get(p.root_id, set())
        return all(any_of & aggs for any_of in member_of) and not (forbidden & aggs)

    def in_subtree(self, pid: int, ancestor: int) -> bool:
        cur: int | None = pid
        while cur is not None:
            if cur == ancestor:
                return True
            cur = self.providers[cur].parent_id
        return False

    def sharing_for(self, members: list[int]) -> list[int]:
        if not self.sharing:
            return []
        aggs: set[str] = set()
        for m in members:
            aggs |= self.aggs.get(m, set())
        if not aggs:
            return []
        mset = set(members)
        return [pid for pid in self.sharing
                if pid not in mset and self.aggs.get(pid, set()) & aggs]


def traits_ok(have: set[str], required: list[frozenset[str]], forbidden: set[str]) -> bool:
    return all(any_of & have for any_of in required) and not (forbidden & have)


# --------------------------------------------------------------------------- manager
class PlacementManager:
    """Resource providers, inventories, traits, aggregates, consumers and allocations.

    Raises ``onestack.common.errors`` exceptions whose ``kind`` is the Placement error code
    (``placement.concurrent_update`` etc.): ``NotFound`` (404), ``BadRequest`` (400) and
    ``Conflict`` (409).
    """

    #: Retries of a write transaction after a deadlock or lock timeout.
    RETRIES = 8

    def __init__(self, db: Database, max_candidates: int = 10000) -> None:
        self.db = db
        self.max_candidates = max_candidates

    # ------------------------------------------------------------------ plumbing
    def _write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction, retrying on deadlocks/lock timeouts."""
        for attempt in range(self.RETRIES):
            try:
                with self.db.transaction() as s:
                    return fn(s)
            except IntegrityError:
                raise
            except DBAPIError as exc:
                if attempt + 1 < self.RETRIES and _retryable(exc):
                    time.sleep(0.005 * (2 ** attempt))
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

    # ------------------------------------------------------------------ name checks
    def resource_class_exists(self, s: Session, name: str) -> bool:
        if name in _STANDARD_RC:
            return True
        return s.get(CustomResourceClass, name) is not None

    def _check_classes(self, s: Session, names: Iterable[str], what: str) -> None:
        names = set(names)
        custom = {n for n in names if n not in _STANDARD_RC}
        if custom:
            known = set(s.execute(select(CustomResourceClass.name)
                                  .where(CustomResourceClass.name.in_(custom))).scalars())
            missing = sorted(custom - known)
            if missing:
                raise errors.bad_request(f"Unknown resource class in {what}: "
                                         f"{', '.join(missing)}")

    def _check_traits(self, s: Session, names: Iterable[str]) -> None:
        custom = {n for n in names if n not in STANDARD_TRAITS}
        if custom:
            known = set(s.execute(select(CustomTrait.name)
                                  .where(CustomTrait.name.in_(custom))).scalars())
            missing = sorted(custom - known)
            if missing:
                raise errors.bad_request(f"No such trait(s): {', '.join(missing)}")

    # ------------------------------------------------------------------ providers
    def create_provider(self, name: str, uuid: str | None = None,
                        parent_provider_uuid: str | None = None) -> ProviderInfo:
        """Create a provider (409 ``placement.duplicate_name`` when the name or uuid is taken;
        400 when the parent does not exist)."""
        rp_uuid = uuid or str(uuidlib.uuid4())

        def work(s: Session) -> ProviderInfo:
            if s.execute(select(ResourceProvider.id)
                         .where(ResourceProvider.name == name)).first():
                raise errors.conflict(f"Conflicting resource provider name: {name} already "
                                      "exists.", errors.DUPLICATE_NAME)
            if s.execute(select(ResourceProvider.id)
                         .where(ResourceProvider.uuid == rp_uuid)).first():
                raise errors.conflict(f"Conflicting resource provider uuid: {rp_uuid} "
                                      "already exists.", errors.DUPLICATE_NAME)
            parent = None
            if parent_provider_uuid:
                parent = s.execute(select(ResourceProvider).where(
                    ResourceProvider.uuid == parent_provider_uuid)).scalar_one_or_none()
                if parent is None:
                    raise errors.bad_request(
                        f"parent provider UUID cannot be found: {parent_provider_uuid}")
            now = utcnow()
            row = ResourceProvider(uuid=rp_uuid, name=name, generation=0,
                                   parent_provider_id=parent.id if parent else None,
                                   root_provider_id=(parent.root_provider_id or parent.id)
                                   if parent else None,
                                   created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            if parent is None:
                row.root_provider_id = row.id
                s.flush()
            return self._info(s, [row])[0]

        try:
            return self._write(work)
        except IntegrityError as exc:
            raise errors.conflict(f"Conflicting resource provider {name} / {rp_uuid}: "
                                  "already exists.", errors.DUPLICATE_NAME) from exc

    def ensure_provider(self, uuid: str, name: str,
                        parent_provider_uuid: str | None = None) -> ProviderInfo:
        """Return the provider ``uuid``, creating it (idempotent; safe under races)."""
        for _ in range(3):
            try:
                return self.get_provider(uuid)
            except APIError as exc:
                if exc.status != 404:
                    raise
            try:
                return self.create_provider(name, uuid, parent_provider_uuid)
            except APIError as exc:
                if exc.status != 409:
                    raise
        return self.get_provider(uuid)

    def get_provider(self, uuid: str) -> ProviderInfo:
        """The provider ``uuid`` (404 ``placement.resource_provider.not_found``)."""
        with self.db.reader() as s:
            return self._info(s, [self._row(s, uuid)])[0]

    def list_providers(self, query: ProviderQuery | None = None) -> list[ProviderInfo]:
        """Providers matching every filter of ``query``, in creation order."""
        q = query or ProviderQuery()
        with self.db.reader() as s:
            if q.resources:
                self._check_classes(s, q.resources, "resources")
            traits = set(itertools.chain.from_iterable(q.required)) | q.forbidden
            if traits:
                self._check_traits(s, traits)
            simple = not (q.member_of or q.forbidden_aggregates or q.resources or q.required
                          or q.forbidden or q.in_tree)
            stmt = select(ResourceProvider).order_by(ResourceProvider.id)
            if q.name is not None:
                stmt = stmt.where(ResourceProvider.name == q.name)
            if q.uuid is not None:
                stmt = stmt.where(ResourceProvider.uuid == q.uuid)
            rows = list(s.execute(stmt).scalars())
            if simple or not rows:
                return self._info(s, rows)
            snap = _Snapshot(s)
            tree_root = None
            if q.in_tree is not None:
                tid = snap.by_uuid.get(q.in_tree)
                if tid is None:
                    return []
                tree_root = snap.providers[tid].root_id
            keep = []
            for r in rows:
                p = snap.providers.get(r.id)
                if p is None:
                    continue
                if tree_root is not None and p.root_id != tree_root:
                    continue
                if (q.member_of or q.forbidden_aggregates) and not snap.member_ok(
                        p.id, q.member_of, q.forbidden_aggregates):
                    continue
                if not traits_ok(snap.traits.get(p.id, set()), q.required, q.forbidden):
                    continue
                if any(snap.free(p.id, rc) < amount for rc, amount in q.resources.items()):
                    continue
                keep.append(r)
            return self._info(s, keep)

    def update_provider(self, uuid: str, name: str, parent_provider_uuid: Any = ANY,
                        allow_reparent: bool = False) -> ProviderInfo:
        """Rename a provider and/or set its parent.

        ``parent_provider_uuid=ANY`` leaves the parent alone. Without ``allow_reparent``
        (microversion < 1.37) a parent may only be set on a provider that has none.
        """

        def work(s: Session) -> ProviderInfo:
            row = self._row(s, uuid, lock=True)
            if name != row.name and s.execute(select(ResourceProvider.id).where(
                    ResourceProvider.name == name)).first():
                raise errors.conflict(f"Conflicting resource provider name: {name} already "
                                      "exists.", errors.DUPLICATE_NAME)
            row.name = name
            if parent_provider_uuid is not ANY:
                self._reparent(s, row, parent_provider_uuid, allow_reparent)
            row.updated_at = utcnow()
            s.flush()
            return self._info(s, [row])[0]

        try:
            return self._write(work)
        except IntegrityError as exc:
            raise errors.conflict(f"Conflicting resource provider name: {name} already "
                                  "exists.", errors.DUPLICATE_NAME) from exc

    def _reparent(self, s: Session, row: ResourceProvider, parent_uuid: str | None,
                  allow: bool) -> None:
        current = row.parent_provider_id
        if parent_uuid is None:
            if current is None:
                return
            if not allow:
                raise errors.bad_request("un-parenting a provider is not supported "
                                         "(requires microversion 1.37)")
            new_parent = None
        else:
            new_parent = s.execute(select(ResourceProvider).where(
                ResourceProvider.uuid == parent_uuid)).scalar_one_or_none()
            if new_parent is None:
                raise errors.bad_request(f"parent provider UUID cannot be found: {parent_uuid}")
            if current == new_parent.id:
                return
            if current is not None and not allow:
                raise errors.bad_request("re-parenting a provider is not supported "
                                         "(requires microversion 1.37)")
        # Everything under (and including) row moves to the new tree.
        subtree = {row.id}
        frontier = [row.id]
        while frontier:
            kids = list(s.execute(select(ResourceProvider.id).where(
                ResourceProvider.parent_provider_id.in_(frontier))).scalars())
            frontier = [k for k in kids if k not in subtree]
            subtree.update(frontier)
        if new_parent is not None and new_parent.id in subtree:
            raise errors.bad_request("creating loop in the provider tree is not allowed.")
        new_root = (new_parent.root_provider_id or new_parent.id) if new_parent else row.id
        row.parent_provider_id = new_parent.id if new_parent else None
        s.execute(update(ResourceProvider).where(ResourceProvider.id.in_(subtree))
                  .values(root_provider_id=new_root)
                  .execution_options(synchronize_session=False))
        row.root_provider_id = new_root

    def delete_provider(self, uuid: str) -> None:
        """Delete a provider with its inventory, traits and aggregates (409 while it has
        allocations or children)."""

        def work(s: Session) -> None:
            row = self._row(s, uuid, lock=True)
            if s.execute(select(Allocation.id).where(
                    Allocation.resource_provider_id == row.id).limit(1)).first():
                raise errors.conflict(f"Unable to delete resource provider {uuid}: Resource "
                                      "provider has allocations.", errors.PROVIDER_INUSE)
            if s.execute(select(ResourceProvider.id).where(
                    ResourceProvider.parent_provider_id == row.id).limit(1)).first():
                raise errors.conflict(f"Unable to delete parent resource provider {uuid}: "
                                      "It has child resource providers.",
                                      errors.PROVIDER_CANNOT_DELETE_PARENT)
            for model in (Inventory, ProviderTrait, ProviderAggregate):
                s.execute(delete(model).where(model.resource_provider_id == row.id))
            s.delete(row)

        self._write(work)

    # ------------------------------------------------------------------ inventories
    @staticmethod
    def _inv_dict(inv: Inventory) -> dict[str, Any]:
        return {"total": inv.total, "reserved": inv.reserved, "min_unit": inv.min_unit,
                "max_unit": inv.max_unit, "step_size": inv.step_size,
                "allocation_ratio": float(inv.allocation_ratio)}

    def get_inventories(self, uuid: str) -> tuple[int, dict[str, dict[str, Any]]]:
        """``(provider_generation, {resource_class: {total, reserved, ...}})``."""
        with self.db.reader() as s:
            row = self._row(s, uuid)
            invs = s.execute(select(Inventory).where(Inventory.resource_provider_id == row.id)
                             .order_by(Inventory.resource_class)).scalars()
            return row.generation, {i.resource_class: self._inv_dict(i) for i in invs}

    @staticmethod
    def normalize_inventory(rc: str, data: Mapping[str, Any] | int,
                            allow_reserved_eq_total: bool = True) -> dict[str, Any]:
        """Fill defaults and validate one inventory record (400 on nonsense)."""
        rec = dict(INVENTORY_DEFAULTS)
        if isinstance(data, int):
            rec["total"] = data
        else:
            rec.update({k: v for k, v in data.items() if k in INVENTORY_FIELDS})
        if "total" not in rec:
            raise errors.bad_request(f"Inventory for {rc} needs a total.")
        rec["allocation_ratio"] = float(rec["allocation_ratio"])
        if rec["reserved"] > rec["total"] or (
                not allow_reserved_eq_total and rec["reserved"] == rec["total"]
                and rec["total"] > 0):
            raise errors.bad_request(
                f"Unable to update inventory for resource provider: Invalid inventory for "
                f"'{rc}': reserved ({rec['reserved']}) exceeds total ({rec['total']}).")
        if rec["min_unit"] > rec["max_unit"]:
            raise errors.bad_request(
                f"Invalid inventory for '{rc}': min_unit ({rec['min_unit']}) is greater than "
                f"max_unit ({rec['max_unit']}).")
        return rec

    def set_inventories(self, uuid: str, inventories: Mapping[str, Mapping[str, Any] | int],
                        generation: Any = ANY, allow_reserved_eq_total: bool = True,
                        ) -> tuple[int, dict[str, dict[str, Any]]]:
        """Replace the provider's whole inventory set.

        ``inventories`` maps resource classes to records (``{"total": 8, "allocation_ratio":
        16.0, ...}``; a bare int is a total). Classes left out are removed (409
        ``placement.inventory.inuse`` if something is allocated from them). Returns the new
        generation and the stored records.
        """
        recs = {rc: self.normalize_inventory(rc, data, allow_reserved_eq_total)
                for rc, data in inventories.items()}

        def work(s: Session) -> tuple[int, dict[str, dict[str, Any]]]:
            row = self._row(s, uuid, lock=True)
            self._check_classes(s, recs, "inventory")
            if expected_mismatch(generation, row.generation):
                raise _gen_conflict(row, generation)
            existing = {i.resource_class: i for i in s.execute(select(Inventory).where(
                Inventory.resource_provider_id == row.id)).scalars()}
            gone = set(existing) - set(recs)
            if gone:
                inuse = sorted(set(s.execute(select(Allocation.resource_class).where(
                    Allocation.resource_provider_id == row.id,
                    Allocation.resource_class.in_(gone))).scalars()))
                if inuse:
                    raise errors.conflict(
                        f"update conflict: Inventory for '{', '.join(inuse)}' on resource "
                        f"provider '{uuid}' in use.", errors.INVENTORY_INUSE)
                s.execute(delete(Inventory).where(Inventory.resource_provider_id == row.id,
                                                  Inventory.resource_class.in_(gone)))
            now = utcnow()
            for rc, rec in recs.items():
                inv = existing.get(rc)
                if inv is None:
                    s.add(Inventory(resource_provider_id=row.id, resource_class=rc,
                                    updated_at=now, **rec))
                else:
                    for k, v in rec.items():
                        setattr(inv, k, v)
                    inv.updated_at = now
            s.flush()
            gen = self._bump(s, row)
            return gen, {rc: dict(recs[rc]) for rc in sorted(recs)}

        return self._write(work)

    def set_inventory(self, provider_uuid: str,
                      inventories: Mapping[str, Mapping[str, Any] | int],
                      generation: Any = ANY) -> int:
        """In-process helper: replace the provider's inventory; returns the new generation.

        Example: ``set_inventory(rp, {"VCPU": {"total": 8, "allocation_ratio": 4.0},
        "MEMORY_MB": 16384, "DISK_GB": 100})``.
        """
        return self.set_inventories(provider_uuid, inventories, generation)[0]

    def get_inventory(self, uuid: str, rc: str) -> tuple[int, dict[str, Any]]:
        with self.db.reader() as s:
            row = self._row(s, uuid)
            inv = s.get(Inventory, (row.id, rc))
            if inv is None:
                raise errors.not_found(f"No inventory of class {rc} for {uuid}")
            return row.generation, self._inv_dict(inv)

    def put_inventory(self, uuid: str, rc: str, data: Mapping[str, Any], generation: Any,
                      create_only: bool = False, allow_reserved_eq_total: bool = True,
                      ) -> tuple[int, dict[str, Any]]:
        """Create or update one inventory record (``create_only``: 409 if it exists; else 400
        if it does not, as ``PUT …/inventories/{rc}`` answers)."""
        rec = self.normalize_inventory(rc, data, allow_reserved_eq_total)

        def work(s: Session) -> tuple[int, dict[str, Any]]:
            row = self._row(s, uuid, lock=True)
            self._check_classes(s, [rc], "inventory")
            if expected_mismatch(generation, row.generation):
                raise _gen_conflict(row, generation)
            inv = s.get(Inventory, (row.id, rc))
            if create_only and inv is not None:
                raise errors.conflict(f"Update conflict: Inventory for {rc} on resource "
                                      f"provider {uuid} already exists.")
            now = utcnow()
            if inv is None:
                s.add(Inventory(resource_provider_id=row.id, resource_class=rc,
                                updated_at=now, **rec))
            else:
                for k, v in rec.items():
                    setattr(inv, k, v)
                inv.updated_at = now
            s.flush()
            return self._bump(s, row), rec

        return self._write(work)

    def delete_inventory(self, uuid: str, rc: str | None = None,
                         generation: Any = ANY) -> int:
        """Delete one inventory class (or all with ``rc=None``); 409 while allocated."""

        def work(s: Session) -> int:
            row = self._row(s, uuid, lock=True)
            if expected_mismatch(generation, row.generation):
                raise _gen_conflict(row, generation)
            cond = [Inventory.resource_provider_id == row.id]
            acond = [Allocation.resource_provider_id == row.id]
            if rc is not None:
                if s.get(Inventory, (row.id, rc)) is None:
                    raise errors.not_found(f"No inventory of class {rc} found for delete")
                cond.append(Inventory.resource_class == rc)
                acond.append(Allocation.resource_class == rc)
            inuse = sorted(set(s.execute(select(Allocation.resource_class).where(*acond))
                               .scalars()))
            if inuse:
                raise errors.conflict(
                    f"Unable to delete inventory for resource provider {uuid} because the "
                    f"inventory ({', '.join(inuse)}) has allocations.", errors.INVENTORY_INUSE)
            s.execute(delete(Inventory).where(*cond))
            return self._bump(s, row)

        return self._write(work)

    # ------------------------------------------------------------------ usages
    def provider_usages(self, uuid: str) -> tuple[int, dict[str, int]]:
        """``(generation, {resource_class: used})`` for every class the provider has."""
        with self.db.reader() as s:
            row = self._row(s, uuid)
            usages = dict.fromkeys(s.execute(select(Inventory.resource_class).where(
                Inventory.resource_provider_id == row.id)).scalars(), 0)
            for rc, used in s.execute(select(Allocation.resource_class, func.sum(
                    Allocation.used)).where(Allocation.resource_provider_id == row.id)
                    .group_by(Allocation.resource_class)):
                usages[rc] = int(used or 0)
            return row.generation, usages

    def usages(self, project_id: str, user_id: str | None = None,
               consumer_type: str | None = None) -> dict[str, dict[str, int]]:
        """Usage of a project (and user) grouped by consumer type.

        Returns ``{consumer_type or "unknown": {"consumer_count": n, rc: used, ...}}``;
        ``consumer_type="all"`` folds everything into one ``"all"`` group, ``"unknown"``
        selects consumers without a type.
        """
        with self.db.reader() as s:
            cond = [Consumer.project_id == project_id]
            if user_id is not None:
                cond.append(Consumer.user_id == user_id)
            if consumer_type not in (None, "all"):
                if consumer_type == "unknown":
                    cond.append(Consumer.consumer_type.is_(None))
                else:
                    cond.append(Consumer.consumer_type == consumer_type)
            rows = s.execute(select(Consumer.uuid, Consumer.consumer_type,
                                    Allocation.resource_class, func.sum(Allocation.used))
                             .join(Allocation, Allocation.consumer_id == Consumer.uuid)
                             .where(*cond)
                             .group_by(Consumer.uuid, Consumer.consumer_type,
                                       Allocation.resource_class)).all()
        out: dict[str, dict[str, int]] = {}
        consumers: dict[str, set[str]] = defaultdict(set)
        for cid, ctype, rc, used in rows:
            key = "all" if consumer_type == "all" else (ctype or "unknown")
            group = out.setdefault(key, {})
            group[rc] = group.get(rc, 0) + int(used or 0)
            consumers[key].add(cid)
        for key, ids in consumers.items():
            out[key]["consumer_count"] = len(ids)
        return out

    # ------------------------------------------------------------------ resource classes
    def list_resource_classes(self) -> list[str]:
        with self.db.reader() as s:
            custom = list(s.execute(select(CustomResourceClass.name)
                                    .order_by(CustomResourceClass.name)).scalars())
        return [*STANDARD_RESOURCE_CLASSES, *custom]

    def get_resource_class(self, name: str) -> str:
        with self.db.reader() as s:
            if not self.resource_class_exists(s, name):
                raise errors.not_found(f"No such resource class {name}.")
        return name

    @staticmethod
    def _custom_name(name: str, kind: str) -> None:
        if not CUSTOM_RE.match(name):
            raise errors.bad_request(f"'{name}' is not a valid custom {kind} name: it must "
                                     "match ^CUSTOM_[A-Z0-9_]+$")

    def create_resource_class(self, name: str, exist_ok: bool = False) -> bool:
        """Create ``CUSTOM_*`` class ``name``; True if created (409 if it exists, unless
        ``exist_ok``)."""
        self._custom_name(name, "resource class")

        def work(s: Session) -> bool:
            if s.get(CustomResourceClass, name) is not None:
                if exist_ok:
                    return False
                raise errors.conflict(f"Conflicting resource class already exists: {name}",
                                      errors.DUPLICATE_NAME)
            s.add(CustomResourceClass(name=name, created_at=utcnow()))
            s.flush()
            return True

        try:
            return self._write(work)
        except IntegrityError as exc:
            if exist_ok:
                return False
            raise errors.conflict(f"Conflicting resource class already exists: {name}",
                                  errors.DUPLICATE_NAME) from exc

    def _custom_only(self, name: str, kind: str) -> None:
        if not name.startswith("CUSTOM_"):
            raise errors.bad_request(f"Cannot modify or delete standard {kind} {name}.")

    def rename_resource_class(self, old: str, new: str) -> None:
        """Rename a custom class (microversions 1.2–1.6); inventories/allocations follow."""
        self._custom_only(old, "resource class")
        self._custom_name(new, "resource class")

        def work(s: Session) -> None:
            row = s.get(CustomResourceClass, old)
            if row is None:
                raise errors.not_found(f"No such resource class {old}.")
            if old == new:
                return
            if s.get(CustomResourceClass, new) is not None:
                raise errors.conflict(f"Resource class already exists: {new}",
                                      errors.DUPLICATE_NAME)
            s.add(CustomResourceClass(name=new, created_at=row.created_at))
            for model in (Inventory, Allocation):
                s.execute(update(model).where(model.resource_class == old)
                          .values(resource_class=new)
                          .execution_options(synchronize_session=False))
            s.delete(row)

        self._write(work)

    def delete_resource_class(self, name: str) -> None:
        """Delete a custom class (409 while any provider has inventory of it)."""
        self._custom_only(name, "resource class")

        def work(s: Session) -> None:
            row = s.get(CustomResourceClass, name)
            if row is None:
                raise errors.not_found(f"No such resource class {name}.")
            if s.execute(select(Inventory.resource_provider_id).where(
                    Inventory.resource_class == name).limit(1)).first():
                raise errors.conflict(f"Unable to delete resource class {name}. Class is in "
                                      "use in inventory.")
            s.delete(row)

        self._write(work)

    # ------------------------------------------------------------------ traits
    def list_traits(self, names: list[str] | None = None, prefix: str | None = None,
                    associated: bool | None = None) -> list[str]:
        """Standard and custom traits, optionally only ``names``, those starting with
        ``prefix``, or only those (not) associated with a provider."""
        with self.db.reader() as s:
            custom = set(s.execute(select(CustomTrait.name)).scalars())
            assoc = None
            if associated is not None:
                assoc = set(s.execute(select(ProviderTrait.trait).distinct()).scalars())
        result = STANDARD_TRAITS | custom
        if names is not None:
            result &= set(names)
        if prefix is not None:
            result = {t for t in result if t.startswith(prefix)}
        if assoc is not None:
            result = result & assoc if associated else result - assoc
        return sorted(result)

    def trait_exists(self, name: str) -> bool:
        if name in STANDARD_TRAITS:
            return True
        with self.db.reader() as s:
            return s.get(CustomTrait, name) is not None

    def create_trait(self, name: str) -> bool:
        """Create ``CUSTOM_*`` trait ``name`` if missing; True if it was created."""
        self._custom_name(name, "trait")

        def work(s: Session) -> bool:
            if s.get(CustomTrait, name) is not None:
                return False
            s.add(CustomTrait(name=name, created_at=utcnow()))
            s.flush()
            return True

        try:
            return self._write(work)
        except IntegrityError:
            return False

    def delete_trait(self, name: str) -> None:
        """Delete a custom trait (400 for standard ones, 409 while a provider has it)."""
        if name in STANDARD_TRAITS:
            raise errors.bad_request(f"Cannot delete standard trait {name}.")

        def work(s: Session) -> None:
            row = s.get(CustomTrait, name)
            if row is None:
                raise errors.not_found(f"No such trait(s): {name}.")
            if s.execute(select(ProviderTrait.resource_provider_id).where(
                    ProviderTrait.trait == name).limit(1)).first():
                raise errors.conflict(f"The trait {name} is in use by a resource provider.")
            s.delete(row)

        self._write(work)

    def get_provider_traits(self, uuid: str) -> tuple[int, list[str]]:
        with self.db.reader() as s:
            row = self._row(s, uuid)
            traits = sorted(s.execute(select(ProviderTrait.trait).where(
                ProviderTrait.resource_provider_id == row.id)).scalars())
            return row.generation, traits

    def set_provider_traits(self, uuid: str, traits: Iterable[str],
                            generation: Any = ANY) -> tuple[int, list[str]]:
        """Replace the provider's traits (400 for unknown traits); returns
        ``(new_generation, traits)``."""
        wanted = sorted(set(traits))

        def work(s: Session) -> tuple[int, list[str]]:
            row = self._row(s, uuid, lock=True)
            self._check_traits(s, wanted)
            if expected_mismatch(generation, row.generation):
                raise _gen_conflict(row, generation)
            s.execute(delete(ProviderTrait).where(ProviderTrait.resource_provider_id == row.id))
            for t in wanted:
                s.add(ProviderTrait(resource_provider_id=row.id, trait=t))
            s.flush()
            return self._bump(s, row), wanted

        return self._write(work)

    def delete_provider_traits(self, uuid: str) -> int:
        def work(s: Session) -> int:
            row = self._row(s, uuid, lock=True)
            s.execute(delete(ProviderTrait).where(ProviderTrait.resource_provider_id == row.id))
            return self._bump(s, row)

        return self._write(work)

    # ------------------------------------------------------------------ aggregates
    def get_aggregates(self, uuid: str) -> tuple[int, list[str]]:
        with self.db.reader() as s:
            row = self._row(s, uuid)
            aggs = sorted(s.execute(select(ProviderAggregate.aggregate_uuid).where(
                ProviderAggregate.resource_provider_id == row.id)).scalars())
            return row.generation, aggs

    def set_aggregates(self, uuid: str, aggregates: Iterable[str],
                       generation: Any = ANY) -> tuple[int, list[str]]:
        """Replace the provider's aggregate memberships; returns ``(generation, aggs)``."""
        wanted = sorted(set(aggregates))

        def work(s: Session) -> tuple[int, list[str]]:
            row = self._row(s, uuid, lock=True)
            if expected_mismatch(generation, row.generation):
                raise _gen_conflict(row, generation)
            s.execute(delete(ProviderAggregate).where(
                ProviderAggregate.resource_provider_id == row.id))
            for a in wanted:
                s.add(ProviderAggregate(resource_provider_id=row.id, aggregate_uuid=a))
            s.flush()
            return self._bump(s, row), wanted

        return self._write(work)

    # ------------------------------------------------------------------ allocations
    def get_consumer_allocations(self, consumer_id: str) -> ConsumerAllocations:
        """What ``consumer_id`` holds (empty allocations if it holds nothing)."""
        with self.db.reader() as s:
            out = ConsumerAllocations(consumer_id)
            c = s.get(Consumer, consumer_id)
            if c is not None:
                out.project_id, out.user_id = c.project_id, c.user_id
                out.consumer_generation, out.consumer_type = c.generation, c.consumer_type
            for rp_uuid, gen, rc, used in s.execute(
                    select(ResourceProvider.uuid, ResourceProvider.generation,
                           Allocation.resource_class, Allocation.used)
                    .join(ResourceProvider,
                          ResourceProvider.id == Allocation.resource_provider_id)
                    .where(Allocation.consumer_id == consumer_id)):
                out.allocations.setdefault(rp_uuid, {})[rc] = used
                out.generations[rp_uuid] = gen
            return out

    def get_provider_allocations(self, uuid: str) -> tuple[int, dict[str, dict[str, int]]]:
        """``(generation, {consumer_id: {resource_class: used}})`` on one provider."""
        with self.db.reader() as s:
            row = self._row(s, uuid)
            out: dict[str, dict[str, int]] = {}
            for cid, rc, used in s.execute(select(
                    Allocation.consumer_id, Allocation.resource_class, Allocation.used)
                    .where(Allocation.resource_provider_id == row.id)):
                out.setdefault(cid, {})[rc] = used
            return row.generation, out

    def set_allocations(self, consumers: Mapping[str, ConsumerRequest]) -> dict[str, int]:
        """Atomically replace the allocations of several consumers (all or nothing).

        For each consumer, ``allocations`` maps provider uuid -> {resource_class: amount}; an
        empty mapping removes the consumer's allocations (and the consumer). Checks, in one
        transaction holding locks on every provider involved:

        * provider exists (400), resource class exists (400), amount within
          ``min_unit``/``max_unit`` and a multiple of ``step_size`` (400);
        * the provider has inventory of the class (409);
        * capacity: ``used + requested <= (total - reserved) * allocation_ratio`` (409);
        * ``consumer_generation`` unless ``ANY``: ``None`` means "new consumer", an int
          must equal the stored one (409 ``placement.concurrent_update``).

        Returns the new generation of every consumer (0 for consumers left without
        allocations, which are deleted).
        """
        for cid in consumers:
            if not is_uuid(cid):
                raise errors.bad_request(f"Malformed consumer UUID: {cid}")
        for cid, req in consumers.items():
            for rp_uuid, resources in req.allocations.items():
                for rc, amount in resources.items():
                    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
                        raise errors.bad_request(
                            f"Allocation of {rc} for consumer {cid} on {rp_uuid} must be a "
                            "positive integer.")
        try:
            return self._write(lambda s: self._set_allocations(s, consumers))
        except IntegrityError as exc:
            # Two requests created the same consumer at once: the loser retries.
            raise errors.concurrent_update(
                "consumer generation conflict: the consumer was created or changed "
                "concurrently; please retry.") from exc

    def _set_allocations(self, s: Session, consumers: Mapping[str, ConsumerRequest],
                         ) -> dict[str, int]:
        wanted_uuids = {u for req in consumers.values() for u in req.allocations}
        ids: dict[str, int] = {}
        if wanted_uuids:
            ids = {r[0]: r[1] for r in s.execute(select(
                ResourceProvider.uuid, ResourceProvider.id).where(
                ResourceProvider.uuid.in_(wanted_uuids)))}
        missing = sorted(wanted_uuids - set(ids))
        if missing:
            raise errors.bad_request(
                f"Allocation for resource provider '{missing[0]}' that does not exist.")
        classes = {rc for req in consumers.values() for res in req.allocations.values()
                   for rc in res}
        self._check_classes(s, classes, "allocations")
        cids = sorted(consumers)
        old_ids = set(s.execute(select(Allocation.resource_provider_id).where(
            Allocation.consumer_id.in_(cids))).scalars())
        rows = self._lock(s, set(ids.values()) | old_ids)
        # Consumers: lock and compare generations.
        existing = {c.uuid: c for c in s.execute(select(Consumer).where(
            Consumer.uuid.in_(cids)).with_for_update()).scalars()}
        for cid in cids:
            req = consumers[cid]
            c = existing.get(cid)
            if req.consumer_generation is ANY:
                continue
            if c is None and req.consumer_generation is not None:
                raise errors.concurrent_update(
                    f"consumer generation conflict - expected {req.consumer_generation} but "
                    f"the consumer {cid} does not exist")
            if c is not None and req.consumer_generation != c.generation:
                raise errors.concurrent_update(
                    f"consumer generation conflict - expected {req.consumer_generation} but "
                    f"got {c.generation}")
        s.execute(delete(Allocation).where(Allocation.consumer_id.in_(cids)))
        # Demand per (provider, class) over every consumer of this request.
        demand: dict[tuple[int, str], int] = defaultdict(int)
        for cid in cids:
            for rp_uuid, resources in consumers[cid].allocations.items():
                for rc, amount in resources.items():
                    demand[(ids[rp_uuid], rc)] += amount
        if demand:
            pids = {pid for pid, _ in demand}
            invs = {(i.resource_provider_id, i.resource_class): i for i in s.execute(
                select(Inventory).where(Inventory.resource_provider_id.in_(pids))).scalars()}
            used = {(pid, rc): int(u or 0) for pid, rc, u in s.execute(
                select(Allocation.resource_provider_id, Allocation.resource_class,
                       func.sum(Allocation.used))
                .where(Allocation.resource_provider_id.in_(pids))
                .group_by(Allocation.resource_provider_id, Allocation.resource_class))}
            for cid in cids:
                for rp_uuid, resources in consumers[cid].allocations.items():
                    for rc, amount in resources.items():
                        inv = invs.get((ids[rp_uuid], rc))
                        if inv is None:
                            raise _no_inventory(rc, rp_uuid)
                        _check_units(rp_uuid, rc, amount, inv)
            for (pid, rc), amount in sorted(demand.items()):
                inv = invs[(pid, rc)]
                _check_capacity(rows[pid].uuid, rc, amount, inv, used.get((pid, rc), 0))
        now = utcnow()
        result: dict[str, int] = {}
        for cid in cids:
            req = consumers[cid]
            c = existing.get(cid)
            if not req.allocations:
                if c is not None:
                    s.delete(c)
                result[cid] = 0
                continue
            for rp_uuid, resources in sorted(req.allocations.items()):
                for rc, amount in sorted(resources.items()):
                    s.add(Allocation(resource_provider_id=ids[rp_uuid], consumer_id=cid,
                                     resource_class=rc, used=amount, created_at=now))
            if c is None:
                c = Consumer(uuid=cid, project_id=req.project_id, user_id=req.user_id,
                             generation=1, consumer_type=req.consumer_type, created_at=now,
                             updated_at=now)
                s.add(c)
            else:
                c.project_id, c.user_id = req.project_id, req.user_id
                if req.consumer_type is not None:
                    c.consumer_type = req.consumer_type
                c.generation += 1
                c.updated_at = now
            result[cid] = c.generation
        s.flush()
        for pid in sorted({pid for pid, _ in demand}):
            self._bump(s, rows[pid])
        return result

    def claim(self, consumer_id: str, allocations: Mapping[str, Mapping[str, int]],
              project_id: str, user_id: str, consumer_generation: Any = ANY,
              consumer_type: str | None = None) -> int:
        """Give ``consumer_id`` exactly ``allocations`` ({provider_uuid: {rc: amount}}),
        replacing whatever it held, atomically and without oversubscribing.

        Raises ``Conflict`` (409) when capacity is exceeded, the inventory is missing or the
        consumer generation is stale, ``BadRequest`` (400) for unknown providers/classes or
        min/max/step violations. Returns the consumer's new generation.
        """
        req = ConsumerRequest(allocations, project_id, user_id, consumer_generation,
                              consumer_type)
        return self.set_allocations({consumer_id: req})[consumer_id]

    def claim_new(self, consumer_id: str, provider_uuid: str, resources: Mapping[str, int],
                  project_id: str, user_id: str) -> int:
        """``claim`` for the scheduler's common case, in five Core statements: a consumer
        with no allocations yet taking standard resources from one provider. Same checks,
        errors and locking as ``claim``; anything else (custom classes, an existing
        consumer, an unknown provider) is handed to ``claim``."""
        if not resources or any(rc not in _STANDARD_RC or not isinstance(n, int)
                                or isinstance(n, bool) or n < 1
                                for rc, n in resources.items()) or not is_uuid(consumer_id):
            return self.claim(consumer_id, {provider_uuid: resources}, project_id, user_id)
        rp, inv_t, alloc_t = (ResourceProvider.__table__, Inventory.__table__,
                              Allocation.__table__)
        classes = sorted(resources)
        for attempt in range(self.RETRIES):
            try:
                with self.db.connect() as c:
                    prov = c.execute(select(rp.c.id, rp.c.generation).where(
                        rp.c.uuid == provider_uuid).with_for_update()).first()
                    if prov is None:
                        raise _Fallback
                    # Inventory with its current usage, one query.
                    in_use = (select(func.coalesce(func.sum(alloc_t.c.used), 0))
                              .where(alloc_t.c.resource_provider_id == prov.id,
                                     alloc_t.c.resource_class == inv_t.c.resource_class)
                              .scalar_subquery())
                    invs, used = {}, {}
                    for r in c.execute(select(inv_t, in_use.label("in_use")).where(
                            inv_t.c.resource_provider_id == prov.id,
                            inv_t.c.resource_class.in_(classes))):
                        invs[r.resource_class] = r
                        used[r.resource_class] = int(r.in_use)
                    for rc in classes:
                        inv = invs.get(rc)
                        if inv is None:
                            raise _no_inventory(rc, provider_uuid)
                        _check_units(provider_uuid, rc, resources[rc], inv)
                    for rc in classes:
                        _check_capacity(provider_uuid, rc, resources[rc], invs[rc],
                                        used.get(rc, 0))
                    now = utcnow()
                    c.execute(insert(Consumer.__table__).values(
                        uuid=consumer_id, project_id=project_id, user_id=user_id,
                        generation=1, consumer_type=None, created_at=now, updated_at=now))
                    c.execute(insert(alloc_t), [
                        {"resource_provider_id": prov.id, "consumer_id": consumer_id,
                         "resource_class": rc, "used": resources[rc], "created_at": now}
                        for rc in classes])
                    res = c.execute(update(rp).where(
                        rp.c.id == prov.id, rp.c.generation == prov.generation).values(
                        generation=prov.generation + 1, updated_at=now))
                    if res.rowcount != 1:
                        raise errors.concurrent_update(
                            f"resource provider {provider_uuid} was changed concurrently; "
                            "please retry.")
                    return 1
            except (_Fallback, IntegrityError):
                # No such provider, or the consumer exists (its insert failed and rolled
                # everything back): the general path replaces or reports it.
                return self.claim(consumer_id, {provider_uuid: resources}, project_id,
                                  user_id)
            except DBAPIError as exc:
                if attempt + 1 < self.RETRIES and _retryable(exc):
                    time.sleep(0.005 * (2 ** attempt))
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def delete_allocations(self, consumer_id: str) -> None:
        """Remove everything ``consumer_id`` holds (404 if it holds nothing)."""

        def work(s: Session) -> None:
            n = s.execute(delete(Allocation).where(Allocation.consumer_id == consumer_id)
                          .execution_options(synchronize_session=False))
            if not n.rowcount:  # type: ignore[attr-defined]
                raise errors.not_found(f"No allocations for consumer '{consumer_id}'")
            s.execute(delete(Consumer).where(Consumer.uuid == consumer_id))

        self._write(work)

    def release(self, consumer_id: str) -> bool:
        """In-process helper: like ``delete_allocations`` but False instead of 404 (two
        Core statements)."""
        alloc_t, cons_t = Allocation.__table__, Consumer.__table__
        for attempt in range(self.RETRIES):
            try:
                with self.db.connect() as c:
                    n = c.execute(delete(alloc_t).where(alloc_t.c.consumer_id == consumer_id))
                    c.execute(delete(cons_t).where(cons_t.c.uuid == consumer_id))
                    return bool(n.rowcount)
            except DBAPIError as exc:
                if attempt + 1 < self.RETRIES and _retryable(exc):
                    time.sleep(0.005 * (2 ** attempt))
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ candidates
    def allocation_candidates(
            self, groups: list[RequestGroup] | Mapping[str, int], *,
            group_policy: str | None = None, limit: int | None = None,
            nested: bool = True, root_required: list[frozenset[str]] | None = None,
            root_forbidden: set[str] | None = None,
            same_subtree: list[list[str]] | None = None,
            required: Iterable[str] = (), member_of: Iterable[str] = (),
            in_tree: str | None = None) -> Candidates:
        """Ways to satisfy a resource request, plus summaries of the providers involved.

        Simple form: ``allocation_candidates({"VCPU": 1, "MEMORY_MB": 512}, required=[
        "HW_CPU_X86_AVX2"], member_of=[agg_uuid], limit=10)``. Full form: a list of
        ``RequestGroup`` (unnamed group ``suffix=""`` plus granular groups), ``group_policy``
        ``"isolate"`` (granular groups on distinct providers) or ``"none"``.
        ``nested=False`` gives pre-1.29 behaviour (only root providers).

        Each ``AllocationRequest.allocations`` can be passed straight to ``claim``.
        """
        if isinstance(groups, Mapping):
            groups = [RequestGroup("", dict(groups), [frozenset([t]) for t in required],
                                   set(), [frozenset([m]) for m in member_of], set(),
                                   in_tree)]
        groups = [g for g in groups if g.resources]
        if not groups:
            raise errors.bad_request("At least one resource must be requested.")
        root_required = root_required or []
        root_forbidden = root_forbidden or set()
        with self.db.reader() as s:
            self._check_classes(s, {rc for g in groups for rc in g.resources}, "resources")
            traits = {t for g in groups for t in itertools.chain(
                itertools.chain.from_iterable(g.required), g.forbidden)}
            traits |= set(itertools.chain.from_iterable(root_required)) | root_forbidden
            if traits:
                self._check_traits(s, traits)
            snap = _Snapshot(s)
        requests: list[AllocationRequest] = []
        seen: set[tuple[Any, ...]] = set()
        trees: dict[str, set[int]] = {}
        cap = self.max_candidates if limit is None else min(limit, self.max_candidates)
        for root_id in sorted(snap.tree):
            if len(requests) >= cap:
                break
            if not traits_ok(snap.traits.get(root_id, set()), root_required, root_forbidden):
                continue
            members = sorted(snap.tree[root_id]) if nested else [root_id]
            pool = members + snap.sharing_for(members)
            for combo in self._tree_candidates(snap, root_id, pool, groups, group_policy,
                                               same_subtree or []):
                key = tuple(sorted((pid, rc, amt, tuple(sorted(res[1])))
                                   for pid, res in combo.items() for rc, amt in res[0].items()))
                if key in seen:
                    continue
                seen.add(key)
                allocs: dict[str, dict[str, int]] = {}
                mappings: dict[str, list[str]] = {}
                for pid, (res, suffixes) in combo.items():
                    puuid = snap.providers[pid].uuid
                    allocs[puuid] = dict(res)
                    for sfx in suffixes:
                        mappings.setdefault(sfx, []).append(puuid)
                requests.append(AllocationRequest(allocs, mappings))
                trees.setdefault("", set()).update(combo)
                trees.setdefault("roots", set()).update(
                    snap.providers[pid].root_id for pid in combo)
                if len(requests) >= cap:
                    break
        summaries: dict[str, ProviderSummary] = {}
        involved = set(trees.get("", set()))
        if nested:
            for r in trees.get("roots", set()):
                involved.update(snap.tree[r])
        for pid in sorted(involved):
            p = snap.providers[pid]
            summaries[p.uuid] = ProviderSummary(
                uuid=p.uuid,
                resources={rc: (capacity(i.total, i.reserved, i.allocation_ratio),
                                snap.used.get(pid, {}).get(rc, 0))
                           for rc, i in sorted(snap.inv.get(pid, {}).items())},
                traits=sorted(snap.traits.get(pid, set())),
                parent_provider_uuid=snap.providers[p.parent_id].uuid if p.parent_id else None,
                root_provider_uuid=snap.providers[p.root_id].uuid)
        return Candidates(requests, summaries)

    def _tree_candidates(self, snap: _Snapshot, root_id: int, pool: list[int],
                         groups: list[RequestGroup], group_policy: str | None,
                         same_subtree: list[list[str]],
                         ) -> Iterator[dict[int, tuple[dict[str, int], set[str]]]]:
        """Yield ``{provider_id: (resources, group_suffixes)}`` for one tree."""
        per_group: list[list[dict[int, dict[str, int]]]] = []
        for g in groups:
            tree_filter = None
            if g.in_tree is not None:
                tid = snap.by_uuid.get(g.in_tree)
                if tid is None:
                    return
                tree_filter = snap.providers[tid].root_id

            def usable(pid: int, g: RequestGroup = g, tree_filter: int | None = tree_filter,
                       ) -> bool:
                if tree_filter is not None and snap.providers[pid].root_id != tree_filter:
                    return False
                return snap.member_ok(pid, g.member_of, g.forbidden_aggregates)

            options: list[dict[int, dict[str, int]]] = []
            if g.suffix:
                for pid in pool:
                    if not usable(pid):
                        continue
                    if not all(snap.fits(pid, rc, a) for rc, a in g.resources.items()):
                        continue
                    if not traits_ok(snap.traits.get(pid, set()), g.required, g.forbidden):
                        continue
                    options.append({pid: dict(g.resources)})
            else:
                per_rc = []
                for rc, amount in sorted(g.resources.items()):
                    fits = [pid for pid in pool if usable(pid) and snap.fits(pid, rc, amount)]
                    if not fits:
                        return
                    per_rc.append([(pid, rc, amount) for pid in fits])
                for choice in itertools.islice(itertools.product(*per_rc),
                                               self.max_candidates):
                    pids = {pid for pid, _, _ in choice}
                    have: set[str] = set()
                    for pid in pids:
                        have |= snap.traits.get(pid, set())
                    if not traits_ok(have, g.required, g.forbidden):
                        continue
                    opt: dict[int, dict[str, int]] = {}
                    for pid, rc, amount in choice:
                        opt.setdefault(pid, {})[rc] = amount
                    options.append(opt)
            if not options:
                return
            per_group.append(options)
        produced = 0
        for choice in itertools.product(*per_group):
            if produced >= self.max_candidates:
                return
            if group_policy == "isolate":
                used_by: dict[int, str] = {}
                clash = False
                for g, opt in zip(groups, choice, strict=True):
                    if not g.suffix:
                        continue
                    for pid in opt:
                        if used_by.setdefault(pid, g.suffix) != g.suffix:
                            clash = True
                if clash:
                    continue
            merged: dict[int, tuple[dict[str, int], set[str]]] = {}
            for g, opt in zip(groups, choice, strict=True):
                for pid, res in opt.items():
                    entry = merged.setdefault(pid, ({}, set()))
                    entry[1].add(g.suffix)
                    for rc, amount in res.items():
                        entry[0][rc] = entry[0].get(rc, 0) + amount
            if any(snap.free(pid, rc) < amount for pid, (res, _) in merged.items()
                   for rc, amount in res.items()):
                continue
            if same_subtree and not self._same_subtree_ok(snap, groups, choice, same_subtree):
                continue
            produced += 1
            yield merged

    @staticmethod
    def _same_subtree_ok(snap: _Snapshot, groups: list[RequestGroup],
                         choice: tuple[dict[int, dict[str, int]], ...],
                         same_subtree: list[list[str]]) -> bool:
        by_suffix = {g.suffix: set(opt) for g, opt in zip(groups, choice, strict=True)}
        for suffixes in same_subtree:
            pids: set[int] = set()
            for sfx in suffixes:
                pids |= by_suffix.get(sfx, set())
            if pids and not any(all(snap.in_subtree(p, anc) for p in pids) for anc in pids):
                return False
        return True


# --------------------------------------------------------------------------- helpers
def expected_mismatch(expected: Any, actual: int) -> bool:
    return expected is not ANY and expected != actual


def _gen_conflict(row: ResourceProvider, expected: Any) -> APIError:
    return errors.concurrent_update(
        f"resource provider generation conflict: the provider {row.uuid} is at generation "
        f"{row.generation}, not {expected}. Please update the generation and retry.")


def _retryable(exc: DBAPIError) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in ("40P01", "40001", "55P03"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1205, 1213):  # MySQL lock wait timeout, deadlock
        return True
    text = str(orig).lower()
    return "database is locked" in text or "deadlock" in text
