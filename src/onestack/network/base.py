"""Shared plumbing of the network manager: transactions, visibility, views, quota checks and tags on
create."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import Forbidden
from onestack.common.errors import PreconditionFailed as _Precondition
from onestack.common.timeutils import utcnow
from onestack.db import network as t
from onestack.network import schemas as sc
from onestack.network import views
from onestack.network.authz import network_target, on_network_target, owned_target
from onestack.network.common import _QUOTA_MODELS, DEFAULT_QUOTAS, T, _Retry, conflict, not_found
from onestack.network.store import _Q_QUOTA

#: Rows a project owns outright (listed by ``project_id`` alone).
_Owned = TypeVar("_Owned", t.Router, t.FloatingIP, t.SecurityGroup)
#: Rows a (bulk) create makes.
_Created = TypeVar("_Created", t.Network, t.Subnet, t.SubnetPool, t.Router, t.FloatingIP,
                   t.SecurityGroup, t.AddressScope)


class ManagerBase:
    """Plumbing every resource module uses: ``_tx``, ``_read``, policy checks, visibility, views,
    quotas and tags."""

    # ================================================================== plumbing
    def _tx(self, fn: Callable[..., T], *args: Any, attempts: int = 12) -> T:
        """Run ``fn(session, *args)`` in a transaction, retrying on write races."""
        for attempt in range(attempts):
            try:
                with self.db.transaction() as s:
                    return fn(s, *args)
            except (IntegrityError, _Retry) as exc:
                self._default_sgs.clear()
                if attempt == attempts - 1:
                    raise conflict("A concurrent request changed the same resources; "
                                   "please retry.", "Conflict") from exc
            except OperationalError as exc:
                text = str(exc).lower()
                if attempt == attempts - 1 or not any(
                        w in text for w in ("deadlock", "lock wait", "could not serialize",
                                            "database is locked")):
                    raise
        raise AssertionError("unreachable")

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        with self.db.reader() as s:
            return fn(s, *args)

    def _create_all(self, ctx: RequestContext, bodies: list[dict[str, Any]],
                    create: Callable[[Session, RequestContext, dict[str, Any]], _Created],
                    render: Callable[[Session, list[_Created]], list[dict[str, Any]]]
                    ) -> list[dict[str, Any]]:
        """Neutron's (bulk) create: ``create`` makes each body's row and the body's ``tags``
        (if any) go on it, all in one transaction (all or nothing); the rows are flushed, then
        ``render`` gives their documents."""
        def run(s: Session) -> list[dict[str, Any]]:
            rows = []
            for body in bodies:
                row = create(s, ctx, body)
                self._set_tags(s, row.id, body.get("tags"))
                rows.append(row)
            s.flush()
            return render(s, rows)
        return self._tx(run)

    @staticmethod
    def _project_rows(s: Session, ctx: RequestContext, model: type[_Owned],
                      *order: Any) -> list[_Owned]:
        """The ``model`` rows a list shows, in ``order``: all of them to an admin, else the
        caller's project's."""
        stmt = select(model).order_by(*order)
        if not ctx.is_admin:
            stmt = stmt.where(model.project_id == (ctx.project_id or ""))
        return list(s.execute(stmt).scalars())

    @staticmethod
    def _admin(ctx: RequestContext) -> bool:
        return ctx.is_admin

    def _enforce(self, ctx: RequestContext, action: str, target: dict[str, Any]) -> None:
        self.policy.enforce(action, ctx.policy_creds(), target)

    def _owner_for_create(self, ctx: RequestContext, body: dict[str, Any],
                          resource: str | None = None) -> str:
        """The new resource's project; with ``resource``, ``create_<resource>`` checked."""
        project = sc.project_of(body, ctx.project_id)
        if project is None:
            raise sc.bad("'project_id' is required (the token has no project scope).")
        if resource is not None:
            self.authz.create(ctx, resource, {"project_id": project, "tenant_id": project})
        if project != ctx.project_id and not ctx.is_admin:
            raise Forbidden("You are not authorized to create a resource for another "
                            "project.", kind="PolicyNotAuthorized")
        return project

    def _on_network_create(self, ctx: RequestContext, resource: str, project: str,
                           net: t.Network) -> None:
        """A port or subnet on ``net``: another project's unshared network is not found
        (Neutron hides it), then ``create_<resource>`` decides (network owner, shared)."""
        if not ctx.is_admin and not net.shared and net.project_id != project:
            raise not_found(t.Network, net.id)
        self.authz.create(ctx, resource, {
            "project_id": project, "tenant_id": project, "network_id": net.id,
            "network:project_id": net.project_id, "shared": bool(net.shared),
            "router:external": bool(net.external)})

    def _change(self, ctx: RequestContext, action: str, resource: str, target: dict[str, Any],
                model: Any) -> None:
        """``action`` on a found row: 403 when refused but readable, else 404."""
        self.authz.change(ctx, action, resource, target, not_found(model, target["id"]))

    def _readable(self, s: Session, ctx: RequestContext, row: Any) -> Any:
        """``row`` once ``get_<resource>`` lets the caller read it (404 otherwise, as
        Neutron's show). The owner's own row passes without reading its network."""
        name, target = self._row_target(s, ctx, row, with_network=False)
        if not self.authz.allowed(ctx, f"get_{name}", target):
            if isinstance(row, t.Subnet | t.Port):
                name, target = self._row_target(s, ctx, row)
            if not self.authz.allowed(ctx, f"get_{name}", target):
                raise not_found(type(row), row.id)
        return row

    def _row_target(self, s: Session, ctx: RequestContext, row: Any,
                    with_network: bool = True) -> tuple[str, dict[str, Any]]:
        """The policy resource name and target of a row of any taggable model. A port's or
        subnet's network is read for every caller but an admin (an admin passes every rule;
        for the others it is often in the session already, loaded by the visibility
        check)."""
        if isinstance(row, t.Network):
            return "network", network_target(row)
        if isinstance(row, t.Subnet | t.Port):
            name = "subnet" if isinstance(row, t.Subnet) else "port"
            net = None if ctx.is_admin or not with_network else s.get(t.Network,
                                                                       row.network_id)
            return name, on_network_target(row, net)
        if isinstance(row, t.SubnetPool):
            return "subnetpool", owned_target(row, shared=bool(row.shared))
        if isinstance(row, t.SecurityGroup):
            return "security_group", owned_target(row, shared=False)
        return {t.Router: "router", t.FloatingIP: "floatingip"}[type(row)], owned_target(row)

    @staticmethod
    def _check_revision(row: Any, revision: int | None) -> None:
        if revision is not None and row.revision_number != revision:
            raise _Precondition(
                f"Constrained to revision {revision} but the resource is at revision "
                f"{row.revision_number}.", kind="RevisionNumberConstraintFailed")

    @staticmethod
    def _touch(row: Any) -> None:
        row.revision_number = (row.revision_number or 0) + 1
        row.updated_at = utcnow()

    def _updated(self, s: Session, row: Any, body: dict[str, Any]) -> None:
        """An update's common end: the tags ``body`` gives replace the row's, its revision
        goes up, and the change is flushed."""
        if "tags" in body:
            self._replace_tags(s, row.id, body["tags"])
        self._touch(row)
        s.flush()

    @staticmethod
    def _stamp(row: Any) -> Any:
        now = utcnow()
        row.created_at = now
        row.updated_at = now
        row.revision_number = 0
        return row

    def _get(self, s: Session, model: Any, rid: str, lock: bool = False) -> Any:
        stmt = select(model).where(model.id == rid)
        if lock:
            stmt = stmt.with_for_update()
        row = s.execute(stmt).scalar_one_or_none()
        if row is None:
            raise not_found(model, rid)
        return row

    # ---- visibility
    def _net_visible(self, ctx: RequestContext, net: t.Network) -> bool:
        return (ctx.is_admin or net.project_id == ctx.project_id or net.shared
                or net.external)

    def _visible_net(self, s: Session, ctx: RequestContext, net_id: str) -> t.Network:
        net = s.get(t.Network, net_id)
        if net is None or not self._net_visible(ctx, net):
            raise not_found(t.Network, net_id)
        return net

    def _owned(self, s: Session, ctx: RequestContext, model: Any, rid: str,
               lock: bool = False) -> Any:
        row = self._get(s, model, rid, lock)
        if not ctx.is_admin and row.project_id != ctx.project_id:
            raise not_found(model, rid)
        return row

    @staticmethod
    def _allocations(s: Session, port_id: str) -> list[t.IPAllocation]:
        """The IP allocations of port ``port_id``."""
        return list(s.execute(select(t.IPAllocation).where(
            t.IPAllocation.port_id == port_id)).scalars())

    @staticmethod
    def _set_text(row: object, body: dict[str, Any], create: bool = False) -> None:
        """Set ``row``'s name and description from ``body``: both on create (empty when
        absent), on update only those the body gives."""
        for key in ("name", "description"):
            if create or key in body:
                setattr(row, key, sc.to_str(body.get(key, ""), key) or "")

    @staticmethod
    def _seen_on_network(s: Session, ctx: RequestContext, row: t.Subnet | t.Port,
                         shared: bool) -> bool:
        """Whether ``ctx`` sees a row that lives on a network: an administrator, the row's
        project or the network's project does (and, with ``shared``, anyone on a shared
        network)."""
        if ctx.is_admin or row.project_id == ctx.project_id:
            return True
        net = s.get(t.Network, row.network_id)
        return net is not None and (net.project_id == ctx.project_id
                                    or (shared and net.shared))

    def _visible_subnet(self, s: Session, ctx: RequestContext, sid: str) -> t.Subnet:
        sub = s.get(t.Subnet, sid)
        if sub is None or not self._seen_on_network(s, ctx, sub, shared=True):
            raise not_found(t.Subnet, sid)
        return sub

    def _visible_port(self, s: Session, ctx: RequestContext, pid: str) -> t.Port:
        port = s.get(t.Port, pid)
        if port is None or not self._seen_on_network(s, ctx, port, shared=False):
            raise not_found(t.Port, pid)
        return port

    # ---- bulk loaders for views
    @staticmethod
    def _chunks(ids: list[str], size: int = 500) -> Iterable[list[str]]:
        for i in range(0, len(ids), size):
            yield ids[i:i + size]

    def _tags(self, s: Session, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for chunk in self._chunks(ids):
            for rid, tag in s.execute(select(t.Tag.resource_id, t.Tag.tag)
                                      .where(t.Tag.resource_id.in_(chunk))):
                out[rid].append(tag)
        for v in out.values():
            v.sort()
        return out

    def _fixed_ips(self, s: Session, port_ids: list[str]) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = defaultdict(list)
        for chunk in self._chunks(port_ids):
            rows = s.execute(select(t.IPAllocation).where(t.IPAllocation.port_id.in_(chunk)))
            for (a,) in rows:
                out[a.port_id].append({"subnet_id": a.subnet_id, "ip_address": a.ip_address})
        for v in out.values():
            v.sort(key=lambda x: (x["subnet_id"], ipaddress.ip_address(x["ip_address"])))
        return out

    def _port_groups(self, s: Session, port_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for chunk in self._chunks(port_ids):
            rows = s.execute(select(t.PortSecurityGroup.port_id,
                                    t.PortSecurityGroup.security_group_id)
                             .where(t.PortSecurityGroup.port_id.in_(chunk)))
            for pid, gid in rows:
                out[pid].append(gid)
        return out

    # ---- views
    def _network_views(self, s: Session, ctx: RequestContext,
                       rows: list[t.Network]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        subnets: dict[str, list[str]] = defaultdict(list)
        for chunk in self._chunks(ids):
            for sid, nid in s.execute(select(t.Subnet.id, t.Subnet.network_id)
                                      .where(t.Subnet.network_id.in_(chunk))
                                      .order_by(t.Subnet.created_at, t.Subnet.id)):
                subnets[nid].append(sid)
        tags = self._tags(s, ids)
        scopes: dict[str, dict[int, str | None]] = {}
        if any(subnets.values()):
            for chunk in self._chunks(ids):
                scopes.update(self._network_scopes(s, chunk))
        return [views.network(r, subnets[r.id], tags[r.id], ctx.is_admin, scopes.get(r.id))
                for r in rows]

    def _subnet_views(self, s: Session, rows: list[t.Subnet]) -> list[dict[str, Any]]:
        tags = self._tags(s, [r.id for r in rows])
        return [views.subnet(r, tags[r.id]) for r in rows]

    def _port_views(self, s: Session, ctx: RequestContext,
                    rows: list[t.Port]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        ips = self._fixed_ips(s, ids)
        groups = self._port_groups(s, ids)
        tags = self._tags(s, ids)
        return [views.port(r, ips[r.id], sorted(groups[r.id]), tags[r.id], ctx.is_admin)
                for r in rows]

    def _sg_views(self, s: Session, rows: list[t.SecurityGroup]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        rules: dict[str, list[t.SecurityGroupRule]] = defaultdict(list)
        for chunk in self._chunks(ids):
            for (rule,) in s.execute(select(t.SecurityGroupRule)
                                     .where(t.SecurityGroupRule.security_group_id.in_(chunk))
                                     .order_by(t.SecurityGroupRule.created_at)):
                rules[rule.security_group_id].append(rule)
        tags = self._tags(s, ids)
        return [views.security_group(r, rules[r.id], tags[r.id]) for r in rows]

    def _router_views(self, s: Session, ctx: RequestContext,
                      rows: list[t.Router]) -> list[dict[str, Any]]:
        gw_ids = [r.gw_port_id for r in rows if r.gw_port_id]
        ips = self._fixed_ips(s, gw_ids)
        tags = self._tags(s, [r.id for r in rows])
        return [views.router(r, ips.get(r.gw_port_id or "", []), tags[r.id], ctx.is_admin)
                for r in rows]

    def _fip_views(self, s: Session, rows: list[t.FloatingIP]) -> list[dict[str, Any]]:
        tags = self._tags(s, [r.id for r in rows])
        port_ids = [r.port_id for r in rows if r.port_id]
        ports: dict[str, t.Port] = {}
        for chunk in self._chunks(port_ids):
            ports.update({p.id: p for p in s.execute(
                select(t.Port).where(t.Port.id.in_(chunk))).scalars()})
        return [views.floatingip(r, tags[r.id], ports.get(r.port_id or "")) for r in rows]

    def _pool_views(self, s: Session, rows: list[t.SubnetPool]) -> list[dict[str, Any]]:
        tags = self._tags(s, [r.id for r in rows])
        return [views.subnetpool(r, tags[r.id]) for r in rows]

    # ---- quotas
    def _quota_limits(self, s: Session, project_id: str) -> dict[str, int]:
        limits = dict(DEFAULT_QUOTAS)
        for q in s.execute(select(t.Quota).where(t.Quota.project_id == project_id)).scalars():
            limits[q.resource] = q.limit
        return limits

    def _usage(self, s: Session, project_id: str, resource: str) -> int:
        model = _QUOTA_MODELS[resource]
        return int(s.execute(select(func.count()).select_from(model)
                             .where(model.project_id == project_id)).scalar_one())

    @staticmethod
    def _quota_state(rows: Callable[[Any, dict[str, Any]], list[Any]], project_id: str,
                     resource: str) -> list[int]:
        """``[limit, usage]`` of a project's resource, read with one statement (``rows``
        runs it: ``_PortWrites.rows`` or a session's)."""
        ((limit, used),) = rows(_Q_QUOTA[resource], {
            "pid": project_id, "res": resource,
            "default": DEFAULT_QUOTAS.get(resource, -1)})
        return [int(limit), int(used)]

    def _check_quota(self, s: Session, project_id: str, resource: str, adding: int = 1) -> None:
        if not project_id:
            return
        s.flush()  # the usage count must include this session's pending rows
        limit, used = self._quota_state(lambda stmt, p: list(s.execute(stmt, p)), project_id,
                                        resource)
        if 0 <= limit < used + adding:
            raise conflict(f"Quota exceeded for resources: ['{resource}'].", "OverQuota")

    # ---- tags on create
    def _replace_tags(self, s: Session, rid: str, tags: Any) -> None:
        """Make ``tags`` the resource's whole tag set (validated first, nothing half-set)."""
        valid = self._valid_tags(tags) if tags is not None else None
        s.execute(delete(t.Tag).where(t.Tag.resource_id == rid))
        self._set_tags(s, rid, valid)

    def _set_tags(self, s: Session, rid: str, tags: Any) -> None:
        if tags is None:
            return
        for tag in sorted(set(self._valid_tags(tags))):
            s.add(t.Tag(resource_id=rid, tag=tag))

    @staticmethod
    def _valid_tags(tags: Any) -> list[str]:
        if not isinstance(tags, list):
            raise sc.bad("Invalid input for tags. Reason: it must be a list of strings.")
        for tag in tags:
            if not isinstance(tag, str) or not tag or len(tag) > 255 or "," in tag:
                raise sc.bad(f"Invalid input for tags. Reason: '{tag}' is not a valid tag.")
        return list(tags)
