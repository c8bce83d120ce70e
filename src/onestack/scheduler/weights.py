"""Weighers: each scores hosts; scores are normalised to 0..1 across the candidates and
multiplied by the weigher's multiplier, and the host with the highest sum wins."""

from __future__ import annotations

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


class RAMWeigher(BaseWeigher):
    """Free RAM (positive multiplier spreads, negative stacks)."""

    name = "RAMWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_ram_mb

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        return [h.memory_mb * h.ram_allocation_ratio - h.memory_mb_used for h in hosts]


class CPUWeigher(BaseWeigher):
    """Free vCPUs."""

    name = "CPUWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_vcpus

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        return [h.vcpus * h.cpu_allocation_ratio - h.vcpus_used for h in hosts]


class DiskWeigher(BaseWeigher):
    """Free disk."""

    name = "DiskWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_disk_gb

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        return [h.local_gb * h.disk_allocation_ratio - h.local_gb_used for h in hosts]


class ServerGroupSoftAffinityWeigher(BaseWeigher):
    """``soft-affinity``: prefer hosts already running members of the group."""

    name = "ServerGroupSoftAffinityWeigher"

    def applies(self, spec: RequestSpec) -> bool:
        return spec.group_policy == "soft-affinity"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        if spec.group_policy != "soft-affinity":
            return 0.0
        return float(spec.group_hosts.count(host.host))


class ServerGroupSoftAntiAffinityWeigher(BaseWeigher):
    """``soft-anti-affinity``: prefer hosts with fewer members of the group."""

    name = "ServerGroupSoftAntiAffinityWeigher"

    def applies(self, spec: RequestSpec) -> bool:
        return spec.group_policy == "soft-anti-affinity"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        if spec.group_policy != "soft-anti-affinity":
            return 0.0
        return -float(spec.group_hosts.count(host.host))


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
