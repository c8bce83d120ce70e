"""Consumers and their allocations: claims that never oversubscribe, moves and swaps of allocations
between consumers. Part of ``PlacementManager`` (``AllocationStore``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onestack.common.ids import is_uuid
from onestack.common.timeutils import utcnow
from onestack.db.placement import Allocation, Consumer, Inventory, ResourceProvider
from onestack.placement import errors
from onestack.placement.models import (
    _STANDARD_RC,
    ANY,
    ConsumerAllocations,
    ConsumerRequest,
    _check_capacity,
    _check_units,
    _Fallback,
    _no_inventory,
)
from onestack.placement.store import PlacementStore


class AllocationStore(PlacementStore):
    """Consumers and their allocations: claims that never oversubscribe, moves and swaps of
    allocations between consumers."""

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

        def attempt() -> bool:
            """The claim in one Core transaction; False when ``claim`` must make it."""
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
                    return True
            except (_Fallback, IntegrityError):
                # No such provider, or the consumer exists (its insert failed and rolled
                # everything back): the general path replaces or reports it.
                return False
        if self._retrying(attempt):
            return 1
        return self.claim(consumer_id, {provider_uuid: resources}, project_id, user_id)

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

        def attempt() -> bool:
            with self.db.connect() as c:
                n = c.execute(delete(alloc_t).where(alloc_t.c.consumer_id == consumer_id))
                c.execute(delete(cons_t).where(cons_t.c.uuid == consumer_id))
                return bool(n.rowcount)
        return self._retrying(attempt)
