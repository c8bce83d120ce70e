"""Hosts of the compute service: services (with their liveness), compute nodes, availability
zones and aggregates (``HostStore``, part of ``ComputeManager``). Changes of what the
scheduler knows of hosts tell its listeners once committed."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, Conflict, NotFound
from onestack.common.ids import new_uuid
from onestack.common.timeutils import utcnow
from onestack.compute.store import ManagerState, looks_like_uuid
from onestack.db.compute import (
    Aggregate,
    AggregateHost,
    ComputeNode,
    Instance,
    ServerGroup,
    ServerGroupMember,
    Service,
)

T = TypeVar("T")
_NODE = ComputeNode.__table__

SERVICE_DOWN_TIME = 60.0
def _service_dict(r: Any) -> dict[str, Any]:
    return {"id": r.id, "uuid": r.uuid, "host": r.host, "binary": r.binary, "zone": r.zone,
            "disabled": r.disabled, "disabled_reason": r.disabled_reason,
            "forced_down": r.forced_down, "last_seen_up": r.last_seen_up,
            "updated_at": r.updated_at or r.created_at, "created_at": r.created_at}


def node_dict(n: Any, svc: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": n.id, "uuid": n.uuid, "host": n.host,
            "hypervisor_hostname": n.hypervisor_hostname,
            "hypervisor_type": n.hypervisor_type, "hypervisor_version": n.hypervisor_version,
            "host_ip": n.host_ip, "vcpus": n.vcpus, "memory_mb": n.memory_mb,
            "local_gb": n.local_gb, "vcpus_used": n.vcpus_used,
            "memory_mb_used": n.memory_mb_used, "local_gb_used": n.local_gb_used,
            "running_vms": n.running_vms, "cpu_allocation_ratio": n.cpu_allocation_ratio,
            "ram_allocation_ratio": n.ram_allocation_ratio,
            "disk_allocation_ratio": n.disk_allocation_ratio, "cpu_info": n.cpu_info or {},
            "capabilities": n.capabilities or {}, "service": svc}


def _changes_hosts(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator of manager methods that change what the scheduler knows of hosts
    (services, nodes, aggregates): listeners hear of it when the change committed."""

    @functools.wraps(fn)
    def wrapper(self: ManagerState, *args: Any, **kwargs: Any) -> T:
        result = fn(self, *args, **kwargs)
        for listener in self.host_listeners:
            listener()
        return result

    return wrapper


