"""Response shaping for the placement API, per microversion."""

from __future__ import annotations

from typing import Any

from onestack.placement.manager import Candidates, ConsumerAllocations, ProviderInfo
from onestack.placement.microversion import Version


def provider(p: ProviderInfo, v: Version) -> dict[str, Any]:
    base = f"/resource_providers/{p.uuid}"
    links = [{"rel": "self", "href": base},
             {"rel": "inventories", "href": f"{base}/inventories"},
             {"rel": "usages", "href": f"{base}/usages"}]
    if v >= (1, 1):
        links.append({"rel": "aggregates", "href": f"{base}/aggregates"})
    if v >= (1, 6):
        links.append({"rel": "traits", "href": f"{base}/traits"})
    if v >= (1, 11):
        links.append({"rel": "allocations", "href": f"{base}/allocations"})
    out: dict[str, Any] = {"uuid": p.uuid, "name": p.name, "generation": p.generation,
                           "links": links}
    if v >= (1, 14):
        out["parent_provider_uuid"] = p.parent_provider_uuid
        out["root_provider_uuid"] = p.root_provider_uuid
    return out


def resource_class(name: str) -> dict[str, Any]:
    return {"name": name, "links": [{"rel": "self", "href": f"/resource_classes/{name}"}]}


def consumer_allocations(c: ConsumerAllocations, v: Version) -> dict[str, Any]:
    out: dict[str, Any] = {"allocations": {
        rp: {"generation": c.generations.get(rp), "resources": res}
        for rp, res in c.allocations.items()}}
    if v >= (1, 12) and c.exists:
        out["project_id"] = c.project_id
        out["user_id"] = c.user_id
    if v >= (1, 28) and c.exists:
        out["consumer_generation"] = c.consumer_generation
    if v >= (1, 38) and c.exists:
        out["consumer_type"] = c.consumer_type or "unknown"
    return out


def candidates(c: Candidates, v: Version, requested: set[str]) -> dict[str, Any]:
    reqs: list[dict[str, Any]] = []
    for ar in c.allocation_requests:
        item: dict[str, Any]
        if v >= (1, 12):
            item = {"allocations": {rp: {"resources": res}
                                    for rp, res in ar.allocations.items()}}
        else:
            item = {"allocations": [{"resource_provider": {"uuid": rp}, "resources": res}
                                    for rp, res in ar.allocations.items()]}
        if v >= (1, 34):
            item["mappings"] = ar.mappings
        reqs.append(item)
    summaries: dict[str, Any] = {}
    for u, s in c.provider_summaries.items():
        res = {rc: {"capacity": cap, "used": used} for rc, (cap, used) in s.resources.items()
               if v >= (1, 27) or rc in requested}
        entry: dict[str, Any] = {"resources": res}
        if v >= (1, 17):
            entry["traits"] = s.traits
        if v >= (1, 29):
            entry["parent_provider_uuid"] = s.parent_provider_uuid
            entry["root_provider_uuid"] = s.root_provider_uuid
        summaries[u] = entry
    return {"allocation_requests": reqs, "provider_summaries": summaries}
