"""Placement manager on every database backend: capacity, generations, concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest

from onestack.common.errors import APIError, BadRequest, Conflict, NotFound
from onestack.db.engine import Database
from onestack.placement import errors
from onestack.placement.manager import (
    ANY,
    ConsumerRequest,
    PlacementManager,
    RequestGroup,
)

PROJECT = "p" * 32
USER = "u" * 32


def _uuid() -> str:
    return str(uuid.uuid4())


def _race(n: int, claim: Callable[[], object]) -> list[str]:
    """Run ``claim`` in ``n`` threads released at once; each outcome as "ok", "409 <kind>" or
    "error <exception>"."""
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        try:
            claim()
            outcome = "ok"
        except Conflict as exc:
            outcome = f"409 {exc.kind}"
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome = f"error {exc!r}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _host(m: PlacementManager, name: str, vcpu: int = 8, ram: int = 4096,
          parent: str | None = None) -> str:
    rp = m.ensure_provider(_uuid(), name, parent)
    m.set_inventories(rp.uuid, {"VCPU": {"total": vcpu}, "MEMORY_MB": ram})
    return rp.uuid


def test_twenty_concurrent_claims_never_oversubscribe(database: Database) -> None:
    m = PlacementManager(database)
    rp = m.ensure_provider(_uuid(), "host-concurrency")
    m.set_inventories(rp.uuid, {"VCPU": {"total": 10}})
    results = _race(20, lambda: m.claim(_uuid(), {rp.uuid: {"VCPU": 1}}, PROJECT, USER))
    assert results.count("ok") == 10, results
    assert all(r == "409 placement.undefined_code" for r in results if r != "ok"), results
    gen, usages = m.provider_usages(rp.uuid)
    assert usages == {"VCPU": 10}
    assert gen == m.get_provider(rp.uuid).generation


def test_concurrent_claims_many_providers(database: Database) -> None:
    """Claims spanning two providers in either order: no deadlock, no oversubscription."""
    m = PlacementManager(database)
    a = _host(m, "ha", vcpu=6, ram=100000)
    b = _host(m, "hb", vcpu=6, ram=100000)
    ok = []

    def work(i: int) -> None:
        first, second = (a, b) if i % 2 else (b, a)
        try:
            m.claim(_uuid(), {first: {"VCPU": 1}, second: {"MEMORY_MB": 10, "VCPU": 1}},
                    PROJECT, USER)
            ok.append(i)
        except Conflict:
            pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 6
    assert m.provider_usages(a)[1]["VCPU"] == 6
    assert m.provider_usages(b)[1]["VCPU"] == 6


def test_capacity_rules(database: Database) -> None:
    m = PlacementManager(database)
    rp = m.ensure_provider(_uuid(), "cap")
    m.set_inventories(rp.uuid, {"VCPU": {"total": 4, "reserved": 1, "allocation_ratio": 2.0,
                                       "max_unit": 6, "step_size": 2}})
    c1 = _uuid()
    assert m.claim(c1, {rp.uuid: {"VCPU": 4}}, PROJECT, USER) == 1
    with pytest.raises(Conflict):  # capacity (4-1)*2 = 6
        m.claim(_uuid(), {rp.uuid: {"VCPU": 4}}, PROJECT, USER)
    with pytest.raises(BadRequest):  # step size
        m.claim(_uuid(), {rp.uuid: {"VCPU": 1}}, PROJECT, USER)
    with pytest.raises(BadRequest):  # max_unit
        m.claim(_uuid(), {rp.uuid: {"VCPU": 8}}, PROJECT, USER)
    with pytest.raises(Conflict):  # no inventory of that class
        m.claim(_uuid(), {rp.uuid: {"DISK_GB": 1}}, PROJECT, USER)
    with pytest.raises(BadRequest):  # unknown class
        m.claim(_uuid(), {rp.uuid: {"CUSTOM_NOPE": 1}}, PROJECT, USER)
    with pytest.raises(BadRequest):  # unknown provider
        m.claim(_uuid(), {_uuid(): {"VCPU": 2}}, PROJECT, USER)
    # Replacing the consumer's own allocation does not count its old usage twice.
    assert m.claim(c1, {rp.uuid: {"VCPU": 6}}, PROJECT, USER) == 2
    assert m.provider_usages(rp.uuid)[1] == {"VCPU": 6}
    # Deleting inventory in use is refused.
    with pytest.raises(Conflict) as exc:
        m.set_inventories(rp.uuid, {})
    assert exc.value.kind == errors.INVENTORY_INUSE
    with pytest.raises(Conflict):
        m.delete_provider(rp.uuid)
    m.delete_allocations(c1)
    with pytest.raises(NotFound):
        m.delete_allocations(c1)
    m.delete_provider(rp.uuid)


def test_generations(database: Database) -> None:
    m = PlacementManager(database)
    rp = m.create_provider("gen")
    assert rp.generation == 0
    gen, _ = m.set_inventories(rp.uuid, {"DISK_GB": {"total": 10}}, generation=0)
    assert gen == 1
    with pytest.raises(Conflict) as exc:
        m.set_inventories(rp.uuid, {"DISK_GB": {"total": 20}}, generation=0)
    assert exc.value.kind == errors.CONCURRENT_UPDATE
    gen, traits = m.set_provider_traits(rp.uuid, ["HW_CPU_X86_AVX2"], generation=1)
    assert (gen, traits) == (2, ["HW_CPU_X86_AVX2"])
    with pytest.raises(Conflict):
        m.set_aggregates(rp.uuid, [_uuid()], generation=1)
    c = _uuid()
    g1 = m.claim(c, {rp.uuid: {"DISK_GB": 1}}, PROJECT, USER, consumer_generation=None)
    with pytest.raises(Conflict) as exc:
        m.claim(c, {rp.uuid: {"DISK_GB": 2}}, PROJECT, USER, consumer_generation=None)
    assert exc.value.kind == errors.CONCURRENT_UPDATE
    g2 = m.claim(c, {rp.uuid: {"DISK_GB": 2}}, PROJECT, USER, consumer_generation=g1)
    assert g2 == g1 + 1
    got = m.get_consumer_allocations(c)
    assert got.allocations == {rp.uuid: {"DISK_GB": 2}} and got.consumer_generation == g2


def test_bulk_allocations_are_atomic(database: Database) -> None:
    m = PlacementManager(database)
    a = _host(m, "bulk-a", vcpu=2)
    b = _host(m, "bulk-b", vcpu=2)
    c1, c2 = _uuid(), _uuid()
    m.claim(c1, {a: {"VCPU": 2}}, PROJECT, USER)
    # Move c1 from a to b and add c2 on a, together.
    m.set_allocations({
        c1: ConsumerRequest({b: {"VCPU": 2}}, PROJECT, USER),
        c2: ConsumerRequest({a: {"VCPU": 2}}, PROJECT, USER, consumer_generation=None),
    })
    assert m.provider_usages(a)[1]["VCPU"] == 2
    assert m.provider_usages(b)[1]["VCPU"] == 2
    # One failing consumer rolls everything back.
    c3 = _uuid()
    with pytest.raises(Conflict):
        m.set_allocations({
            c1: ConsumerRequest({}, PROJECT, USER),
            c3: ConsumerRequest({a: {"VCPU": 1}}, PROJECT, USER),
        })
    assert m.get_consumer_allocations(c1).allocations == {b: {"VCPU": 2}}
    assert not m.get_consumer_allocations(c3).exists


def test_usages_by_project(database: Database) -> None:
    m = PlacementManager(database)
    a = _host(m, "usage-a")
    m.claim(_uuid(), {a: {"VCPU": 2, "MEMORY_MB": 128}}, "proj1", "u1",
            consumer_type="INSTANCE")
    m.claim(_uuid(), {a: {"VCPU": 1}}, "proj1", "u2")
    assert m.usages("proj1") == {"INSTANCE": {"VCPU": 2, "MEMORY_MB": 128,
                                              "consumer_count": 1},
                                 "unknown": {"VCPU": 1, "consumer_count": 1}}
    assert m.usages("proj1", consumer_type="all") == {
        "all": {"VCPU": 3, "MEMORY_MB": 128, "consumer_count": 2}}
    assert m.usages("proj1", user_id="u2") == {"unknown": {"VCPU": 1, "consumer_count": 1}}
    assert m.usages("nobody") == {}


def test_candidates_and_trees(database: Database) -> None:
    m = PlacementManager(database)
    root = m.create_provider("cn1")
    numa0 = m.create_provider("cn1-numa0", parent_provider_uuid=root.uuid)
    numa1 = m.create_provider("cn1-numa1", parent_provider_uuid=root.uuid)
    assert m.get_provider(numa0.uuid).root_provider_uuid == root.uuid
    m.set_inventories(root.uuid, {"DISK_GB": 100})
    m.set_inventories(numa0.uuid, {"VCPU": 4, "MEMORY_MB": 1024})
    m.set_inventories(numa1.uuid, {"VCPU": 4, "MEMORY_MB": 1024})
    cands = m.allocation_candidates({"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 10})
    # VCPU and MEMORY may each come from either NUMA node.
    assert len(cands.allocation_requests) == 4
    assert set(cands.provider_summaries) == {root.uuid, numa0.uuid, numa1.uuid}
    groups = [RequestGroup("", {"DISK_GB": 10}),
              RequestGroup("1", {"VCPU": 2, "MEMORY_MB": 512}),
              RequestGroup("2", {"VCPU": 2, "MEMORY_MB": 512})]
    iso = m.allocation_candidates(groups, group_policy="isolate")
    assert len(iso.allocation_requests) == 2
    for req in iso.allocation_requests:
        assert req.mappings["1"] != req.mappings["2"]
    none = m.allocation_candidates(groups, group_policy="none")
    assert len(none.allocation_requests) == 4
    # Pre-1.29: nested providers are not candidates.
    assert m.allocation_candidates({"VCPU": 1}, nested=False).allocation_requests == []
    # Deleting a parent with children is refused.
    with pytest.raises(Conflict) as exc:
        m.delete_provider(root.uuid)
    assert exc.value.kind == errors.PROVIDER_CANNOT_DELETE_PARENT
    # A claim from a candidate works, and in_tree restricts trees.
    first = cands.allocation_requests[0]
    m.claim(_uuid(), first.allocations, PROJECT, USER)
    assert m.allocation_candidates({"VCPU": 1}, in_tree=_uuid()).allocation_requests == []
    assert len(m.allocation_candidates({"VCPU": 1}, in_tree=numa1.uuid)
               .allocation_requests) == 2


def test_names_and_custom_classes(database: Database) -> None:
    m = PlacementManager(database)
    m.create_provider("dup")
    with pytest.raises(Conflict) as exc:
        m.create_provider("dup")
    assert exc.value.kind == errors.DUPLICATE_NAME
    assert m.create_resource_class("CUSTOM_GOLD") is True
    assert m.create_resource_class("CUSTOM_GOLD", exist_ok=True) is False
    with pytest.raises(BadRequest):
        m.create_resource_class("gold")
    assert "CUSTOM_GOLD" in m.list_resource_classes()
    assert m.create_trait("CUSTOM_FAST") is True
    assert "CUSTOM_FAST" in m.list_traits(prefix="CUSTOM_")
    with pytest.raises(BadRequest):
        m.delete_trait("HW_CPU_X86_AVX2")
    rp = m.ensure_provider(_uuid(), "custom")
    m.set_inventories(rp.uuid, {"CUSTOM_GOLD": 3})
    m.set_provider_traits(rp.uuid, ["CUSTOM_FAST"], ANY)
    with pytest.raises(Conflict) as exc:
        m.delete_resource_class("CUSTOM_GOLD")
    assert exc.value.message == ("Unable to delete resource class CUSTOM_GOLD. Class is in use "
                                 "in inventory.")
    with pytest.raises(Conflict) as exc:
        m.delete_trait("CUSTOM_FAST")
    assert exc.value.message == "The trait CUSTOM_FAST is in use by a resource provider."
    with pytest.raises(APIError):
        m.set_provider_traits(rp.uuid, ["CUSTOM_UNKNOWN"])
    # Unused, they go; a second delete is a 404.
    m.set_provider_traits(rp.uuid, [], ANY)
    m.delete_inventory(rp.uuid)
    m.delete_trait("CUSTOM_FAST")
    m.delete_resource_class("CUSTOM_GOLD")
    with pytest.raises(NotFound) as missing:
        m.delete_trait("CUSTOM_FAST")
    assert missing.value.message == "No such trait(s): CUSTOM_FAST."
    with pytest.raises(NotFound) as missing:
        m.delete_resource_class("CUSTOM_GOLD")
    assert missing.value.message == "No such resource class CUSTOM_GOLD."


def test_claim_new_matches_claim(database: Database) -> None:
    """The scheduler's fast path gives the same answers and errors as ``claim``."""
    m = PlacementManager(database)
    rp = m.ensure_provider(_uuid(), "fast")
    m.set_inventories(rp.uuid, {"VCPU": {"total": 4, "reserved": 1, "allocation_ratio": 2.0,
                                       "max_unit": 6, "step_size": 2}})
    outcomes = {}
    for name, fn in (("claim", lambda c, r: m.claim(c, {rp.uuid: r}, PROJECT, USER)),
                     ("fast", lambda c, r: m.claim_new(c, rp.uuid, r, PROJECT, USER))):
        seen = []
        first = _uuid()
        seen.append(fn(first, {"VCPU": 4}))
        for wanted in ({"VCPU": 4}, {"VCPU": 1}, {"VCPU": 8}, {"DISK_GB": 1}):
            try:
                fn(_uuid(), wanted)
                seen.append("ok")
            except (Conflict, BadRequest) as exc:
                seen.append(f"{exc.status} {exc.message}")
        seen.append(m.provider_usages(rp.uuid)[1])
        m.delete_allocations(first)
        outcomes[name] = seen
    assert outcomes["fast"] == outcomes["claim"]
    assert outcomes["fast"][1].startswith("409 Unable to allocate inventory")
    # An existing consumer (replace) and unknown providers go through the general path.
    c = _uuid()
    assert m.claim_new(c, rp.uuid, {"VCPU": 2}, PROJECT, USER) == 1
    assert m.claim_new(c, rp.uuid, {"VCPU": 4}, PROJECT, USER) == 2
    assert m.provider_usages(rp.uuid)[1] == {"VCPU": 4}
    with pytest.raises(BadRequest):
        m.claim_new(_uuid(), _uuid(), {"VCPU": 2}, PROJECT, USER)
    assert m.release(c) and not m.release(c)
    assert m.provider_usages(rp.uuid)[1] == {"VCPU": 0}


def test_concurrent_claim_new_never_oversubscribes(database: Database) -> None:
    m = PlacementManager(database)
    rp = m.ensure_provider(_uuid(), "fast-concurrency")
    m.set_inventories(rp.uuid, {"VCPU": {"total": 10}, "MEMORY_MB": {"total": 100000}})
    results = _race(20, lambda: m.claim_new(_uuid(), rp.uuid, {"VCPU": 1, "MEMORY_MB": 64},
                                            PROJECT, USER))
    assert results.count("ok") == 10, results
    assert all(r == "409 placement.undefined_code" for r in results if r != "ok"), results
    assert m.provider_usages(rp.uuid)[1] == {"VCPU": 10, "MEMORY_MB": 640}