class HostStore(ManagerState):
    """Service, node and aggregate records (mixed into ``ComputeManager``)."""

    # ================================================================== hosts
    @_changes_hosts
    def register_host(self, host: str, resources: dict[str, Any],
                      binary: str = "nova-compute", zone: str = "nova") -> None:
        """Create or refresh a compute service record and its compute node (agent start)."""
        now = utcnow()
        with self.write() as s:
            svc = s.scalar(select(Service).where(Service.host == host,
                                                 Service.binary == binary))
            if svc is None:
                s.add(Service(uuid=new_uuid(), host=host, binary=binary,
                              topic="compute" if binary == "nova-compute" else binary,
                              zone=zone, disabled=False, forced_down=False, report_count=1,
                              last_seen_up=now, created_at=now, updated_at=now))
            else:
                svc.last_seen_up = now
                svc.updated_at = now
            if binary != "nova-compute":
                return
            hh = resources["hypervisor_hostname"]
            node = s.scalar(select(ComputeNode).where(ComputeNode.hypervisor_hostname == hh))
            if node is None:
                node = ComputeNode(uuid=new_uuid(), host=host, hypervisor_hostname=hh,
                                   created_at=now, vcpus_used=0, memory_mb_used=0,
                                   local_gb_used=0, running_vms=0,
                                   cpu_allocation_ratio=16.0, ram_allocation_ratio=1.5,
                                   disk_allocation_ratio=1.0)
                s.add(node)
            node.host = host
            node.vcpus = resources["vcpus"]
            node.memory_mb = resources["memory_mb"]
            node.local_gb = resources["local_gb"]
            node.hypervisor_type = resources.get("hypervisor_type", "fake")
            node.hypervisor_version = resources.get("hypervisor_version", 1000)
            node.host_ip = resources.get("host_ip", "127.0.0.1")
            node.cpu_info = resources.get("cpu_info") or {}
            node.capabilities = resources.get("capabilities") or {}
            node.updated_at = now
            s.flush()
            provider = (node.uuid, hh, node.cpu_allocation_ratio, node.ram_allocation_ratio,
                        node.disk_allocation_ratio)
        if self.placement is not None:
            uuid, name, cpu_r, ram_r, disk_r = provider
            self.placement.ensure_provider(uuid, name)
            self.placement.set_inventories(uuid, {
                "VCPU": {"total": resources["vcpus"], "allocation_ratio": cpu_r},
                "MEMORY_MB": {"total": resources["memory_mb"], "allocation_ratio": ram_r},
                "DISK_GB": {"total": resources["local_gb"], "allocation_ratio": disk_r}})

    def heartbeat(self, hosts: Sequence[str], binary: str = "nova-compute") -> None:
        """Report ``hosts``' services up (one statement for any number of fake hosts); like
        Nova's service reports it moves ``updated_at`` (the service list's "Updated At")."""
        now = utcnow()
        with self.write() as s:
            for i in range(0, len(hosts), 500):
                s.execute(update(Service).where(Service.binary == binary,
                                                Service.host.in_(list(hosts[i:i + 500])))
                          .values(last_seen_up=now, updated_at=now,
                                  report_count=Service.report_count + 1))

    def report_down(self, hosts: Sequence[str], binary: str = "nova-compute") -> None:
        """Forget when ``hosts``' services were last seen up, so they read down at once
        (a host held down by a fault rule, ``onestack.faults``)."""
        with self.write() as s:
            s.execute(update(Service).where(Service.binary == binary,
                                            Service.host.in_(list(hosts)))
                      .values(last_seen_up=None))

    def service_up(self, svc: dict[str, Any], now: dt.datetime | None = None) -> bool:
        if svc["forced_down"]:
            return False
        seen = svc["last_seen_up"]
        now = now or utcnow()
        return seen is not None and (now - seen).total_seconds() <= SERVICE_DOWN_TIME

    def list_services(self, host: str | None = None,
                      binary: str | None = None) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            q = select(Service).order_by(Service.id)
            if host:
                q = q.where(Service.host == host)
            if binary:
                q = q.where(Service.binary == binary)
            zones = self._host_zones(s)
            out = []
            for r in s.scalars(q):
                d = _service_dict(r)
                if r.binary == "nova-compute":
                    d["zone"] = zones.get(r.host, self.default_az)
                out.append(d)
            return out

    def _service_row(self, s: Session, service_id: str) -> Service:
        row = None
        if service_id.isdigit():
            row = s.get(Service, int(service_id))
        elif looks_like_uuid(service_id):
            row = s.scalar(select(Service).where(Service.uuid == service_id))
        if row is None:
            raise NotFound(f"Service {service_id} could not be found.")
        return row

    @_changes_hosts
    def update_service(self, service_id: str | None, host: str | None, binary: str | None,
                       values: dict[str, Any]) -> dict[str, Any]:
        with self.write() as s:
            if service_id is not None:
                row = self._service_row(s, service_id)
            else:
                row = s.scalar(select(Service).where(Service.host == host,
                                                     Service.binary == binary))
                if row is None:
                    raise NotFound(f"Service {binary} on host {host} could not be found.")
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            s.flush()
            return _service_dict(row)

    @_changes_hosts
    def delete_service(self, service_id: str) -> None:
        with self.write() as s:
            row = self._service_row(s, service_id)
            if row.binary == "nova-compute":
                busy = s.scalar(select(func.count()).select_from(Instance).where(
                    Instance.host == row.host, Instance.deleted.is_(False)))
                if busy:
                    raise Conflict("Unable to delete compute service that is hosting "
                                   "instances. Migrate or delete the instances first.")
                s.execute(delete(ComputeNode).where(ComputeNode.host == row.host))
                s.execute(delete(AggregateHost).where(AggregateHost.host == row.host))
            s.delete(row)

    def list_nodes(self) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            svcs = {r.host: _service_dict(r) for r in s.scalars(
                select(Service).where(Service.binary == "nova-compute"))}
            return [node_dict(n, svcs.get(n.host)) for n in s.scalars(
                select(ComputeNode).order_by(ComputeNode.id))]

    def host_states(self) -> list[dict[str, Any]]:
        """Everything the scheduler needs about every node, in two queries."""
        svc_t, agg_t, ah_t = Service.__table__, Aggregate.__table__, AggregateHost.__table__
        with self.db.connect(readonly=True) as c:
            # Core rows (same attribute names as the models): with 1,000 hosts, ORM
            # objects cost more than everything else the scheduler does.
            svcs = {r.host: _service_dict(r) for r in c.execute(
                select(svc_t).where(svc_t.c.binary == "nova-compute"))}
            aggs: dict[str, list[dict[str, Any]]] = {}
            for meta, host in c.execute(select(agg_t.c["metadata"], ah_t.c.host).join(
                    ah_t, ah_t.c.aggregate_id == agg_t.c.id)):
                aggs.setdefault(host, []).append(dict(meta or {}))
            out = []
            for n in c.execute(select(_NODE)):
                self._node_uuids[n.id] = n.uuid
                d = node_dict(n, svcs.get(n.host))
                d["aggregates"] = aggs.get(n.host, [])
                d["availability_zone"] = next(
                    (m["availability_zone"] for m in d["aggregates"]
                     if m.get("availability_zone")), self.default_az)
                out.append(d)
            return out

    def group_hosts(self, group_uuid: str, exclude: str | None = None) -> dict[str, Any]:
        """A server group's policy and the hosts its members run on."""
        with self.db.reader() as s:
            g = s.get(ServerGroup, group_uuid)
            if g is None:
                return {"policy": None, "hosts": [], "rules": {}}
            hosts = [h for h, u in s.execute(
                select(Instance.host, Instance.uuid).join(
                    ServerGroupMember, ServerGroupMember.instance_uuid == Instance.uuid).where(
                    ServerGroupMember.group_uuid == group_uuid, Instance.deleted.is_(False),
                    Instance.host.is_not(None))) if u != exclude]
            return {"policy": g.policy, "hosts": hosts, "rules": dict(g.rules or {})}

    # ================================================================== aggregates
    def _host_zones(self, s: Session) -> dict[str, str]:
        zones: dict[str, str] = {}
        for agg, host in s.execute(select(Aggregate, AggregateHost.host).join(
                AggregateHost, AggregateHost.aggregate_id == Aggregate.id)):
            az = (agg.meta or {}).get("availability_zone")
            if az:
                zones.setdefault(host, az)
        return zones

    def host_zone(self, host: str) -> str:
        with self.db.reader() as s:
            return self._host_zones(s).get(host, self.default_az)

    def availability_zones(self) -> list[dict[str, Any]]:
        """Zones with their hosts (``internal`` holds the non-compute services)."""
        svcs = self.list_services()
        now = utcnow()
        zones: dict[str, dict[str, Any]] = {}
        with self.db.reader() as s:
            for agg in s.scalars(select(Aggregate)):
                az = (agg.meta or {}).get("availability_zone")
                if az:
                    zones.setdefault(az, {"hosts": {}, "available": False})
        for svc in svcs:
            zone = svc["zone"]
            z = zones.setdefault(zone, {"hosts": {}, "available": False})
            up = self.service_up(svc, now)
            z["hosts"].setdefault(svc["host"], {})[svc["binary"]] = {
                "available": up and not svc["disabled"], "active": not svc["disabled"],
                "updated_at": svc["updated_at"]}
            if svc["binary"] == "nova-compute" and up and not svc["disabled"]:
                z["available"] = True
            if zone == "internal":
                z["available"] = True
        return [{"name": k, **v} for k, v in sorted(zones.items())]

    def _agg_dict(self, s: Session, a: Aggregate) -> dict[str, Any]:
        hosts = sorted(s.scalars(select(AggregateHost.host).where(
            AggregateHost.aggregate_id == a.id)))
        meta = dict(a.meta or {})
        return {"id": a.id, "uuid": a.uuid, "name": a.name, "hosts": hosts, "metadata": meta,
                "availability_zone": meta.get("availability_zone"), "created_at": a.created_at,
                "updated_at": a.updated_at, "deleted": False, "deleted_at": None}

    def list_aggregates(self) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            return [self._agg_dict(s, a) for a in s.scalars(select(Aggregate).order_by(
                Aggregate.id))]

    def _agg_row(self, s: Session, agg_id: str) -> Aggregate:
        row = s.get(Aggregate, int(agg_id)) if str(agg_id).isdigit() else None
        if row is None:
            raise NotFound(f"Aggregate {agg_id} could not be found.")
        return row

    def get_aggregate(self, agg_id: str) -> dict[str, Any]:
        with self.db.reader() as s:
            return self._agg_dict(s, self._agg_row(s, agg_id))

    def create_aggregate(self, name: str, az: str | None) -> dict[str, Any]:
        with self.write() as s:
            if s.scalar(select(Aggregate.id).where(Aggregate.name == name)) is not None:
                raise Conflict(f"Aggregate {name} already exists.")
            meta = {"availability_zone": az} if az else {}
            a = Aggregate(uuid=new_uuid(), name=name, meta=meta, created_at=utcnow())
            s.add(a)
            s.flush()
            return self._agg_dict(s, a)

    @_changes_hosts
    def update_aggregate(self, agg_id: str, name: str | None, az: str | None,
                         set_az: bool) -> dict[str, Any]:
        with self.write() as s:
            a = self._agg_row(s, agg_id)
            if name is not None and name != a.name:
                if s.scalar(select(Aggregate.id).where(Aggregate.name == name)) is not None:
                    raise Conflict(f"Aggregate {name} already exists.")
                a.name = name
            if set_az:
                meta = dict(a.meta or {})
                if az:
                    meta["availability_zone"] = az
                else:
                    meta.pop("availability_zone", None)
                a.meta = meta
            a.updated_at = utcnow()
            s.flush()
            return self._agg_dict(s, a)

    @_changes_hosts
    def delete_aggregate(self, agg_id: str) -> None:
        with self.write() as s:
            a = self._agg_row(s, agg_id)
            if s.scalar(select(func.count()).select_from(AggregateHost).where(
                    AggregateHost.aggregate_id == a.id)):
                raise BadRequest(f"Cannot remove aggregate {agg_id}: it still has hosts")
            s.delete(a)

    @_changes_hosts
    def aggregate_host(self, agg_id: str, host: str, add: bool) -> dict[str, Any]:
        with self.write() as s:
            a = self._agg_row(s, agg_id)
            if s.scalar(select(Service.id).where(Service.host == host,
                                                 Service.binary == "nova-compute")) is None:
                raise NotFound(f"Compute host {host} could not be found.")
            row = s.get(AggregateHost, (a.id, host))
            if add:
                if row is not None:
                    raise Conflict(f"Aggregate {agg_id} already has host {host}.")
                az = (a.meta or {}).get("availability_zone")
                if az:
                    other = self._host_zones(s).get(host)
                    if other and other != az:
                        raise Conflict(f"Cannot add host {host} to aggregate {agg_id}: the "
                                       f"host is already in availability zone {other}")
                s.add(AggregateHost(aggregate_id=a.id, host=host))
            else:
                if row is None:
                    raise NotFound(f"Cannot remove host {host} in aggregate {agg_id}")
                s.delete(row)
            a.updated_at = utcnow()
            s.flush()
            return self._agg_dict(s, a)

    @_changes_hosts
    def aggregate_metadata(self, agg_id: str, meta: dict[str, Any]) -> dict[str, Any]:
        with self.write() as s:
            a = self._agg_row(s, agg_id)
            cur = dict(a.meta or {})
            for k, v in meta.items():
                if v is None:
                    cur.pop(k, None)
                else:
                    cur[k] = str(v)
            a.meta = cur
            a.updated_at = utcnow()
            s.flush()
            return self._agg_dict(s, a)

    def node_by_name(self, hypervisor_hostname: str) -> dict[str, Any] | None:
        with self.db.reader() as s:
            n = s.scalar(select(ComputeNode).where(
                ComputeNode.hypervisor_hostname == hypervisor_hostname))
            return None if n is None else node_dict(n, None)
