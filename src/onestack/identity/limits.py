"""Keystone's unified limits: registered limits (a service's default per resource, per
region) and limits (a project's or domain's own value for one), with the flat enforcement
model.

Storage is the ``identity_document`` table: kind ``registered_limit`` (parent: the service)
and kind ``limit`` (parent: the project or domain). The rules are Keystone's: the service
and region named must exist (400), a (service, region, resource) has one registered limit and
one limit per project or domain (409), a limit needs a registered limit to refer to (403),
and a registered limit that limits refer to can neither be deleted nor moved to another
service, region or resource (403). ``UnifiedLimits`` is what other services' quota checks
read (as Nova's ``UnifiedLimitsDriver`` and Glance's ``use_keystone_limits`` read Keystone).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from onestack.common.errors import Conflict, Forbidden, NotFound, ValidationError
from onestack.common.ids import new_id
from onestack.db.identity import Document, Region, Service
from onestack.identity.manager import IdentityManager

REGISTERED = "registered_limit"
LIMIT = "limit"
_KEY = ("service_id", "region_id", "resource_name")
_INT = {"type": "integer", "minimum": -1, "maximum": 2147483647}
_ID = {"type": "string", "minLength": 1, "maxLength": 255}
_DESCRIPTION = {"type": ["string", "null"], "maxLength": 255}

REGISTERED_LIMIT = {
    "type": "object",
    "properties": {"service_id": _ID, "region_id": {"type": ["string", "null"],
                                                     "minLength": 1, "maxLength": 255},
                   "resource_name": _ID, "default_limit": _INT, "description": _DESCRIPTION},
    "required": ["service_id", "resource_name", "default_limit"],
    "additionalProperties": False,
}
REGISTERED_LIMITS_CREATE = {"type": "array", "minItems": 1, "maxItems": 1000,
                            "items": REGISTERED_LIMIT}
REGISTERED_LIMIT_UPDATE = {**REGISTERED_LIMIT, "required": [], "minProperties": 1}
LIMIT_ITEM = {
    "type": "object",
    "properties": {"project_id": _ID, "domain_id": _ID, "service_id": _ID,
                   "region_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
                   "resource_name": _ID, "resource_limit": _INT, "description": _DESCRIPTION},
    "required": ["service_id", "resource_name", "resource_limit"],
    "oneOf": [{"required": ["project_id"]}, {"required": ["domain_id"]}],
    "additionalProperties": False,
}
LIMITS_CREATE = {"type": "array", "minItems": 1, "maxItems": 1000, "items": LIMIT_ITEM}
LIMIT_UPDATE = {"type": "object",
                "properties": {"resource_limit": _INT, "description": _DESCRIPTION},
                "minProperties": 1, "additionalProperties": False}
#: The one enforcement model onestack offers (``GET /v3/limits/model``).
MODEL = {"name": "flat", "description": (
    "Each project's limit is checked on its own: limits of parent projects or domains do "
    "not constrain their children.")}


def _key(data: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(data.get(k) for k in _KEY)


class LimitStore:
    """CRUD on registered limits and limits (blocking; run in a thread)."""

    def __init__(self, manager: IdentityManager) -> None:
        self.m = manager

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _docs(s: Session, kind: str) -> list[Document]:
        return list(s.scalars(select(Document).where(Document.kind == kind)
                              .order_by(Document.id)))

    @staticmethod
    def _check_refs(s: Session, data: dict[str, Any], what: str) -> None:
        """The service and region named exist (Keystone's 400)."""
        if s.get(Service, data["service_id"]) is None:
            raise ValidationError(f"Invalid input for field 'service_id': no service "
                                  f"{data['service_id']} exists for this {what}.")
        region = data.get("region_id")
        if region is not None and s.get(Region, region) is None:
            raise ValidationError(f"Invalid input for field 'region_id': no region {region} "
                                  f"exists for this {what}.")

    def _matching(self, kind: str, filters: dict[str, str],
                  parents: set[str] | None) -> list[Document]:
        """The ``kind`` documents whose data has ``filters``' values (and, unless
        ``parents`` is None, whose parent is one of them)."""
        with self.m.db.reader() as s:
            docs = self._docs(s, kind)
        return [d for d in docs if (parents is None or d.parent_id in parents)
                and all(d.data.get(k) == v for k, v in filters.items())]

    def _get(self, s: Session, kind: str, doc_id: str) -> Document:
        d = s.get(Document, (kind, doc_id))
        if d is None:
            what = "registered limit" if kind == REGISTERED else "limit"
            raise NotFound(f"Could not find {what}: {doc_id}.")
        return d

    # ------------------------------------------------------------------ registered limits
    def create_registered_limits(self, items: list[dict[str, Any]]) -> list[Document]:
        with self.m.write() as s:
            taken = {_key(d.data) for d in self._docs(s, REGISTERED)}
            out = []
            for item in items:
                data = {"region_id": None, "description": None, **item}
                self._check_refs(s, data, "registered limit")
                if _key(data) in taken:
                    raise Conflict("Conflict occurred attempting to store registered_limit - "
                                   "Duplicate entry.")
                taken.add(_key(data))
                d = Document(kind=REGISTERED, id=new_id(), parent_id=data["service_id"],
                             data=data)
                s.add(d)
                out.append(d)
        return out

    def list_registered_limits(self, filters: dict[str, str]) -> list[Document]:
        return self._matching(REGISTERED, filters, None)

    def get_registered_limit(self, limit_id: str) -> Document:
        with self.m.db.reader() as s:
            return self._get(s, REGISTERED, limit_id)

    def update_registered_limit(self, limit_id: str, changes: dict[str, Any]) -> Document:
        with self.m.write() as s:
            d = self._get(s, REGISTERED, limit_id)
            data = {**d.data, **changes}
            if _key(data) != _key(d.data):
                self._check_refs(s, data, "registered limit")
                if any(_key(o.data) == _key(data) for o in self._docs(s, REGISTERED)
                       if o.id != d.id):
                    raise Conflict("Conflict occurred attempting to store registered_limit - "
                                   "Duplicate entry.")
                self._unreferenced(s, d)
            d.data = data
            d.parent_id = data["service_id"]
        return d

    def delete_registered_limit(self, limit_id: str) -> None:
        with self.m.write() as s:
            d = self._get(s, REGISTERED, limit_id)
            self._unreferenced(s, d)
            s.delete(d)

    def _unreferenced(self, s: Session, registered: Document) -> None:
        """Keystone's 403 when limits depend on the registered limit (same service, region
        and resource): it may then be neither updated nor deleted."""
        if any(_key(x.data) == _key(registered.data) for x in self._docs(s, LIMIT)):
            raise Forbidden(f"Unable to update or delete registered limit {registered.id} "
                            "because there are project limits associated with it.")

    # ------------------------------------------------------------------ limits
    def create_limits(self, items: list[dict[str, Any]]) -> list[Document]:
        with self.m.write() as s:
            registered = {_key(d.data) for d in self._docs(s, REGISTERED)}
            taken = {(*_key(d.data), d.parent_id) for d in self._docs(s, LIMIT)}
            out = []
            for item in items:
                data = {"region_id": None, "description": None, "project_id": None,
                        "domain_id": None, **item}
                self._check_refs(s, data, "limit")
                owner = data["project_id"] or data["domain_id"]
                try:
                    if data["project_id"]:
                        self.m.get_project(data["project_id"], s)
                    else:
                        self.m.get_domain(data["domain_id"], s)
                except NotFound:
                    field = "project_id" if data["project_id"] else "domain_id"
                    raise ValidationError(f"Invalid input for field '{field}': {owner} does "
                                          "not exist.") from None
                if _key(data) not in registered:
                    raise Forbidden("Unable to create a limit that has no corresponding "
                                    "registered limit.")
                if (*_key(data), owner) in taken:
                    raise Conflict("Conflict occurred attempting to store limit - Duplicate "
                                   "entry.")
                taken.add((*_key(data), owner))
                d = Document(kind=LIMIT, id=new_id(), parent_id=owner, data=data)
                s.add(d)
                out.append(d)
        return out

    def list_limits(self, filters: dict[str, str], owners: set[str] | None) -> list[Document]:
        """Limits matching ``filters``; ``owners``: only those of these projects/domains."""
        return self._matching(LIMIT, filters, owners)

    def get_limit(self, limit_id: str) -> Document:
        with self.m.db.reader() as s:
            return self._get(s, LIMIT, limit_id)

    def update_limit(self, limit_id: str, changes: dict[str, Any]) -> Document:
        with self.m.write() as s:
            d = self._get(s, LIMIT, limit_id)
            d.data = {**d.data, **changes}
        return d

    def delete_limit(self, limit_id: str) -> None:
        with self.m.write() as s:
            s.delete(self._get(s, LIMIT, limit_id))


class UnifiedLimits:
    """What a service's quota checks read: for one project, the limit of each resource of
    this service in this region (the project's own limit, else the registered default;
    registered limits without a region apply to every region).

    ``service_type`` and ``region`` name the service as the catalog does; lookups run in
    the caller's connection, so a check and the writes it guards share one transaction."""

    def __init__(self, service_type: str, region: str) -> None:
        self.service_type = service_type
        self.region = region

    def for_project(self, c: Connection | Session, project_id: str) -> dict[str, int]:
        sv = Service.__table__
        doc = Document.__table__
        service_ids = {r[0] for r in c.execute(select(sv.c.id).where(
            sv.c.type == self.service_type))}
        if not service_ids:
            return {}
        regions = (None, self.region)
        out: dict[str, int] = {}
        for (data,) in c.execute(select(doc.c.data).where(
                doc.c.kind == REGISTERED, doc.c.parent_id.in_(service_ids))):
            if data.get("region_id") in regions:
                out[data["resource_name"]] = int(data["default_limit"])
        for (data,) in c.execute(select(doc.c.data).where(
                doc.c.kind == LIMIT, doc.c.parent_id == project_id)):
            if data.get("service_id") in service_ids and data.get("region_id") in regions:
                out[data["resource_name"]] = int(data["resource_limit"])
        return out
