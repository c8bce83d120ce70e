"""Weighers: each scores hosts; scores are normalised to 0..1 across the candidates and
multiplied by the weigher's multiplier, and the host with the highest sum wins."""

from __future__ import annotations

import operator
from typing import ClassVar

from onestack.scheduler.host_state import HostState, RequestSpec


class BaseWeigher:
    """Raw score of a host (higher is better before the multiplier)."""

    name: ClassVar[str] = ""

    def __init__(self, multiplier: float = 1.0) -> None:
        self.multiplier = multiplier

    def applies(self, spec: RequestSpec) -> bool:
        """Whether this weigher can tell hosts apart for ``spec`` (else it is skipped)."""
        return True

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        raise NotImplementedError

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        """Raw scores of many hosts (hot-path weighers override this with a tighter loop)."""
        return [self.weigh(h, spec) for h in hosts]


class _FreeCapacityWeigher(BaseWeigher):
    """Free capacity of one resource: total x allocation ratio - used (as ``HostState``'s
    ``free_*`` properties compute it)."""

    #: The ``HostState`` attributes of the resource's total, allocation ratio and usage.
    fields: ClassVar[tuple[str, str, str]]

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return self.weigh_all([host], spec)[0]

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        get = operator.attrgetter(*self.fields)
        return [total * ratio - used for total, ratio, used in map(get, hosts)]


class RAMWeigher(_FreeCapacityWeigher):
    """Free RAM (positive multiplier spreads, negative stacks)."""

    name = "RAMWeigher"
    fields = ("memory_mb", "ram_allocation_ratio", "memory_mb_used")


class CPUWeigher(_FreeCapacityWeigher):
    """Free vCPUs."""

    name = "CPUWeigher"
    fields = ("vcpus", "cpu_allocation_ratio", "vcpus_used")


class DiskWeigher(_FreeCapacityWeigher):
    """Free disk."""

    name = "DiskWeigher"
    fields = ("local_gb", "disk_allocation_ratio", "local_gb_used")


class _GroupMembersWeigher(BaseWeigher):
    """Members of the request's server group already on the host, for one soft policy:
    counted up (``sign`` 1) to gather them, down (``sign`` -1) to spread them."""

    policy: ClassVar[str]
    sign: ClassVar[float]

    def applies(self, spec: RequestSpec) -> bool:
        return spec.group_policy == self.policy

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        if spec.group_policy != self.policy:
            return 0.0
        return self.sign * float(spec.group_hosts.count(host.host))


class ServerGroupSoftAffinityWeigher(_GroupMembersWeigher):
    """``soft-affinity``: prefer hosts already running members of the group."""

    name = "ServerGroupSoftAffinityWeigher"
    policy = "soft-affinity"
    sign = 1.0


class ServerGroupSoftAntiAffinityWeigher(_GroupMembersWeigher):
    """``soft-anti-affinity``: prefer hosts with fewer members of the group."""

    name = "ServerGroupSoftAntiAffinityWeigher"
    policy = "soft-anti-affinity"
    sign = -1.0


ALL_WEIGHERS: dict[str, type[BaseWeigher]] = {
    cls.name: cls for cls in (RAMWeigher, CPUWeigher, DiskWeigher,
                              ServerGroupSoftAffinityWeigher,
                              ServerGroupSoftAntiAffinityWeigher)}
DEFAULT_WEIGHERS = {"RAMWeigher": 1.0, "CPUWeigher": 0.0, "DiskWeigher": 0.0,
                    "ServerGroupSoftAffinityWeigher": 1.0,
                    "ServerGroupSoftAntiAffinityWeigher": 1.0}


def weigh_hosts(hosts: list[HostState], spec: RequestSpec,
                weighers: list[BaseWeigher]) -> list[tuple[float, HostState]]:
    """Hosts with their total weight, best first."""
    totals = [0.0] * len(hosts)
    for w in weighers:
        if w.multiplier == 0 or not w.applies(spec):
            continue
        raw = w.weigh_all(hosts, spec)
        lo, hi = min(raw), max(raw)
        if hi == lo:
            continue  # every host scores the same: this weigher adds 0 to each
        scale = w.multiplier / (hi - lo)
        totals = [t + (v - lo) * scale for t, v in zip(totals, raw, strict=True)]
    order = sorted(range(len(hosts)), key=totals.__getitem__, reverse=True)
    return [(totals[i], hosts[i]) for i in order]
