"""The scheduler service: consumes the ``scheduler`` topic.

``build_instances`` (cast by the compute API) places new instances: it filters and weighs the
hosts, claims the best one atomically (a claim that no longer fits moves on to the next host,
so concurrent boots never oversubscribe) and casts ``build_and_run_instance`` to the chosen
host's agent. ``reschedule`` (cast by an agent whose build failed) tries again elsewhere, up to
``max_attempts``. ``select_destination`` (a call) picks and claims a host for a move.

The host view is cached: reloaded every ``refresh_interval`` seconds, at once after a change
to services or aggregates made through this process's manager, when a claim finds a host
full, and before answering "no valid host". Between reloads the scheduler accounts its own
claims, so the cache never oversubscribes (placement has the last word anyway).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from onestack.bus.base import Bus, NoConsumer
from onestack.common.timeutils import utcnow
from onestack.compute import states
from onestack.compute.boot_request import BootRequest
from onestack.compute.claims import place_instance
from onestack.compute.manager import ComputeManager
from onestack.compute.recovery import BootRecovery
from onestack.scheduler.filters import ALL_FILTERS, DEFAULT_FILTERS, BaseFilter
from onestack.scheduler.host_state import HostState, RequestSpec
from onestack.scheduler.weights import ALL_WEIGHERS, DEFAULT_WEIGHERS, BaseWeigher, weigh_hosts
from onestack.tasks import cancel_and_wait

LOG = logging.getLogger(__name__)
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


class NoValidHost(Exception):
    """No host passes the filters (or every candidate filled up while claiming)."""


class Scheduler:
    """Filter/weigh/claim pipeline (see the module docstring)."""

    def __init__(self, manager: ComputeManager, bus: Bus,
                 filters: list[str] | None = None,
                 weighers: dict[str, float] | None = None, max_attempts: int = 3,
                 host_subset_size: int = 1, refresh_interval: float = 10.0,
                 host: str = "localhost", heartbeat_interval: float = 10.0,
                 recovery: BootRecovery | None = None, recovery_interval: float = 60.0
                 ) -> None:
        self.m = manager
        #: Reschedules boots whose scheduling a crash lost (see ``compute/recovery.py``):
        #: ``recover()`` once the agents run, then every ``recovery_interval`` seconds.
        self.recovery = recovery
        self.recovery_interval = recovery_interval
        self.host = host
        self.heartbeat_interval = heartbeat_interval
        self._beat: asyncio.Task[None] | None = None
        self.bus = bus
        unknown = [f for f in (filters or []) if f not in ALL_FILTERS]
        if unknown:
            raise ValueError(f"unknown scheduler filters: {', '.join(unknown)}")
        self.filters: list[BaseFilter] = [ALL_FILTERS[n]() for n in (filters or DEFAULT_FILTERS)]
        wmap = dict(DEFAULT_WEIGHERS)
        wmap.update(weighers or {})
        self.weighers: list[BaseWeigher] = [ALL_WEIGHERS[n](mult) for n, mult in wmap.items()]
        self.max_attempts = max_attempts
        self.host_subset_size = max(1, host_subset_size)
        self.refresh_interval = refresh_interval
        self._hosts: list[HostState] = []
        self._loaded = 0.0
        self._lock = asyncio.Lock()
        manager.host_listeners.append(self.invalidate)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Register the scheduler's service records and consume the ``scheduler`` topic."""
        for binary in ("nova-scheduler", "nova-conductor"):
            await asyncio.to_thread(self.m.register_host, self.host, {}, binary, "internal")
        await self.bus.serve("scheduler", SchedulerEndpoint(self))
        self._beat = asyncio.create_task(self._heartbeat())

    async def stop(self) -> None:
        await cancel_and_wait(self._beat)

    async def recover(self) -> dict[str, int]:
        """The start-up recovery pass (call once this process's agents consume)."""
        if self.recovery is None:
            return {}
        try:
            return await self.recovery.run(on_start=True)
        except Exception:  # noqa: BLE001 - the periodic pass tries again; serve anyway
            LOG.exception("boot recovery failed")
            return {}

    async def _heartbeat(self) -> None:
        """The service reports and the periodic boot recovery, as two loops: a slow recovery
        pass must not delay the reports (the services would read down meanwhile)."""
        await asyncio.gather(self._reports(), self._recoveries())

    async def _reports(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                for binary in ("nova-scheduler", "nova-conductor"):
                    await asyncio.to_thread(self.m.heartbeat, [self.host], binary)
            except Exception:  # noqa: BLE001 - keep reporting
                LOG.exception("scheduler heartbeat failed")

    async def _recoveries(self) -> None:
        if self.recovery is None:
            return
        while True:
            await asyncio.sleep(self.recovery_interval)
            try:
                await self.recovery.run()
            except Exception:  # noqa: BLE001 - the next pass tries again
                LOG.exception("boot recovery failed")

    # ------------------------------------------------------------------ host states
    async def _host_states(self) -> list[HostState]:
        async with self._lock:
            if time.monotonic() - self._loaded > self.refresh_interval:
                nodes = await asyncio.to_thread(self.m.host_states)
                now = utcnow()
                self._hosts = [HostState.from_node(d, d["service"] is not None
                                                   and self.m.service_up(d["service"], now))
                               for d in nodes]
                self._loaded = time.monotonic()
            return self._hosts

    def invalidate(self) -> None:
        self._loaded = 0.0

    def candidates(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        """The hosts passing every filter, best first (filters that cannot reject anything
        for this request are not run: with 1,000 hosts that is most of the work)."""
        passing = hosts
        for f in self.filters:
            if f.applies(spec):
                before = len(passing)
                passing = f.filter_all(passing, spec)
                if not passing:
                    # Nova's "Filter X returned 0 hosts": why a boot found no valid host.
                    LOG.info("filter %s returned 0 of %d hosts (%d vCPU, %d MB, %d GB)",
                             type(f).__name__, before, spec.vcpus, spec.memory_mb,
                             spec.disk_gb)
                    return []
        if not passing:
            return []
        ranked = [h for _, h in weigh_hosts(passing, spec, self.weighers)]
        if self.host_subset_size > 1:
            head = ranked[:self.host_subset_size]
            random.shuffle(head)
            ranked = head + ranked[self.host_subset_size:]
        return ranked

    async def _spec(self, inst: dict[str, Any], request: BootRequest,
                    tried: list[str]) -> RequestSpec:
        flavor = inst["flavor"]
        az = request.availability_zone
        force_hosts = []
        force_nodes = []
        if az and ":" in az:
            az, _, rest = az.partition(":")
            host, _, node = rest.partition(":")
            force_hosts = [host] if host else []
            force_nodes = [node] if node else []
            az = az or None
        if request.host:
            force_hosts = [request.host]
        if request.hypervisor_hostname:
            force_nodes = [request.hypervisor_hostname]
        spec = RequestSpec(instance_uuid=inst["uuid"], vcpus=flavor["vcpus"],
                           memory_mb=flavor["memory_mb"],
                           disk_gb=flavor["root_gb"] + flavor.get("ephemeral_gb", 0)
                           + (flavor.get("swap", 0) + 1023) // 1024,
                           flavor_extra_specs=flavor.get("extra_specs") or {},
                           image_properties=dict(request.image_properties),
                           availability_zone=az, ignore_hosts=list(tried),
                           force_hosts=force_hosts, force_nodes=force_nodes,
                           hints=dict(request.hints))
        group = request.group
        if group:
            info = await asyncio.to_thread(self.m.group_hosts, group, inst["uuid"])
            spec.group_policy = info["policy"]
            spec.group_hosts = info["hosts"]
            spec.group_rules = info["rules"]
        for hint, key in (("same_host", "_same_hosts"), ("different_host", "_different_hosts")):
            wanted = spec.hints.get(hint)
            if wanted:
                ids = wanted if isinstance(wanted, list) else [wanted]
                hosts = []
                for u in ids:
                    try:
                        other = await asyncio.to_thread(self.m.get_instance, None, u)
                        if other["host"]:
                            hosts.append(other["host"])
                    except Exception:  # noqa: BLE001 - an unknown id constrains nothing
                        continue
                spec.hints[key] = hosts
        return spec

    # ------------------------------------------------------------------ bus endpoints
    async def build_instances(self, instance_uuids: list[str], request: dict[str, Any],
                              tried: list[str] | None = None, attempt: int = 1) -> None:
        """Place each instance and hand it to its host's agent (bus cast)."""
        for uuid in instance_uuids:
            try:
                await self._build_one(uuid, BootRequest.from_wire(request),
                                      list(tried or []), attempt)
            except Exception as exc:  # noqa: BLE001 - never leave an instance in BUILD
                LOG.exception("scheduling %s failed", uuid)
                await asyncio.to_thread(self._fail, uuid, f"{NO_VALID_HOST} ({exc})")

    async def reschedule(self, instance_uuid: str, request: dict[str, Any], tried: list[str],
                         attempt: int, error: str) -> None:
        """An agent failed to build: try another host (or give up with ERROR)."""
        if attempt >= self.max_attempts:
            await asyncio.to_thread(self._fail, instance_uuid,
                                    f"Exceeded maximum number of retries. Exhausted all hosts "
                                    f"available for retrying build failures for instance "
                                    f"{instance_uuid}. Last error: {error}")
            return
        # The agent put it back to scheduling and released its claim (``unplace``).
        self.invalidate()
        await self._build_one(instance_uuid, BootRequest.from_wire(request), list(tried),
                              attempt + 1, error)

    def _fail(self, uuid: str, message: str) -> None:
        self.m.finish_task(uuid, ["scheduling", "spawning"], event="schedule_instances",
                           error=message, vm_state=states.ERROR, task_state=None)
        try:
            placed = self.m.get_instance(None, uuid, True)["host"]
        except Exception:  # noqa: BLE001 - gone: its delete released everything
            return
        if not placed:
            # A claim a crash cut short (placement allocation made, the instance never
            # placed) would otherwise outlive the failed boot.
            self.m.release_placement(uuid)

    async def _build_one(self, uuid: str, request: BootRequest, tried: list[str],
                         attempt: int, last_error: str | None = None) -> None:
        base = request.instance
        if base is not None and attempt == 1:
            # The API sent what scheduling needs (saves a read); place_instance still checks
            # atomically that the instance is scheduling.
            inst = dict(base, uuid=uuid)
        else:
            try:
                inst = await asyncio.to_thread(self.m.get_instance, None, uuid)
            except Exception:  # noqa: BLE001 - deleted before we got to it
                return
            if inst["task_state"] != "scheduling":
                return
        spec = await self._spec(inst, request, tried)
        hosts = await self._host_states()
        ranked = self.candidates(hosts, spec)
        if not ranked and time.monotonic() - self._loaded > 0.05:
            # The cached view (up to ``refresh_interval`` old, kept current by our own
            # claims) misses resources freed since: look again before giving up.
            self.invalidate()
            ranked = self.candidates(await self._host_states(), spec)
        for host in ranked:
            result = await self.m.db.run(
                place_instance, self.m, uuid,
                {"node_id": host.node_id, "host": host.host, "nodename": host.nodename,
                 "availability_zone": host.availability_zone},
                spec.vcpus, spec.memory_mb, spec.disk_gb, inst.get("project_id"),
                inst.get("user_id"))
            if result == "gone":
                return
            if result == "full":
                self.invalidate()
                continue
            host.consume(spec.vcpus, spec.memory_mb, spec.disk_gb)
            try:
                await self.bus.cast(f"compute.{host.host}", "build_and_run_instance",
                                    instance_uuid=uuid, request=request.to_wire(),
                                    tried=[*tried, host.host], attempt=attempt)
            except NoConsumer:
                # A host whose service still looks up but has no agent (in-process bus):
                # give the claim back and try the next one.
                LOG.warning("no agent consumes compute.%s; skipping that host", host.host)
                host.up = False
                await asyncio.to_thread(self.m.release, uuid)
                await asyncio.to_thread(self.m.finish_task, uuid, "spawning",
                                        task_state="scheduling", host=None, node=None)
                continue
            return
        message = NO_VALID_HOST
        if last_error is not None:
            message = (f"Exceeded maximum number of retries. Exhausted all hosts available for "
                       f"retrying build failures for instance {uuid}. Last error: {last_error}")
        await asyncio.to_thread(self._fail, uuid, message)

    async def select_destination(self, instance_uuid: str, consumer: str,
                                 flavor: dict[str, Any], request: dict[str, Any],
                                 ignore_hosts: list[str]) -> dict[str, Any]:
        """Pick and claim (as ``consumer``) a host for a move; raises NoValidHost."""
        inst = await asyncio.to_thread(self.m.get_instance, None, instance_uuid)
        inst = dict(inst, flavor=flavor)
        spec = await self._spec(inst, BootRequest.from_wire(request), ignore_hosts)
        self.invalidate()
        hosts = await self._host_states()
        for host in self.candidates(hosts, spec):
            ok = await asyncio.to_thread(self.m.claim, consumer, host.node_id, spec.vcpus,
                                         spec.memory_mb, spec.disk_gb, inst["project_id"],
                                         inst["user_id"])
            if ok:
                host.consume(spec.vcpus, spec.memory_mb, spec.disk_gb)
                return {"host": host.host, "node": host.nodename, "node_id": host.node_id}
        raise NoValidHost(NO_VALID_HOST)


class SchedulerEndpoint:
    """What the ``scheduler`` topic exposes (only these methods are callable over the bus)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._s = scheduler

    async def build_instances(self, instance_uuids: list[str], request: dict[str, Any],
                              tried: list[str] | None = None, attempt: int = 1) -> None:
        await self._s.build_instances(instance_uuids, request, tried, attempt)

    async def reschedule(self, instance_uuid: str, request: dict[str, Any], tried: list[str],
                         attempt: int, error: str) -> None:
        await self._s.reschedule(instance_uuid, request, tried, attempt, error)

    async def select_destination(self, instance_uuid: str, consumer: str,
                                 flavor: dict[str, Any], request: dict[str, Any],
                                 ignore_hosts: list[str]) -> dict[str, Any]:
        return await self._s.select_destination(instance_uuid, consumer, flavor, request,
                                                ignore_hosts)
