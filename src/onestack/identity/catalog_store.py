"""The catalog backend: regions, services and endpoints. Part of ``IdentityManager``
(``CatalogStore``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound
from onestack.common.ids import new_id
from onestack.db.identity import Endpoint, Region, Service
from onestack.identity.store import IdentityState, _apply, _where_given


class CatalogStore(IdentityState):
    """The catalog backend: regions, services and endpoints."""

    # ------------------------------------------------------------------ catalog
    def catalog(self) -> list[dict[str, Any]]:
        """The service catalog as tokens carry it (enabled services and endpoints)."""

        def load() -> list[dict[str, Any]]:
            with self.db.reader() as s:
                # A stable order on every database, so two reads of an unchanged catalog
                # (a token issued, then validated) give the same document.
                services = list(s.scalars(select(Service).where(Service.enabled.is_(True))
                                          .order_by(Service.id)))
                endpoints = list(s.scalars(select(Endpoint).where(Endpoint.enabled.is_(True))
                                           .order_by(Endpoint.id)))
            by_service: dict[str, list[dict[str, Any]]] = {}
            for e in endpoints:
                by_service.setdefault(e.service_id, []).append({
                    "id": e.id, "interface": e.interface, "region_id": e.region_id,
                    "url": e.url, "region": e.region_id,
                })
            out = []
            for svc in services:
                out.append({
                    "endpoints": by_service.get(svc.id, []),
                    "id": svc.id,
                    "type": svc.type,
                    "name": (svc.extra or {}).get("name", ""),
                })
            return out

        return self.cache.get(("catalog",), load)

    def get_region(self, region_id: str, s: Session | None = None) -> Region:
        return self._fetch(Region, region_id, "region", s)

    def list_regions(self, parent_region_id: str | None = None) -> list[Region]:
        with self.db.reader() as s:
            q = _where_given(select(Region).order_by(Region.id), Region,
                             parent_region_id=parent_region_id)
            return list(s.scalars(q))

    def create_region(self, region_id: str | None, description: str | None = None,
                      parent_region_id: str | None = None,
                      extra: dict[str, Any] | None = None) -> Region:
        with self.write() as s:
            rid = region_id or new_id()
            if s.get(Region, rid) is not None:
                raise Conflict(
                    f"Conflict occurred attempting to store region - Duplicate ID, {rid}.")
            if parent_region_id:
                try:
                    self.get_region(parent_region_id, s)
                except NotFound as exc:
                    raise BadRequest(
                        f"The parent region {parent_region_id} does not exist.") from exc
            r = Region(id=rid, description=description or "",
                       parent_region_id=parent_region_id, extra=extra or {})
            s.add(r)
        return r

    def update_region(self, region_id: str, changes: dict[str, Any]) -> Region:
        with self.write() as s:
            r = self.get_region(region_id, s)
            if changes.get("parent_region_id"):
                parent = changes["parent_region_id"]
                try:
                    self.get_region(parent, s)
                except NotFound as exc:
                    raise BadRequest(f"The parent region {parent} does not exist.") from exc
                # Refuse cycles.
                cur: str | None = parent
                while cur:
                    if cur == region_id:
                        raise BadRequest(
                            "Circular reference or a repeated entry found in region tree - "
                            f"{region_id}.")
                    nxt = s.get(Region, cur)
                    cur = nxt.parent_region_id if nxt else None
            _apply(r, changes, ("description", "parent_region_id"), merge=("extra",))
        return r

    def delete_region(self, region_id: str) -> None:
        with self.write() as s:
            r = self.get_region(region_id, s)
            if s.scalar(select(Region.id).where(Region.parent_region_id == region_id)):
                raise Forbidden("Unable to delete region "
                                f"{region_id} because it or its child regions have associated "
                                "endpoints.")
            s.execute(update(Endpoint).where(Endpoint.region_id == region_id)
                      .values(region_id=None))
            s.delete(r)

    def get_service(self, service_id: str, s: Session | None = None) -> Service:
        return self._fetch(Service, service_id, "service", s)

    def list_services(self, type: str | None = None, name: str | None = None) -> list[Service]:
        with self.db.reader() as s:
            rows = list(s.scalars(_where_given(select(Service).order_by(Service.type), Service,
                                               type=type)))
        if name is not None:
            rows = [r for r in rows if (r.extra or {}).get("name") == name]
        return rows

    def create_service(self, type: str, name: str | None = None, description: str | None = None,
                       enabled: bool = True, extra: dict[str, Any] | None = None) -> Service:
        data = dict(extra or {})
        if name is not None:
            data["name"] = name
        if description is not None:
            data["description"] = description
        with self.write() as s:
            svc = Service(id=new_id(), type=type, enabled=enabled, extra=data)
            s.add(svc)
        return svc

    def update_service(self, service_id: str, changes: dict[str, Any]) -> Service:
        with self.write() as s:
            svc = self.get_service(service_id, s)
            _apply(svc, changes, ("type", "enabled"))
            extra = dict(svc.extra or {})
            for key in ("name", "description"):
                if key in changes:
                    extra[key] = changes[key]
            extra.update(changes.get("extra", {}))
            svc.extra = extra
        return svc

    def delete_service(self, service_id: str) -> None:
        with self.write() as s:
            svc = self.get_service(service_id, s)
            s.execute(delete(Endpoint).where(Endpoint.service_id == svc.id))
            s.delete(svc)

    def get_endpoint(self, endpoint_id: str, s: Session | None = None) -> Endpoint:
        return self._fetch(Endpoint, endpoint_id, "endpoint", s)

    def list_endpoints(self, interface: str | None = None, service_id: str | None = None,
                       region_id: str | None = None) -> list[Endpoint]:
        with self.db.reader() as s:
            q = _where_given(select(Endpoint), Endpoint, interface=interface,
                             service_id=service_id, region_id=region_id)
            return list(s.scalars(q))

    def create_endpoint(self, service_id: str, interface: str, url: str,
                        region_id: str | None = None, enabled: bool = True,
                        extra: dict[str, Any] | None = None,
                        legacy_region: str | None = None) -> Endpoint:
        with self.write() as s:
            try:
                self.get_service(service_id, s)
            except NotFound as exc:
                raise BadRequest(f"Could not find service: {service_id}.") from exc
            if region_id and s.get(Region, region_id) is None:
                raise BadRequest(f"Could not find region: {region_id}.")
            if not region_id and legacy_region:
                # The deprecated ``region`` attribute creates its region on demand.
                region_id = legacy_region
                if s.get(Region, region_id) is None:
                    s.add(Region(id=region_id, description="", extra={}))
            e = Endpoint(id=new_id(), service_id=service_id, interface=interface, url=url,
                         region_id=region_id, enabled=enabled, extra=extra or {})
            s.add(e)
        return e

    def update_endpoint(self, endpoint_id: str, changes: dict[str, Any]) -> Endpoint:
        with self.write() as s:
            e = self.get_endpoint(endpoint_id, s)
            if "service_id" in changes and s.get(Service, changes["service_id"]) is None:
                raise BadRequest(f"Could not find service: {changes['service_id']}.")
            if changes.get("region_id") and s.get(Region, changes["region_id"]) is None:
                if not changes.get("legacy_region"):
                    raise BadRequest(f"Could not find region: {changes['region_id']}.")
                # The deprecated ``region`` attribute creates its region on demand.
                s.add(Region(id=changes["region_id"], description="", extra={}))
            _apply(e, changes, ("service_id", "interface", "url", "region_id", "enabled"),
                   merge=("extra",))
        return e

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.write() as s:
            e = self.get_endpoint(endpoint_id, s)
            s.delete(e)
