"""Inventories of resource providers and their usages. Part of ``PlacementManager``
(``InventoryStore``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from onestack.common.timeutils import utcnow
from onestack.db.placement import Allocation, Consumer, Inventory, ResourceProvider
from onestack.placement import errors
from onestack.placement.models import (
    ANY,
    INVENTORY_DEFAULTS,
    INVENTORY_FIELDS,
    _gen_conflict,
    expected_mismatch,
)
from onestack.placement.store import PlacementStore


class InventoryStore(PlacementStore):
    """Inventories of resource providers and their usages."""

    # ------------------------------------------------------------------ inventories
    @staticmethod
    def _inv_dict(inv: Inventory) -> dict[str, Any]:
        return {"total": inv.total, "reserved": inv.reserved, "min_unit": inv.min_unit,
                "max_unit": inv.max_unit, "step_size": inv.step_size,
                "allocation_ratio": float(inv.allocation_ratio)}

    @staticmethod
    def _store_inventory(s: Session, row: ResourceProvider, rc: str, inv: Inventory | None,
                         rec: Mapping[str, Any], now: datetime) -> None:
        """Store ``rec`` as the provider's ``rc`` inventory: a new record, or ``inv`` (the
        current one) updated."""
        if inv is None:
            s.add(Inventory(resource_provider_id=row.id, resource_class=rc,
                            updated_at=now, **rec))
            return
        for k, v in rec.items():
            setattr(inv, k, v)
        inv.updated_at = now

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
                self._store_inventory(s, row, rc, existing.get(rc), rec, now)
            s.flush()
            gen = self._bump(s, row)
            return gen, {rc: dict(recs[rc]) for rc in sorted(recs)}

        return self._write(work)

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
            self._store_inventory(s, row, rc, inv, rec, utcnow())
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
