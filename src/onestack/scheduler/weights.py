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

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        raise NotImplementedError


class RAMWeigher(BaseWeigher):
    """Free RAM (positive multiplier spreads, negative stacks)."""

    name = "RAMWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_ram_mb


class CPUWeigher(BaseWeigher):
    """Free vCPUs."""

    name = "CPUWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_vcpus


class DiskWeigher(BaseWeigher):
    """Free disk."""

    name = "DiskWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_disk_gb


class ServerGroupSoftAffinityWeigher(BaseWeigher):
    """``soft-affinity``: prefer hosts already running members of the group."""

    name = "ServerGroupSoftAffinityWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        if spec.group_policy != "soft-affinity":
            return 0.0
        return float(spec.group_hosts.count(host.host))


class ServerGroupSoftAntiAffinityWeigher(BaseWeigher):
    """``soft-anti-affinity``: prefer hosts with fewer members of the group."""

    name = "ServerGroupSoftAntiAffinityWeigher"

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
        if w.multiplier == 0:
            continue
        raw = [w.weigh(h, spec) for h in hosts]
        lo, hi = min(raw), max(raw)
        span = hi - lo
        for i, v in enumerate(raw):
            norm = 0.0 if span == 0 else (v - lo) / span
            totals[i] += norm * w.multiplier
    ranked = sorted(zip(totals, range(len(hosts)), strict=True), key=lambda t: -t[0])
    return [(t, hosts[i]) for t, i in ranked]
