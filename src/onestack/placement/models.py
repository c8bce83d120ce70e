"""Placement's vocabulary: standard resource classes and traits, the records its API and
the scheduler exchange with the manager (providers, consumers, request groups, allocation
candidates), capacity arithmetic and the checks every store uses."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import os_traits
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from onestack.common.errors import APIError
from onestack.db.placement import (
    Allocation,
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
