"""Resource providers (tree, parents, roots) and their aggregates. Part of ``PlacementManager``
(``ProviderStore``)."""

from __future__ import annotations

import itertools
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from onestack.common.errors import APIError
from onestack.common.timeutils import utcnow
from onestack.db.placement import (
    Allocation,
    Inventory,
    ProviderAggregate,
    ProviderTrait,
    ResourceProvider,
)
from onestack.placement import errors
from onestack.placement.models import (
    ANY,
    ProviderInfo,
    ProviderQuery,
    _Snapshot,
    traits_ok,
)
from onestack.placement.store import PlacementStore


class ProviderStore(PlacementStore):
    """Resource providers (tree, parents, roots) and their aggregates."""

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

        return self._write_unique(work, f"Conflicting resource provider {name} / {rp_uuid}: "
                                        "already exists.")

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

        duplicate = f"Conflicting resource provider name: {name} already exists."

        def work(s: Session) -> ProviderInfo:
            row = self._row(s, uuid, lock=True)
            if name != row.name and s.execute(select(ResourceProvider.id).where(
                    ResourceProvider.name == name)).first():
                raise errors.conflict(duplicate, errors.DUPLICATE_NAME)
            row.name = name
            if parent_provider_uuid is not ANY:
                self._reparent(s, row, parent_provider_uuid, allow_reparent)
            row.updated_at = utcnow()
            s.flush()
            return self._info(s, [row])[0]

        return self._write_unique(work, duplicate)

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
    # ------------------------------------------------------------------ aggregates
    def get_aggregates(self, uuid: str) -> tuple[int, list[str]]:
        return self._members(uuid, ProviderAggregate, "aggregate_uuid")

    def set_aggregates(self, uuid: str, aggregates: Iterable[str],
                       generation: Any = ANY) -> tuple[int, list[str]]:
        """Replace the provider's aggregate memberships; returns ``(generation, aggs)``."""
        return self._replace_members(uuid, ProviderAggregate, "aggregate_uuid",
                                     sorted(set(aggregates)), generation)
