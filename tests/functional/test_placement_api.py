"""Placement HTTP API: microversions, fault bodies, generations, capacity, policy and the
semantics of allocation candidates, against a running onestack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud

LATEST = "placement 1.39"


class Client:
    def __init__(self, cloud: RunningCloud, token: str) -> None:
        self.base = cloud.url("placement")
        self.http = httpx.Client(base_url=self.base, timeout=30,
                                 headers={"X-Auth-Token": token})

    def call(self, method: str, path: str, version: str = LATEST, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", {})
        if version:
            headers["OpenStack-API-Version"] = version
        return self.http.request(method, path, headers=headers, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def provider(self, name: str | None = None, parent: str | None = None,
                 inventory: dict[str, Any] | None = None, traits: list[str] | None = None,
                 aggregates: list[str] | None = None) -> str:
        body: dict[str, Any] = {"name": name or f"rp-{uuid.uuid4().hex[:10]}"}
        if parent:
            body["parent_provider_uuid"] = parent
        rp = self.ok("POST", "/resource_providers", json=body)
        u = rp["uuid"]
        gen = rp["generation"]
        if inventory:
            invs = {rc: v if isinstance(v, dict) else {"total": v}
                    for rc, v in inventory.items()}
            gen = self.ok("PUT", f"/resource_providers/{u}/inventories", json={
                "inventories": invs, "resource_provider_generation": gen,
            })["resource_provider_generation"]
        if traits:
            gen = self.ok("PUT", f"/resource_providers/{u}/traits", json={
                "traits": traits, "resource_provider_generation": gen,
            })["resource_provider_generation"]
        if aggregates:
            self.ok("PUT", f"/resource_providers/{u}/aggregates", json={
                "aggregates": aggregates, "resource_provider_generation": gen})
        return u

    def claim(self, rp_allocs: dict[str, dict[str, int]], consumer: str | None = None,
              generation: int | None = None, project: str = "p1") -> httpx.Response:
        return self.call("PUT", f"/allocations/{consumer or uuid.uuid4()}", json={
            "allocations": {rp: {"resources": res} for rp, res in rp_allocs.items()},
            "project_id": project, "user_id": "u1", "consumer_generation": generation,
            "consumer_type": "INSTANCE"})


@pytest.fixture(scope="module")
def pc(cloud: RunningCloud) -> Iterator[Client]:
    c = Client(cloud, cloud.token())
    yield c
    c.http.close()


def fault(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    err = body["errors"][0]
    assert err["status"] == status and err["title"] and err["detail"]
    assert err["request_id"] == r.headers["x-openstack-request-id"]
    assert err["request_id"].startswith("req-")
    if code is not None:
        assert err["code"] == code
    return err


# --------------------------------------------------------------------------- versions
def test_version_document_and_healthcheck(cloud: RunningCloud) -> None:
    base = cloud.url("placement")
    doc = httpx.get(base + "/").json()
    assert doc["versions"][0]["min_version"] == "1.0"
    assert doc["versions"][0]["max_version"] == "1.39"
    assert httpx.get(base + "/healthcheck").status_code == 200
    # No token: 401 in Placement's body.
    fault(httpx.get(base + "/resource_providers"), 401)


def test_microversion_negotiation(pc: Client) -> None:
    r = pc.call("GET", "/resource_providers", version="placement 1.99")
    err = fault(r, 406)
    assert err["max_version"] == "1.39" and err["min_version"] == "1.0"
    fault(pc.call("GET", "/resource_providers", version="placement 1.x"), 400)
    r = pc.call("GET", "/resource_providers", version="placement latest")
    assert r.headers["openstack-api-version"] == "placement 1.39"
    assert "openstack-api-version" in r.headers["vary"].lower()
    assert r.headers["cache-control"] == "no-cache" and r.headers["last-modified"]
    r = pc.call("GET", "/resource_providers", version="")
    assert r.headers["openstack-api-version"] == "placement 1.0"
    # Routes newer than the requested version are 404; code field only from 1.23.
    r = pc.call("GET", "/traits", version="placement 1.5")
    assert "code" not in fault(r, 404)
    assert "code" in fault(pc.call("GET", "/nope"), 404)
    fault(pc.call("POST", "/traits"), 405)


# --------------------------------------------------------------------------- providers
def test_provider_crud_and_versions(pc: Client) -> None:
    name = f"crud-{uuid.uuid4().hex[:8]}"
    given = str(uuid.uuid4())
    r = pc.call("POST", "/resource_providers", version="placement 1.19",
                json={"name": name, "uuid": given})
    assert r.status_code == 201 and not r.content
    assert r.headers["location"].endswith(f"/resource_providers/{given}")
    rp = pc.ok("GET", f"/resource_providers/{given}")
    assert rp["generation"] == 0 and rp["parent_provider_uuid"] is None
    assert {link["rel"] for link in rp["links"]} == {
        "self", "inventories", "usages", "aggregates", "traits", "allocations"}
    old = pc.ok("GET", f"/resource_providers/{given}", version="placement 1.0")
    assert "root_provider_uuid" not in old
    fault(pc.call("POST", "/resource_providers", json={"name": name}), 409,
          "placement.duplicate_name")
    renamed = pc.ok("PUT", f"/resource_providers/{given}", json={"name": name + "-x"})
    assert renamed["name"] == name + "-x"
    child = pc.provider(parent=given)
    got = pc.ok("GET", f"/resource_providers/{child}")
    assert got["root_provider_uuid"] == given and got["parent_provider_uuid"] == given
    tree = pc.ok("GET", f"/resource_providers?in_tree={child}")["resource_providers"]
    assert {p["uuid"] for p in tree} == {given, child}
    fault(pc.call("DELETE", f"/resource_providers/{given}"), 409,
          "placement.resource_provider.cannot_delete_parent")
    # Re-parenting needs 1.37.
    other = pc.provider()
    fault(pc.call("PUT", f"/resource_providers/{child}", version="placement 1.36",
                  json={"name": "c", "parent_provider_uuid": other}), 400)
    moved = pc.ok("PUT", f"/resource_providers/{child}",
                  json={"name": "c-" + child[:8], "parent_provider_uuid": other})
    assert moved["root_provider_uuid"] == other
    fault(pc.call("PUT", f"/resource_providers/{other}",
                  json={"name": "o-" + other[:8], "parent_provider_uuid": child}), 400)
    for u in (child, other, given):
        assert pc.call("DELETE", f"/resource_providers/{u}").status_code == 204
    fault(pc.call("GET", f"/resource_providers/{given}"), 404,
          "placement.resource_provider.not_found")


@pytest.mark.parametrize("body", [
    {}, {"name": ""}, {"name": "x" * 201}, {"name": "ok", "uuid": "not-a-uuid"},
    {"name": "ok", "bogus": 1}, {"name": 5}, [], "text",
    {"name": "ok", "parent_provider_uuid": str(uuid.uuid4())},
])
def test_provider_bad_input(pc: Client, body: Any) -> None:
    fault(pc.call("POST", "/resource_providers", json=body), 400)


def test_bad_bodies_and_queries_are_400(pc: Client) -> None:
    rp = pc.provider(inventory={"VCPU": 4})
    inv = f"/resource_providers/{rp}/inventories"
    fault(pc.call("PUT", inv, content="{nope", headers={"Content-Type": "application/json"}),
          400)
    for bad in ({"inventories": {"VCPU": {"total": 0}}, "resource_provider_generation": 1},
                {"inventories": {"VCPU": {"total": 4, "reserved": 5}},
                 "resource_provider_generation": 1},
                {"inventories": {"VCPU": {"total": 4, "min_unit": 5, "max_unit": 2}},
                 "resource_provider_generation": 1},
                {"inventories": {"vcpu": {"total": 4}}, "resource_provider_generation": 1},
                {"inventories": {"CUSTOM_NOT_THERE": {"total": 4}},
                 "resource_provider_generation": 1},
                {"inventories": {"VCPU": {"total": 4, "allocation_ratio": 0}},
                 "resource_provider_generation": 1},
                {"inventories": {"VCPU": {"total": 4}}},
                {"inventories": {"VCPU": {"total": "4"}}, "resource_provider_generation": 1}):
        fault(pc.call("PUT", inv, json=bad), 400)
    for query in ("resources=VCPU", "resources=VCPU:x", "resources=VCPU:0", "member_of=xyz",
                  "uuid=nope", "required=lower", "required=HW_NOT_A_TRAIT", "bogus=1",
                  "resources=CUSTOM_NOPE:1", "name=a&name=b"):
        fault(pc.call("GET", f"/resource_providers?{query}"), 400)
    for query in ("", "resources=VCPU:1&limit=0", "resources=VCPU:1&group_policy=weird",
                  "resources1=VCPU:1&resources2=VCPU:1", "resources=VCPU:1&required=!",
                  "required1=HW_CPU_X86_AVX2&resources=VCPU:1",
                  "resources=VCPU:1&same_subtree=_X", "resources=VCPU:1&in_tree=nope"):
        fault(pc.call("GET", f"/allocation_candidates?{query}"), 400)
    fault(pc.call("GET", "/usages"), 400)
    fault(pc.call("PUT", "/allocations/not-a-uuid", json={}), 400)
    fault(pc.call("PUT", "/traits/NOT_CUSTOM"), 400)
    fault(pc.call("DELETE", "/traits/HW_CPU_X86_AVX2"), 400)
    fault(pc.call("POST", "/resource_classes", json={"name": "GOLD"}), 400)
    fault(pc.call("DELETE", "/resource_classes/VCPU"), 400)
    fault(pc.call("PUT", f"/resource_providers/{rp}/traits",
                  json={"traits": ["CUSTOM_UNKNOWN_X"], "resource_provider_generation": 1}),
          400)
    consumer = str(uuid.uuid4())
    for bad in ({"allocations": {rp: {"resources": {"VCPU": 0}}}},
                {"allocations": {rp: {"resources": {"VCPU": 1}}}, "project_id": "p",
                 "user_id": "u", "consumer_type": "INSTANCE"},  # no consumer_generation
                {"allocations": {"nope": {"resources": {"VCPU": 1}}}, "project_id": "p",
                 "user_id": "u", "consumer_generation": None, "consumer_type": "INSTANCE"},
                {"allocations": {str(uuid.uuid4()): {"resources": {"VCPU": 1}}},
                 "project_id": "p", "user_id": "u", "consumer_generation": None,
                 "consumer_type": "INSTANCE"}):
        fault(pc.call("PUT", f"/allocations/{consumer}", json=bad), 400)
    # Nothing changed.
    assert pc.ok("GET", inv)["inventories"]["VCPU"]["total"] == 4
    assert pc.ok("GET", f"/allocations/{consumer}") == {"allocations": {}}


# --------------------------------------------------------------------------- generations
def test_generation_conflicts(pc: Client) -> None:
    rp = pc.provider(inventory={"VCPU": 4})
    invs = pc.ok("GET", f"/resource_providers/{rp}/inventories")
    gen = invs["resource_provider_generation"]
    body = {"inventories": {"VCPU": {"total": 8}}, "resource_provider_generation": gen}
    assert pc.ok("PUT", f"/resource_providers/{rp}/inventories",
                 json=body)["resource_provider_generation"] == gen + 1
    fault(pc.call("PUT", f"/resource_providers/{rp}/inventories", json=body), 409,
          "placement.concurrent_update")
    fault(pc.call("PUT", f"/resource_providers/{rp}/traits",
                  json={"traits": [], "resource_provider_generation": gen}), 409,
          "placement.concurrent_update")
    fault(pc.call("PUT", f"/resource_providers/{rp}/aggregates",
                  json={"aggregates": [], "resource_provider_generation": gen}), 409,
          "placement.concurrent_update")
    fault(pc.call("PUT", f"/resource_providers/{rp}/inventories/VCPU",
                  json={"total": 2, "resource_provider_generation": gen}), 409,
          "placement.concurrent_update")
    one = pc.ok("PUT", f"/resource_providers/{rp}/inventories/VCPU",
                json={"total": 6, "resource_provider_generation": gen + 1})
    assert one["total"] == 6 and one["resource_provider_generation"] == gen + 2
    # Consumer generations (1.28+).
    consumer = str(uuid.uuid4())
    assert pc.claim({rp: {"VCPU": 1}}, consumer).status_code == 204
    got = pc.ok("GET", f"/allocations/{consumer}")
    assert got["consumer_generation"] == 1 and got["consumer_type"] == "INSTANCE"
    assert got["allocations"][rp]["resources"] == {"VCPU": 1}
    fault(pc.claim({rp: {"VCPU": 2}}, consumer, None), 409, "placement.concurrent_update")
    fault(pc.claim({rp: {"VCPU": 2}}, consumer, 7), 409, "placement.concurrent_update")
    assert pc.claim({rp: {"VCPU": 2}}, consumer, 1).status_code == 204
    # Allocating bumped the provider generation; an allocation-less PUT deletes (1.28).
    assert pc.claim({}, consumer, 2).status_code == 204
    assert pc.ok("GET", f"/allocations/{consumer}") == {"allocations": {}}
    fault(pc.call("DELETE", f"/allocations/{consumer}"), 404)


def test_capacity_exceeded_and_inventory_in_use(pc: Client) -> None:
    rp = pc.provider(inventory={"VCPU": {"total": 4, "reserved": 1, "allocation_ratio": 2.0},
                                "MEMORY_MB": {"total": 1024, "step_size": 256}})
    assert pc.claim({rp: {"VCPU": 6}}).status_code == 204
    err = fault(pc.claim({rp: {"VCPU": 1}}), 409)
    assert "capacity" in err["detail"]
    fault(pc.claim({rp: {"MEMORY_MB": 100}}), 400)  # step_size
    fault(pc.claim({rp: {"DISK_GB": 1}}), 409)  # no such inventory
    fault(pc.call("DELETE", f"/resource_providers/{rp}/inventories/VCPU"), 409,
          "placement.inventory.inuse")
    fault(pc.call("DELETE", f"/resource_providers/{rp}"), 409,
          "placement.resource_provider.inuse")
    usages = pc.ok("GET", f"/resource_providers/{rp}/usages")["usages"]
    assert usages == {"VCPU": 6, "MEMORY_MB": 0}
    allocs = pc.ok("GET", f"/resource_providers/{rp}/allocations")["allocations"]
    assert [a["resources"] for a in allocs.values()] == [{"VCPU": 6}]


def test_post_allocations_is_atomic(pc: Client) -> None:
    a = pc.provider(inventory={"VCPU": 2})
    b = pc.provider(inventory={"VCPU": 2})
    c1, c2 = str(uuid.uuid4()), str(uuid.uuid4())

    def doc(rp: str | None, n: int, gen: int | None) -> dict[str, Any]:
        return {"allocations": {rp: {"resources": {"VCPU": n}}} if rp else {},
                "project_id": "p1", "user_id": "u1", "consumer_generation": gen,
                "consumer_type": "INSTANCE"}

    assert pc.call("POST", "/allocations", json={c1: doc(a, 2, None)}).status_code == 204
    # Move c1 to b and create c2 on a in one request.
    r = pc.call("POST", "/allocations", json={c1: doc(b, 2, 1), c2: doc(a, 2, None)})
    assert r.status_code == 204, r.text
    # c2 cannot grow and c1 cannot be freed in the same failing request.
    r = pc.call("POST", "/allocations", json={c1: doc(None, 0, 2), c2: doc(a, 3, 1)})
    fault(r, 409)
    assert pc.ok("GET", f"/allocations/{c1}")["allocations"][b]["resources"] == {"VCPU": 2}
    assert pc.call("POST", "/allocations", json={}, version="placement 1.12").status_code == 404


def test_old_allocation_formats(pc: Client) -> None:
    rp = pc.provider(inventory={"DISK_GB": 10})
    consumer = str(uuid.uuid4())
    r = pc.call("PUT", f"/allocations/{consumer}", version="placement 1.0", json={
        "allocations": [{"resource_provider": {"uuid": rp}, "resources": {"DISK_GB": 3}}]})
    assert r.status_code == 204, r.text
    got = pc.ok("GET", f"/allocations/{consumer}", version="placement 1.0")
    assert got == {"allocations": {rp: {"generation": 2, "resources": {"DISK_GB": 3}}}}
    r = pc.call("PUT", f"/allocations/{consumer}", version="placement 1.12", json={
        "allocations": {rp: {"resources": {"DISK_GB": 4}}}, "project_id": "p9",
        "user_id": "u9"})
    assert r.status_code == 204, r.text
    got = pc.ok("GET", f"/allocations/{consumer}", version="placement 1.12")
    assert got["project_id"] == "p9" and "consumer_generation" not in got
    usage = pc.ok("GET", "/usages?project_id=p9", version="placement 1.9")
    assert usage == {"usages": {"DISK_GB": 4}}
    usage = pc.ok("GET", "/usages?project_id=p9")
    assert usage == {"usages": {"unknown": {"DISK_GB": 4, "consumer_count": 1}}}


def test_resource_classes_and_traits(pc: Client) -> None:
    rc = f"CUSTOM_RC_{uuid.uuid4().hex[:6].upper()}"
    r = pc.call("PUT", f"/resource_classes/{rc}")
    assert r.status_code == 201
    assert pc.call("PUT", f"/resource_classes/{rc}").status_code == 204
    fault(pc.call("POST", "/resource_classes", json={"name": rc}), 409)
    assert pc.ok("GET", f"/resource_classes/{rc}")["name"] == rc
    fault(pc.call("GET", "/resource_classes/CUSTOM_MISSING_RC"), 404)
    trait = f"CUSTOM_T_{uuid.uuid4().hex[:6].upper()}"
    assert pc.call("PUT", f"/traits/{trait}").status_code == 201
    assert pc.call("PUT", f"/traits/{trait}").status_code == 204
    assert pc.call("GET", f"/traits/{trait}").status_code == 204
    found = pc.ok("GET", f"/traits?name=in:{trait},HW_CPU_X86_AVX2")["traits"]
    assert found == sorted([trait, "HW_CPU_X86_AVX2"])
    rp = pc.provider(inventory={rc: 5}, traits=[trait])
    assert trait in pc.ok("GET", "/traits?associated=true")["traits"]
    fault(pc.call("DELETE", f"/traits/{trait}"), 409)
    fault(pc.call("DELETE", f"/resource_classes/{rc}"), 409)
    assert pc.call("DELETE", f"/resource_providers/{rp}").status_code == 204
    assert pc.call("DELETE", f"/traits/{trait}").status_code == 204
    assert pc.call("DELETE", f"/resource_classes/{rc}").status_code == 204
    fault(pc.call("GET", f"/traits/{trait}"), 404)


# --------------------------------------------------------------------------- policy
def test_non_admin_is_forbidden(cloud: RunningCloud) -> None:
    user, password, project = cloud.make_member("placement")
    demo = Client(cloud, cloud.token(user, password, project))
    for method, path in (("GET", "/resource_providers"), ("POST", "/resource_providers"),
                         ("GET", "/allocation_candidates?resources=VCPU:1"),
                         ("GET", "/usages?project_id=x"), ("PUT", "/traits/CUSTOM_DEMO")):
        kw = {"json": {"name": "demo-rp"}} if method == "POST" else {}
        fault(demo.call(method, path, **kw), 403)
    res = cloud.openstack("--os-placement-api-version", "1.39", "resource", "provider",
                          "list", env=cloud.os_env(user, password, project), check=False)
    assert res.returncode != 0


# --------------------------------------------------------------------------- candidates
def _ac(pc: Client, query: str, version: str = LATEST) -> dict[str, Any]:
    return pc.ok("GET", f"/allocation_candidates?{query}", version=version)  # type: ignore


def _providers(doc: dict[str, Any]) -> list[set[str]]:
    return [set(ar["allocations"]) for ar in doc["allocation_requests"]]


def test_allocation_candidates_semantics(pc: Client) -> None:
    """Capacity, traits, forbidden traits, aggregates, sharing, nesting, groups, limits."""
    tag = uuid.uuid4().hex[:6].upper()
    fast = f"CUSTOM_FAST_{tag}"
    assert pc.call("PUT", f"/traits/{fast}").status_code == 201
    agg1, agg2 = str(uuid.uuid4()), str(uuid.uuid4())
    big = pc.provider(f"big-{tag}", inventory={
        "VCPU": {"total": 16, "allocation_ratio": 1.0},
        "MEMORY_MB": {"total": 8192, "reserved": 512}}, traits=[fast, "HW_CPU_X86_AVX2"],
        aggregates=[agg1])
    small = pc.provider(f"small-{tag}", inventory={"VCPU": 2, "MEMORY_MB": 1024},
                        aggregates=[agg2])
    # Shared disk for agg1 only.
    disk = pc.provider(f"disk-{tag}", inventory={"DISK_GB": 500},
                       traits=["MISC_SHARES_VIA_AGGREGATE"], aggregates=[agg1])
    scope = f"member_of=in:{agg1},{agg2}"

    doc = _ac(pc, f"resources=VCPU:1,MEMORY_MB:512&{scope}")
    assert sorted(_providers(doc), key=sorted) == sorted([{big}, {small}], key=sorted)
    summary = doc["provider_summaries"][big]
    assert summary["resources"]["MEMORY_MB"] == {"capacity": 7680, "used": 0}
    assert fast in summary["traits"]
    assert summary["root_provider_uuid"] == big and summary["parent_provider_uuid"] is None

    # Capacity: only `big` has 4 VCPUs; reserved memory counts.
    assert _providers(_ac(pc, f"resources=VCPU:4&{scope}")) == [{big}]
    assert _providers(_ac(pc, f"resources=MEMORY_MB:7681&{scope}")) == []
    # Required / forbidden / any-of traits.
    assert _providers(_ac(pc, f"resources=VCPU:1&required={fast}&{scope}")) == [{big}]
    assert _providers(_ac(pc, f"resources=VCPU:1&required=!{fast}&{scope}")) == [{small}]
    assert _providers(_ac(pc, f"resources=VCPU:1&required=in:{fast},HW_CPU_X86_SSE"
                              f"&{scope}")) == [{big}]
    fault(pc.call("GET", f"/allocation_candidates?resources=VCPU:1&required=!{fast}",
                  version="placement 1.21"), 400)  # forbidden traits need 1.22
    # Aggregates: member_of and forbidden member_of.
    assert _providers(_ac(pc, f"resources=VCPU:1&member_of={agg2}")) == [{small}]
    assert _providers(_ac(pc, f"resources=VCPU:1&{scope}&member_of=!{agg1}")) == [{small}]
    # Sharing provider: disk comes from the shared pool of agg1.
    doc = _ac(pc, f"resources=VCPU:1,DISK_GB:100&{scope}")
    assert _providers(doc) == [{big, disk}]
    assert doc["allocation_requests"][0]["mappings"] == {"": sorted([big, disk])} or \
        set(doc["allocation_requests"][0]["mappings"][""]) == {big, disk}
    # Usage reduces capacity; limit truncates.
    consumer = str(uuid.uuid4())
    assert pc.claim({big: {"VCPU": 14}}, consumer).status_code == 204
    assert _providers(_ac(pc, f"resources=VCPU:4&{scope}")) == []
    assert _ac(pc, f"resources=VCPU:1&{scope}")["provider_summaries"][big]["resources"][
        "VCPU"] == {"capacity": 16, "used": 14}
    assert len(_ac(pc, f"resources=VCPU:1&{scope}&limit=1")["allocation_requests"]) == 1
    # Old response format (1.10) and requested-classes-only summaries before 1.27.
    old = _ac(pc, f"resources=VCPU:1&member_of={agg2}", version="placement 1.21")
    assert old["allocation_requests"][0]["allocations"] == {
        small: {"resources": {"VCPU": 1}}}
    assert set(old["provider_summaries"][small]["resources"]) == {"VCPU"}
    oldest = pc.ok("GET", "/allocation_candidates?resources=VCPU:1", version="placement 1.10")
    assert isinstance(oldest["allocation_requests"][0]["allocations"], list)
    assert "traits" not in next(iter(oldest["provider_summaries"].values()))
    assert pc.call("DELETE", f"/allocations/{consumer}").status_code == 204


def test_allocation_candidates_nested_and_granular(pc: Client) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    agg = str(uuid.uuid4())
    root = pc.provider(f"cn-{tag}", inventory={"DISK_GB": 100}, aggregates=[agg])
    numa0 = pc.provider(f"cn-{tag}-numa0", parent=root,
                        inventory={"VCPU": 4, "MEMORY_MB": 2048})
    numa1 = pc.provider(f"cn-{tag}-numa1", parent=root,
                        inventory={"VCPU": 4, "MEMORY_MB": 2048})
    pf = pc.provider(f"cn-{tag}-pf", parent=numa1, inventory={"SRIOV_NET_VF": 8},
                     traits=["HW_NIC_SRIOV"])
    q = f"in_tree={root}"
    # Unnamed group spreads over the tree; summaries cover the whole tree.
    doc = _ac(pc, f"resources=VCPU:2,MEMORY_MB:1024,DISK_GB:10&{q}")
    assert len(doc["allocation_requests"]) == 4
    assert set(doc["provider_summaries"]) == {root, numa0, numa1, pf}
    assert doc["provider_summaries"][pf]["parent_provider_uuid"] == numa1
    # Before 1.29 nested providers are not offered.
    assert _ac(pc, f"resources=VCPU:2&member_of={agg}",
               version="placement 1.28")["allocation_requests"] == []
    # Granular: each numbered group from one provider; isolate keeps them apart.
    base = (f"resources=DISK_GB:10&resources1=VCPU:3,MEMORY_MB:1024"
            f"&resources2=VCPU:3,MEMORY_MB:1024&{q}")
    iso = _ac(pc, base + "&group_policy=isolate")
    assert len(iso["allocation_requests"]) == 2
    for ar in iso["allocation_requests"]:
        assert ar["mappings"]["1"] != ar["mappings"]["2"]
        assert ar["mappings"][""] == [root]
        assert ar["allocations"][root]["resources"] == {"DISK_GB": 10}
    # group_policy=none would put both on one NUMA node, but 3+3 VCPU exceeds 4.
    assert len(_ac(pc, base + "&group_policy=none")["allocation_requests"]) == 2
    # A group with a trait lands on the provider that has it; same_subtree ties groups.
    doc = _ac(pc, f"resources_NET=SRIOV_NET_VF:1&required_NET=HW_NIC_SRIOV"
                  f"&resources_CPU=VCPU:1&same_subtree=_NET,_CPU&group_policy=none&{q}")
    assert [ar["mappings"] for ar in doc["allocation_requests"]] == [
        {"_NET": [pf], "_CPU": [numa1]}]
    # root_required filters whole trees by the root's traits.
    assert _ac(pc, f"resources=VCPU:1&{q}&root_required=HW_NIC_SRIOV")[
        "allocation_requests"] == []
    assert len(_ac(pc, f"resources=VCPU:1&{q}&root_required=!HW_NIC_SRIOV")[
        "allocation_requests"]) == 2
    # Claiming a candidate works verbatim.
    chosen = iso["allocation_requests"][0]["allocations"]
    consumer = str(uuid.uuid4())
    r = pc.call("PUT", f"/allocations/{consumer}", json={
        "allocations": chosen, "project_id": "p", "user_id": "u",
        "consumer_generation": None, "consumer_type": "INSTANCE"})
    assert r.status_code == 204, r.text
    assert len(_ac(pc, base + "&group_policy=isolate")["allocation_requests"]) == 0
    assert pc.call("DELETE", f"/allocations/{consumer}").status_code == 204
