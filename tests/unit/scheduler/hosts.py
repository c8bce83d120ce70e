"""Host states and request specs for the scheduler's unit tests."""

from __future__ import annotations

from typing import Any

from onestack.scheduler.host_state import HostState, RequestSpec


def host(name: str, free_mb: int = 4096, **kw: Any) -> HostState:
    base = dict(node_id=1, host=name, nodename=name, vcpus=8, memory_mb=free_mb, local_gb=100,
                vcpus_used=0, memory_mb_used=0, local_gb_used=0, cpu_allocation_ratio=1.0,
                ram_allocation_ratio=1.0, disk_allocation_ratio=1.0, hypervisor_type="fake",
                enabled=True, up=True, availability_zone="nova")
    base.update(kw)
    return HostState(**base)


def spec(**kw: Any) -> RequestSpec:
    return RequestSpec(instance_uuid="u", vcpus=1, memory_mb=512, disk_gb=1, **kw)
