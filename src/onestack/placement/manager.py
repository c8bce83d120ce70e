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

from onestack.db.engine import Database
from onestack.placement.allocations import AllocationStore
from onestack.placement.candidates import CandidateStore
from onestack.placement.classes_traits import ClassTraitStore
from onestack.placement.inventories import InventoryStore
from onestack.placement.models import (  # noqa: F401 - the records are re-exported
    ANY,
    INCOMPLETE_ID,
    INT_MAX,
    Candidates,
    ConsumerAllocations,
    ConsumerRequest,
    ProviderInfo,
    ProviderQuery,
    RequestGroup,
    capacity,
    traits_ok,
)
from onestack.placement.providers import ProviderStore


class PlacementManager(ProviderStore, InventoryStore, ClassTraitStore, AllocationStore,
                       CandidateStore):
    """Resource providers, inventories, traits, aggregates, consumers and allocations.

    Raises ``onestack.common.errors`` exceptions whose ``kind`` is the Placement error code
    (``placement.concurrent_update`` etc.): ``NotFound`` (404), ``BadRequest`` (400) and
    ``Conflict`` (409).
    """

    def __init__(self, db: Database, max_candidates: int = 10000) -> None:
        self.db = db
        self.max_candidates = max_candidates
