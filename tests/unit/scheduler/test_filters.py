"""Scheduler filters (``scheduler/filters.py``), in isolation."""

from __future__ import annotations

from onestack.scheduler.filters import (
    AggregateInstanceExtraSpecsFilter,
    AvailabilityZoneFilter,
    ComputeFilter,
    ResourceFilter,
    ServerGroupAffinityFilter,
    ServerGroupAntiAffinityFilter,
)
from tests.unit.scheduler.hosts import host, spec


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
