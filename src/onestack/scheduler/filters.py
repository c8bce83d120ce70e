"""Host filters: each a small named class; a host passes when ``host_passes`` is True."""

from __future__ import annotations

from typing import ClassVar

from onestack.scheduler.host_state import HostState, RequestSpec


class BaseFilter:
    """A filter removes hosts that cannot take the request."""

    name: ClassVar[str] = ""

    def applies(self, spec: RequestSpec) -> bool:
        """Whether this filter can reject any host for ``spec``; a filter that cannot (no
        zone asked, no group, no hints…) is skipped for the whole request."""
        return True

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        raise NotImplementedError

    def filter_all(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        """The hosts that pass (filters on the hot path override this with a tighter loop)."""
        return [h for h in hosts if self.host_passes(h, spec)]


class ComputeFilter(BaseFilter):
    """The host's compute service is enabled and up."""

    name = "ComputeFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.enabled and host.up

    def filter_all(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        return [h for h in hosts if h.enabled and h.up]


class ResourceFilter(BaseFilter):
    """Enough free vCPUs, RAM and disk (what placement's candidates would return)."""

    name = "ResourceFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return (host.free_vcpus >= spec.vcpus and host.free_ram_mb >= spec.memory_mb
                and host.free_disk_gb >= spec.disk_gb)

    def filter_all(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        # host_passes inlined: this runs over every host of the cloud for every boot.
        cpu, ram, disk = spec.vcpus, spec.memory_mb, spec.disk_gb
        return [h for h in hosts
                if h.memory_mb * h.ram_allocation_ratio - h.memory_mb_used >= ram
                and h.vcpus * h.cpu_allocation_ratio - h.vcpus_used >= cpu
                and h.local_gb * h.disk_allocation_ratio - h.local_gb_used >= disk]


class AvailabilityZoneFilter(BaseFilter):
    """The host is in the requested availability zone (``zone:host[:node]`` too)."""

    name = "AvailabilityZoneFilter"

    def applies(self, spec: RequestSpec) -> bool:
        return bool(spec.availability_zone)

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        if not spec.availability_zone:
            return True
        return host.availability_zone == spec.availability_zone


class ImagePropertiesFilter(BaseFilter):
    """The image's ``hypervisor_type``/``hw_architecture`` match the host."""

    name = "ImagePropertiesFilter"

    def applies(self, spec: RequestSpec) -> bool:
        props = spec.image_properties
        return any(props.get(k) for k in ("hypervisor_type", "img_hv_type", "hw_architecture",
                                          "architecture"))

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        props = spec.image_properties
        want_type = props.get("hypervisor_type") or props.get("img_hv_type")
        if want_type and want_type not in (host.hypervisor_type, "qemu", "kvm") \
                and host.hypervisor_type != "fake":
            return False
        arch = props.get("hw_architecture") or props.get("architecture")
        have = host.cpu_info.get("arch")
        return not (arch and have and arch != have)


class ServerGroupAffinityFilter(BaseFilter):
    """``affinity`` groups: only the host(s) the group already runs on."""

    name = "ServerGroupAffinityFilter"

    def applies(self, spec: RequestSpec) -> bool:
        return spec.group_policy == "affinity" and bool(spec.group_hosts)

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        if spec.group_policy != "affinity" or not spec.group_hosts:
            return True
        return host.host in spec.group_hosts


class ServerGroupAntiAffinityFilter(BaseFilter):
    """``anti-affinity`` groups: at most ``max_server_per_host`` members per host."""

    name = "ServerGroupAntiAffinityFilter"

    def applies(self, spec: RequestSpec) -> bool:
        return spec.group_policy == "anti-affinity"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        if spec.group_policy != "anti-affinity":
            return True
        limit = int(spec.group_rules.get("max_server_per_host", 1))
        return spec.group_hosts.count(host.host) < limit


class AggregateInstanceExtraSpecsFilter(BaseFilter):
    """Scoped flavor extra specs (``aggregate_instance_extra_specs:k``) match the
    metadata of an aggregate the host is in."""

    name = "AggregateInstanceExtraSpecsFilter"
    PREFIX = "aggregate_instance_extra_specs:"

    def applies(self, spec: RequestSpec) -> bool:
        return any(k.startswith(self.PREFIX) for k in spec.flavor_extra_specs)

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        wanted = {k[len(self.PREFIX):]: v for k, v in spec.flavor_extra_specs.items()
                  if k.startswith(self.PREFIX)}
        if not wanted:
            return True
        for key, value in wanted.items():
            values = {str(a.get(key)) for a in host.aggregates if key in a}
            if not values:
                return False
            accepted = {v.strip() for v in str(value).removeprefix("<in>").split(",")}
            if not (values & accepted):
                return False
        return True


class IgnoreHostsFilter(BaseFilter):
    """Hosts already tried for this request (retries) or excluded by the caller."""

    name = "IgnoreHostsFilter"

    def applies(self, spec: RequestSpec) -> bool:
        return bool(spec.ignore_hosts or spec.force_hosts or spec.force_nodes)

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        if host.host in spec.ignore_hosts:
            return False
        if spec.force_hosts and host.host not in spec.force_hosts:
            return False
        return not (spec.force_nodes and host.nodename not in spec.force_nodes)


class _HintedHostsFilter(BaseFilter):
    """A scheduler hint naming instances, resolved into the spec's ``hint`` entry (the hosts
    running them): a host passes when it is among them (``among`` True) or when it is not."""

    hint: ClassVar[str]
    among: ClassVar[bool]

    def applies(self, spec: RequestSpec) -> bool:
        return spec.hints.get(self.hint) is not None

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        hosts = spec.hints.get(self.hint)
        return hosts is None or (host.host in hosts) == self.among


class SameHostFilter(_HintedHostsFilter):
    """Scheduler hint ``same_host``: only hosts running the given instances."""

    name = "SameHostFilter"
    hint = "_same_hosts"
    among = True


class DifferentHostFilter(_HintedHostsFilter):
    """Scheduler hint ``different_host``: avoid hosts running the given instances."""

    name = "DifferentHostFilter"
    hint = "_different_hosts"
    among = False


ALL_FILTERS: dict[str, type[BaseFilter]] = {
    cls.name: cls for cls in (ComputeFilter, ResourceFilter, AvailabilityZoneFilter,
                              ImagePropertiesFilter, ServerGroupAffinityFilter,
                              ServerGroupAntiAffinityFilter,
                              AggregateInstanceExtraSpecsFilter, IgnoreHostsFilter,
                              SameHostFilter, DifferentHostFilter)}
DEFAULT_FILTERS = ("IgnoreHostsFilter", "ComputeFilter", "ResourceFilter",
                   "AvailabilityZoneFilter", "ImagePropertiesFilter",
                   "ServerGroupAffinityFilter", "ServerGroupAntiAffinityFilter",
                   "AggregateInstanceExtraSpecsFilter", "SameHostFilter",
                   "DifferentHostFilter")
