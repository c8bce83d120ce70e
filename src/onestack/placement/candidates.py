"""Allocation candidates: which providers (and trees and sharing providers) can satisfy a request,
computed from one snapshot of the inventories. Part of ``PlacementManager``
(``CandidateStore``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from onestack.placement import errors
from onestack.placement.models import (
    AllocationRequest,
    Candidates,
    ProviderSummary,
    RequestGroup,
    _Snapshot,
    capacity,
    traits_ok,
)
from onestack.placement.store import PlacementStore


class CandidateStore(PlacementStore):
    """Allocation candidates: which providers (and trees and sharing providers) can satisfy a
    request, computed from one snapshot of the inventories."""

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
