"""Tags, quotas, IP availability, agents and the default networks of a first start."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import NotFound
from onestack.common.timeutils import utcnow
from onestack.db import network as t
from onestack.network import ipam, views
from onestack.network import schemas as sc
from onestack.network.base import ManagerBase
from onestack.network.common import DEFAULT_QUOTAS, LOG, TAGGABLE, not_found


class AdminMixin(ManagerBase):
    """Tags, quotas, IP availability, agents and the default networks of a first start."""

    # ================================================================== tags
    def _taggable(self, s: Session, ctx: RequestContext, resource: str, rid: str,
                  action: str) -> Any:
        """The tagged row the caller may see, then ``<action>_<resource>:tags`` (403)."""
        model = TAGGABLE.get(resource)
        if model is None:
            raise NotFound(f"Resource {resource} does not support tags.", kind="NotFound")
        if model is t.Network:
            row: Any = self._visible_net(s, ctx, rid)
        elif model is t.Subnet:
            row = self._visible_subnet(s, ctx, rid)
        elif model is t.Port:
            row = self._visible_port(s, ctx, rid)
        elif model is t.SubnetPool:
            row = s.get(t.SubnetPool, rid)
            if row is None or not self._pool_visible(ctx, row):
                raise not_found(t.SubnetPool, rid)
        else:
            row = self._owned(s, ctx, model, rid)
        name, target = self._row_target(s, ctx, row)
        rule = f"{action}_{name}:tags"
        if not self.authz.allowed(ctx, rule, target):
            raise self.authz.denied(rule)
        return row

    def get_tags(self, ctx: RequestContext, resource: str, rid: str) -> list[str]:
        def run(s: Session) -> list[str]:
            self._taggable(s, ctx, resource, rid, "get")
            return self._tags(s, [rid])[rid]
        return self._read(run)

    def has_tag(self, ctx: RequestContext, resource: str, rid: str, tag: str) -> bool:
        return tag in self.get_tags(ctx, resource, rid)

    def set_tags(self, ctx: RequestContext, resource: str, rid: str, tags: Any,
                 revision: int | None = None) -> list[str]:
        """Replace every tag of a resource."""
        def run(s: Session) -> list[str]:
            row = self._taggable(s, ctx, resource, rid, "update")
            self._check_revision(row, revision)
            clean = self._valid_tags(tags)
            s.execute(delete(t.Tag).where(t.Tag.resource_id == rid))
            s.flush()
            self._set_tags(s, rid, clean)
            self._touch(row)
            return sorted(set(clean))
        return self._tx(run)

    def add_tag(self, ctx: RequestContext, resource: str, rid: str, tag: str,
                revision: int | None = None) -> None:
        def run(s: Session) -> None:
            row = self._taggable(s, ctx, resource, rid, "update")
            self._check_revision(row, revision)
            self._valid_tags([tag])
            if s.get(t.Tag, (rid, tag)) is None:
                s.add(t.Tag(resource_id=rid, tag=tag))
                self._touch(row)
        self._tx(run)

    def delete_tag(self, ctx: RequestContext, resource: str, rid: str, tag: str | None,
                   revision: int | None = None) -> None:
        def run(s: Session) -> None:
            row = self._taggable(s, ctx, resource, rid, "delete")
            self._check_revision(row, revision)
            if tag is None:
                s.execute(delete(t.Tag).where(t.Tag.resource_id == rid))
            else:
                existing = s.get(t.Tag, (rid, tag))
                if existing is None:
                    raise NotFound(f"Tag {tag} could not be found for resource {rid}.",
                                   kind="TagNotFound")
                s.delete(existing)
            self._touch(row)
        self._tx(run)

    # ================================================================== quotas
    def _quota_target(self, ctx: RequestContext, project_id: str) -> None:
        """Another project's quota needs ``get_quota`` (Neutron checks it against the
        caller's own project: admins and project managers)."""
        if project_id != ctx.project_id:
            self._quota_rule(ctx, "get_quota")

    def _quota_rule(self, ctx: RequestContext, action: str) -> None:
        self._enforce(ctx, action, {"project_id": ctx.project_id or ""})

    def get_quota(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        self._quota_target(ctx, project_id)
        return self._read(self._quota_limits, project_id)

    def default_quota(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        """The defaults every project starts with (another project's need ``get_quota``)."""
        self._quota_target(ctx, project_id)
        return dict(DEFAULT_QUOTAS)

    def quota_details(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        self._quota_target(ctx, project_id)

        def run(s: Session) -> dict[str, Any]:
            limits = self._quota_limits(s, project_id)
            return {k: {"limit": v, "used": self._usage(s, project_id, k), "reserved": 0}
                    for k, v in limits.items()}
        return self._read(run)

    def list_quotas(self, ctx: RequestContext) -> list[dict[str, Any]]:
        self._quota_rule(ctx, "get_quota")

        def run(s: Session) -> list[dict[str, Any]]:
            projects = sorted(set(s.execute(select(t.Quota.project_id)).scalars()))
            out = []
            for p in projects:
                doc: dict[str, Any] = dict(self._quota_limits(s, p))
                doc.update(project_id=p, tenant_id=p)
                out.append(doc)
            return out
        return self._read(run)

    def update_quota(self, ctx: RequestContext, project_id: str, body: Any) -> dict[str, int]:
        self._quota_rule(ctx, "update_quota")
        if not isinstance(body, dict):
            raise sc.bad("Invalid input for quota: a 'quota' object is required.")
        changes = {}
        for key, value in body.items():
            if key in ("project_id", "tenant_id", "force", "check_limit"):
                continue
            if key not in DEFAULT_QUOTAS:
                raise sc.bad(f"Unrecognized attribute(s) '{key}'")
            changes[key] = sc.to_int(value, key, minimum=-1)

        def run(s: Session) -> dict[str, int]:
            for key, limit in changes.items():
                row = s.get(t.Quota, (project_id, key))
                if row is None:
                    s.add(t.Quota(project_id=project_id, resource=key, limit=limit))
                else:
                    row.limit = limit
            s.flush()
            return self._quota_limits(s, project_id)
        return self._tx(run)

    def delete_quota(self, ctx: RequestContext, project_id: str) -> None:
        self._quota_rule(ctx, "delete_quota")

        def run(s: Session) -> None:
            s.execute(delete(t.Quota).where(t.Quota.project_id == project_id))
        self._tx(run)

    # ================================================================== availability
    def ip_availabilities(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Per-network (and per-subnet) totals of pool addresses and used addresses."""
        def run(s: Session) -> list[dict[str, Any]]:
            nets = list(s.execute(select(t.Network).order_by(t.Network.created_at)).scalars())
            subs: dict[str, list[t.Subnet]] = defaultdict(list)
            for sub in s.execute(select(t.Subnet).order_by(t.Subnet.created_at)).scalars():
                subs[sub.network_id].append(sub)
            used = dict(s.execute(select(t.IPAllocation.subnet_id, func.count())
                                  .group_by(t.IPAllocation.subnet_id)).all())
            out = []
            for net in nets:
                items = []
                for sub in subs[net.id]:
                    items.append({"subnet_id": sub.id, "subnet_name": sub.name,
                                  "cidr": sub.cidr, "ip_version": sub.ip_version,
                                  "total_ips": ipam.pool_size(sub.allocation_pools or []),
                                  "used_ips": int(used.get(sub.id, 0))})
                out.append({"network_id": net.id, "network_name": net.name,
                            "tenant_id": net.project_id, "project_id": net.project_id,
                            "total_ips": sum(i["total_ips"] for i in items),
                            "used_ips": sum(i["used_ips"] for i in items),
                            "subnet_ip_availability": items})
            return out
        return self._read(run)

    # ================================================================== agents
    def ensure_agents(self) -> None:
        """Register the agents this host's data plane runs (none for the noop driver); each
        is listed alive only while the driver's heartbeats arrive. This host's rows of
        agents the driver does not run (an earlier release listed them for the noop driver,
        or the driver changed) are removed."""
        def run(s: Session) -> None:
            specs = self.driver.agents()
            binaries = {spec["binary"] for spec in specs}
            for row in s.execute(select(t.Agent).where(t.Agent.host == self.host)).scalars():
                if row.binary not in binaries:
                    s.delete(row)
            for spec in specs:
                aid = str(uuid.uuid5(uuid.NAMESPACE_URL,
                                     f"onestack-agent:{self.host}:{spec['binary']}"))
                row = s.get(t.Agent, aid)
                now = utcnow()
                if row is None:
                    s.add(t.Agent(id=aid, agent_type=spec["agent_type"],
                                  binary=spec["binary"], host=self.host,
                                  topic=spec.get("topic", ""),
                                  availability_zone="nova" if spec["agent_type"] in (
                                      "L3 agent", "DHCP agent") else None,
                                  configurations=spec.get("configurations", {}),
                                  created_at=now, started_at=now))
                else:
                    row.started_at = now
        self._tx(run)

    def _agent_view(self, row: t.Agent) -> dict[str, Any]:
        beat = row.heartbeat_at
        return views.agent(row, self.agent_alive(row),  # type: ignore[attr-defined]
                           str(beat.replace(microsecond=0)) if beat else None)

    def list_agents(self, ctx: RequestContext) -> list[dict[str, Any]]:
        if not self.authz.allowed(ctx, "get_agent", {}):
            return []
        return self._read(lambda s: [self._agent_view(a) for a in s.execute(
            select(t.Agent).order_by(t.Agent.agent_type)).scalars()])

    def get_agent(self, ctx: RequestContext, aid: str) -> dict[str, Any]:
        # Neutron hides what its policy does not let the caller read: 404.
        self._change(ctx, "get_agent", "agent", {"id": aid}, t.Agent)
        return self._read(lambda s: self._agent_view(self._get(s, t.Agent, aid)))

    def update_agent(self, ctx: RequestContext, aid: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        self._change(ctx, "update_agent", "agent", {"id": aid}, t.Agent)
        sc.check_keys(body, ("admin_state_up", "description"), "agent")

        def run(s: Session) -> dict[str, Any]:
            row = self._get(s, t.Agent, aid)
            if "admin_state_up" in body:
                row.admin_state_up = sc.to_bool(body["admin_state_up"], "admin_state_up")
            if "description" in body:
                row.description = sc.to_str(body["description"] or "", "description") or ""
            s.flush()
            return self._agent_view(row)
        return self._tx(run)

    def delete_agent(self, ctx: RequestContext, aid: str) -> None:
        self._change(ctx, "delete_agent", "agent", {"id": aid}, t.Agent)
        self._tx(lambda s: s.delete(self._get(s, t.Agent, aid)))

    # ================================================================== first start
    def ensure_defaults(self, admin_project: str, demo_project: str | None) -> None:
        """DevStack's defaults, once: external flat ``public`` (+ ``public-subnet``) and, for
        the demo project, ``private``/``private-subnet`` behind ``router1``."""
        self.ensure_agents()
        if not self.settings.network_create_defaults:
            return
        with self.db.reader() as s:
            exists = s.execute(select(t.Network.id).where(
                t.Network.name == "public", t.Network.project_id == admin_project)).first()
        if exists:
            return
        admin = RequestContext.admin()
        admin.project_id = admin_project
        st = self.settings
        public = self.create_networks(admin, [{
            "name": "public", "router:external": True, "shared": False,
            "provider:network_type": "flat",
            "provider:physical_network": st.network_public_physical_network,
            "project_id": admin_project}])[0]
        self.create_subnets(admin, [{
            "name": "public-subnet", "network_id": public["id"], "ip_version": 4,
            "cidr": st.network_public_subnet_range, "gateway_ip": st.network_public_gateway,
            "enable_dhcp": False, "project_id": admin_project}])
        if not demo_project:
            return
        private = self.create_networks(admin, [{"name": "private",
                                                "project_id": demo_project}])[0]
        subnet = self.create_subnets(admin, [{
            "name": "private-subnet", "network_id": private["id"], "ip_version": 4,
            "cidr": st.network_private_subnet_range, "project_id": demo_project}])[0]
        router = self.create_routers(admin, [{
            "name": "router1", "project_id": demo_project,
            "external_gateway_info": {"network_id": public["id"]}}])[0]
        self.add_router_interface(admin, router["id"], {"subnet_id": subnet["id"]})
        self.ensure_default_security_group(demo_project)
        LOG.info("created the default networks public, private and router1")
