"""Scheduler filters and weighers, and compute microversion parsing, in isolation."""

from __future__ import annotations

from typing import Any

from onestack.compute import states
from onestack.compute.microversions import APIVersion, requested
from onestack.scheduler.filters import (
    AggregateInstanceExtraSpecsFilter,
    AvailabilityZoneFilter,
    ComputeFilter,
    ResourceFilter,
    ServerGroupAffinityFilter,
    ServerGroupAntiAffinityFilter,
)
from onestack.scheduler.host_state import HostState, RequestSpec
from onestack.scheduler.weights import (
    RAMWeigher,
    ServerGroupSoftAntiAffinityWeigher,
    weigh_hosts,
)


def host(name: str, free_mb: int = 4096, **kw: Any) -> HostState:
    base = dict(node_id=1, host=name, nodename=name, vcpus=8, memory_mb=free_mb, local_gb=100,
                vcpus_used=0, memory_mb_used=0, local_gb_used=0, cpu_allocation_ratio=1.0,
                ram_allocation_ratio=1.0, disk_allocation_ratio=1.0, hypervisor_type="fake",
                enabled=True, up=True, availability_zone="nova")
    base.update(kw)
    return HostState(**base)


def spec(**kw: Any) -> RequestSpec:
    return RequestSpec(instance_uuid="u", vcpus=1, memory_mb=512, disk_gb=1, **kw)


def test_filters() -> None:
    assert not ComputeFilter().host_passes(host("a", up=False), spec())
    assert not ComputeFilter().host_passes(host("a", enabled=False), spec())
    assert not ResourceFilter().host_passes(host("a", free_mb=256), spec())
    assert AvailabilityZoneFilter().host_passes(host("a"), spec(availability_zone="nova"))
    assert not AvailabilityZoneFilter().host_passes(host("a"), spec(availability_zone="az1"))
    aff = spec(group_policy="affinity", group_hosts=["b"])
    assert not ServerGroupAffinityFilter().host_passes(host("a"), aff)
    anti = spec(group_policy="anti-affinity", group_hosts=["a"])
    assert not ServerGroupAntiAffinityFilter().host_passes(host("a"), anti)
    assert ServerGroupAntiAffinityFilter().host_passes(host("b"), anti)
    agg = AggregateInstanceExtraSpecsFilter()
    want = spec(flavor_extra_specs={"aggregate_instance_extra_specs:ssd": "true"})
    assert agg.host_passes(host("a", aggregates=[{"ssd": "true"}]), want)
    assert not agg.host_passes(host("a", aggregates=[{"ssd": "false"}]), want)
    assert not agg.host_passes(host("a"), want)


def test_weighers_normalise_and_multiply() -> None:
    hosts = [host("small", 1024), host("big", 8192)]
    ranked = weigh_hosts(hosts, spec(), [RAMWeigher(1.0)])
    assert ranked[0][1].host == "big" and ranked[0][0] == 1.0
    ranked = weigh_hosts(hosts, spec(), [RAMWeigher(-1.0)])  # stacking
    assert ranked[0][1].host == "small"
    soft = spec(group_policy="soft-anti-affinity", group_hosts=["big", "big"])
    ranked = weigh_hosts(hosts, soft, [RAMWeigher(1.0), ServerGroupSoftAntiAffinityWeigher(10)])
    assert ranked[0][1].host == "small"


def test_microversions_and_status() -> None:
    def scope(value: str) -> dict[str, Any]:
        return {"headers": [(b"openstack-api-version", value.encode())]}

    assert str(requested(scope("compute 2.47"))[0]) == "2.47"
    assert requested(scope("compute latest"))[0] >= "2.90"
    assert requested(scope("compute 2.x"))[0] is None
    assert requested({"headers": []})[0] == APIVersion("2.1")
    assert APIVersion("2.10") > "2.9"
    assert states.status("active", "rebooting_hard") == "HARD_REBOOT"
    assert states.status("stopped", None) == "SHUTOFF"
    assert states.status("resized", None) == "VERIFY_RESIZE"
