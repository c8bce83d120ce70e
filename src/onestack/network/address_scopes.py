"""Address scopes: the address spaces subnet pools are bound to (Neutron's ``address-scope``).

Pools in one scope never overlap; a pool joins a scope of its own IP version that its
project owns (an administrator may bind any); a shared scope cannot be unshared, and a scope
in use by a pool cannot be deleted. A network shows the scope of its subnets' pools per IP
version (``ipv4_address_scope``/``ipv6_address_scope``) when they all agree.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.db import network as t
from onestack.network import schemas as sc
from onestack.network import views
from onestack.network.authz import owned_target
from onestack.network.base import ManagerBase
from onestack.network.common import conflict, not_found

SCOPE_KEYS = ("name", "ip_version", "shared", "project_id", "tenant_id")


class AddressScopesMixin(ManagerBase):
    """Address scopes and the rules binding subnet pools to them."""

    @staticmethod
    def _scope_visible(ctx: RequestContext, scope: t.AddressScope) -> bool:
        return ctx.is_admin or scope.shared or scope.project_id == ctx.project_id

    def _visible_scope(self, s: Session, ctx: RequestContext, sid: str) -> t.AddressScope:
        scope = s.get(t.AddressScope, sid) if isinstance(sid, str) else None
        if scope is None or not self._scope_visible(ctx, scope):
            raise not_found(t.AddressScope, str(sid))
        return scope

    def list_address_scopes(self, ctx: RequestContext) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            rows = s.execute(select(t.AddressScope).order_by(t.AddressScope.id)).scalars()
            return [views.address_scope(r) for r in rows if self._scope_visible(ctx, r)
                    and self.authz.allowed(ctx, "get_address_scope",
                                           owned_target(r, shared=bool(r.shared)))]
        return self._read(run)

    def get_address_scope(self, ctx: RequestContext, sid: str) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            scope = self._visible_scope(s, ctx, sid)
            if not self.authz.allowed(ctx, "get_address_scope",
                                      owned_target(scope, shared=bool(scope.shared))):
                raise not_found(t.AddressScope, sid)
            return views.address_scope(scope)
        return self._read(run)

    def create_address_scopes(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                              ) -> list[dict[str, Any]]:
        return self._create_all(ctx, bodies, self._create_scope,
                                lambda s, rows: [views.address_scope(r) for r in rows])

    def _create_scope(self, s: Session, ctx: RequestContext, body: dict[str, Any]
                      ) -> t.AddressScope:
        sc.check_keys(body, SCOPE_KEYS, "address_scope")
        project = self._owner_for_create(ctx, body, "address_scope")
        if "ip_version" not in body:
            raise sc.bad("Failed to parse request. Required attribute 'ip_version' "
                         "not specified")
        version = sc.to_int(body["ip_version"], "ip_version")
        if version not in (4, 6):
            raise sc.bad(f"Invalid input for ip_version. Reason: {version} is not "
                         "in [4, 6].")
        shared = sc.to_bool(body.get("shared", False), "shared")
        if shared:
            self._enforce(ctx, "create_address_scope:shared", {"project_id": project})
        scope = t.AddressScope(
            id=str(uuid.uuid4()), project_id=project, ip_version=version,
            name=sc.to_str(body.get("name", ""), "name") or "", shared=shared)
        s.add(scope)
        return scope

    def update_address_scope(self, ctx: RequestContext, sid: str, body: dict[str, Any],
                             revision: int | None = None) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, ("name", "shared"), "address_scope")
            scope = self._visible_scope(s, ctx, sid)
            self._change(ctx, "update_address_scope", "address_scope",
                         owned_target(scope, shared=bool(scope.shared)), t.AddressScope)
            if "shared" in body:
                shared = sc.to_bool(body["shared"], "shared")
                self._enforce(ctx, "update_address_scope:shared",
                              {"project_id": scope.project_id})
                if scope.shared and not shared:
                    raise sc.bad(f"Unable to update address scope {scope.id} : Shared "
                                 "address scope can't be unshared.", "AddressScopeUpdateError")
                scope.shared = shared
            if "name" in body:
                scope.name = sc.to_str(body["name"], "name") or ""
            s.flush()
            return views.address_scope(scope)
        return self._tx(run)

    def delete_address_scope(self, ctx: RequestContext, sid: str,
                             revision: int | None = None) -> None:
        def run(s: Session) -> None:
            scope = self._visible_scope(s, ctx, sid)
            self._change(ctx, "delete_address_scope", "address_scope",
                         owned_target(scope, shared=bool(scope.shared)), t.AddressScope)
            if s.execute(select(t.SubnetPool.id).where(
                    t.SubnetPool.address_scope_id == scope.id)).first():
                raise conflict(f"Unable to complete operation on address scope {scope.id}. "
                               "There are one or more subnet pools in use on the address "
                               "scope.", "AddressScopeInUse")
            s.delete(scope)
        self._tx(run)

    # ------------------------------------------------------------------ subnet pools
    def _bind_scope(self, s: Session, ctx: RequestContext, pool: t.SubnetPool,
                    scope_id: Any) -> None:
        """Bind ``pool`` (its prefixes and IP version already set) to ``scope_id`` (None:
        unbind), or raise Neutron's error."""
        if scope_id is None:
            pool.address_scope_id = None
            return
        if not isinstance(scope_id, str):
            raise sc.bad(f"Invalid input for address_scope_id. Reason: '{scope_id}' is not "
                         "a valid UUID.")
        scope = s.get(t.AddressScope, scope_id)
        if scope is None or not self._scope_visible(ctx, scope):
            raise not_found(t.AddressScope, scope_id)
        if not ctx.is_admin and scope.project_id != ctx.project_id:
            raise sc.bad(f"Illegal subnetpool association: subnetpool {pool.id} cannot be "
                         f"associated with address scope {scope_id}.",
                         "IllegalSubnetPoolAssociationToAddressScope")
        if scope.ip_version != pool.ip_version:
            raise sc.bad(f"Illegal subnetpool association: subnetpool {pool.id} cannot "
                         f"associate with address scope {scope_id} because subnetpool "
                         f"ip_version is not {scope.ip_version}.",
                         "IllegalSubnetPoolIpVersionAssociationToAddressScope")
        self._check_scope_prefixes(s, scope_id, pool.id, pool.prefixes)
        pool.address_scope_id = scope_id

    @staticmethod
    def _check_scope_prefixes(s: Session, scope_id: str, pool_id: str,
                              prefixes: Iterable[str]) -> None:
        """Pools of one address scope never overlap."""
        mine = [ipaddress.ip_network(p) for p in prefixes]
        for (other,) in s.execute(select(t.SubnetPool.prefixes).where(
                t.SubnetPool.address_scope_id == scope_id, t.SubnetPool.id != pool_id)):
            for p in other or []:
                theirs = ipaddress.ip_network(p)
                if any(m.version == theirs.version and m.overlaps(theirs)  # type: ignore[arg-type]
                       for m in mine):
                    raise sc.bad("Failed to associate address scope: subnetpools within an "
                                 "address scope must have unique prefixes.",
                                 "AddressScopePrefixConflict")

    @staticmethod
    def _network_scopes(s: Session, net_ids: list[str]) -> dict[str, dict[int, str | None]]:
        """Per network and IP version, the address scope all its subnets' pools share."""
        seen: dict[str, dict[int, set[str | None]]] = defaultdict(lambda: defaultdict(set))
        stmt = (select(t.Subnet.network_id, t.Subnet.ip_version, t.SubnetPool.address_scope_id)
                .outerjoin(t.SubnetPool, t.SubnetPool.id == t.Subnet.subnetpool_id)
                .where(t.Subnet.network_id.in_(net_ids)))
        for nid, version, scope in s.execute(stmt):
            seen[nid][int(version)].add(scope)
        return {nid: {v: (next(iter(sc_)) if len(sc_) == 1 else None)
                      for v, sc_ in by_v.items()} for nid, by_v in seen.items()}
