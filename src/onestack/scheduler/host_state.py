"""What the scheduler knows about one host, and the request it places."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class HostState:
    """A compute node as the filters and weighers see it (free resources with ratios)."""

    node_id: int
    host: str
    nodename: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    hypervisor_type: str
    enabled: bool
    up: bool
    availability_zone: str
    aggregates: list[dict[str, Any]] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)
    cpu_info: dict[str, Any] = field(default_factory=dict)
    running_vms: int = 0

    @property
    def free_ram_mb(self) -> float:
        return self.memory_mb * self.ram_allocation_ratio - self.memory_mb_used

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio - self.vcpus_used

    @property
    def free_disk_gb(self) -> float:
        return self.local_gb * self.disk_allocation_ratio - self.local_gb_used

    def consume(self, vcpus: int, memory_mb: int, disk_gb: int) -> None:
        """Account a successful claim locally (until the next refresh)."""
        self.vcpus_used += vcpus
        self.memory_mb_used += memory_mb
        self.local_gb_used += disk_gb
        self.running_vms += 1

    @classmethod
    def from_node(cls, d: dict[str, Any], up: bool) -> HostState:
        svc = d.get("service") or {}
        return cls(node_id=d["id"], host=d["host"], nodename=d["hypervisor_hostname"],
                   vcpus=d["vcpus"], memory_mb=d["memory_mb"], local_gb=d["local_gb"],
                   vcpus_used=d["vcpus_used"], memory_mb_used=d["memory_mb_used"],
                   local_gb_used=d["local_gb_used"],
                   cpu_allocation_ratio=d["cpu_allocation_ratio"],
                   ram_allocation_ratio=d["ram_allocation_ratio"],
                   disk_allocation_ratio=d["disk_allocation_ratio"],
                   hypervisor_type=d["hypervisor_type"], enabled=not svc.get("disabled", False),
                   up=up, availability_zone=d.get("availability_zone", "nova"),
                   aggregates=d.get("aggregates", []), capabilities=d.get("capabilities", {}),
                   cpu_info=d.get("cpu_info", {}), running_vms=d.get("running_vms", 0))


@dataclass
class RequestSpec:
    """One placement request: what to place and the constraints on where."""

    instance_uuid: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    flavor_extra_specs: dict[str, str] = field(default_factory=dict)
    image_properties: dict[str, Any] = field(default_factory=dict)
    availability_zone: str | None = None
    group_policy: str | None = None
    group_hosts: list[str] = field(default_factory=list)
    group_rules: dict[str, Any] = field(default_factory=dict)
    ignore_hosts: list[str] = field(default_factory=list)
    force_hosts: list[str] = field(default_factory=list)
    force_nodes: list[str] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)
