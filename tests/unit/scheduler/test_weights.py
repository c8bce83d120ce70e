"""Scheduler weighers (``scheduler/weights.py``)."""

from __future__ import annotations

from onestack.scheduler.weights import (
    RAMWeigher,
    ServerGroupSoftAntiAffinityWeigher,
    weigh_hosts,
)
from tests.unit.scheduler.hosts import host, spec


def test_weighers_normalise_and_multiply() -> None:
    hosts = [host("small", 1024), host("big", 8192)]
    ranked = weigh_hosts(hosts, spec(), [RAMWeigher(1.0)])
    assert ranked[0][1].host == "big" and ranked[0][0] == 1.0
    ranked = weigh_hosts(hosts, spec(), [RAMWeigher(-1.0)])  # stacking
    assert ranked[0][1].host == "small"
    soft = spec(group_policy="soft-anti-affinity", group_hosts=["big", "big"])
    ranked = weigh_hosts(hosts, soft, [RAMWeigher(1.0), ServerGroupSoftAntiAffinityWeigher(10)])
    assert ranked[0][1].host == "small"
