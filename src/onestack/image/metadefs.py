"""Metadata-definition catalog (``/v2/metadefs``): the only code that changes its tables.

A *namespace* groups property definitions, objects (named groups of properties) and tags, and
is associated with resource types (``OS::Glance::Image``, ``OS::Nova::Flavor``, ...) under an
optional prefix. Namespaces are ``public`` (readable by everyone) or ``private`` (owner and
admins only); a namespace someone may not read is a 404. Writes need the ``*_metadef_*``
policy rules against the namespace owner (default: admin or a member of the owning project).
A ``protected`` namespace cannot be deleted until ``protected`` is cleared. All methods are
blocking; the API runs them in worker threads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jsonschema
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onestack.api.policy import Policy
from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound
from onestack.common.ids import new_uuid
from onestack.common.timeutils import isotime, utcnow
from onestack.db.engine import Database
from onestack.db.image import (
    MetadefNamespace,
    MetadefObject,
    MetadefProperty,
    MetadefResourceType,
    MetadefResourceTypeAssoc,
    MetadefTag,
)

#: Resource types every cloud knows (the services whose resources carry metadata).
DEFAULT_RESOURCE_TYPES = (
    "OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor", "OS::Nova::Aggregate",
    "OS::Nova::Server", "OS::Trove::Instance", "OS::Glance::Metadef",
)
NAME_MAX = 80
TAG_MAX = 255
DESCRIPTION_MAX = 500
NS_VISIBILITIES = ("public", "private")
NS_SORT_KEYS = ("namespace", "display_name", "created_at", "updated_at", "visibility",
                "protected", "owner")
#: Read-only members clients echo back on update; ignored.
#: The rows of a namespace's items (objects, properties, tags).
_Item = TypeVar("_Item", MetadefObject, MetadefProperty, MetadefTag)
_ECHOED = frozenset({"created_at", "updated_at", "schema", "self"})

_PROPERTY_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
_STR_LIST = {"type": "array", "items": {"type": "string"}}
PROPERTY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "type"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 255},
        "title": {"type": "string", "maxLength": 255},
        "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
        "type": {"type": "string", "enum": _PROPERTY_TYPES},
        "operators": _STR_LIST,
        "default": {},
        "readonly": {"type": "boolean"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"type": "integer", "minimum": 0},
        "minLength": {"type": "integer", "minimum": 0},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "items": {"type": "object", "properties": {
            "type": {"type": "string", "enum": _PROPERTY_TYPES},
            "enum": {"type": "array"}}},
        "maxItems": {"type": "integer", "minimum": 0},
        "minItems": {"type": "integer", "minimum": 0},
        "uniqueItems": {"type": "boolean"},
        "additionalItems": {"type": "boolean"},
    },
}
_PROPERTY_VALIDATOR = jsonschema.Draft4Validator(PROPERTY_SCHEMA)


# ------------------------------------------------------------------ validation helpers
def _name(value: Any, what: str, maximum: int = NAME_MAX) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a non-empty string.")
    if len(value) > maximum:
        raise BadRequest(f"{what} is longer than {maximum} characters.")
    if "/" in value:
        raise BadRequest(f"{what} may not contain '/'.")
    return value


def _opt_str(doc: Mapping[str, Any], key: str, maximum: int) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string.")
    if len(value) > maximum:
        raise BadRequest(f"'{key}' is longer than {maximum} characters.")
    return value


def _object_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def check_property(name: str, doc: Any) -> dict[str, Any]:
    """A property definition without its name (400 unless it is a valid definition)."""
    if not isinstance(doc, dict):
        raise BadRequest(f"Definition of property '{name}' must be a JSON object.")
    error = jsonschema.exceptions.best_match(_PROPERTY_VALIDATOR.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise BadRequest(f"Property '{name}' does not match the property schema: "
                         f"{error.message}" + (f" (at '{where}')" if where else ""))
    return {k: v for k, v in doc.items() if k != "name"}


def _properties_map(value: Any, what: str) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'{what}' must be an object mapping property names to definitions.")
    return {_name(k, "Property name", 255): check_property(k, v) for k, v in value.items()}


def check_object(body: Any) -> dict[str, Any]:
    doc = _object_body(body)
    unknown = set(doc) - {"name", "description", "required", "properties"} - _ECHOED
    if unknown:
        raise BadRequest(f"Unknown attributes of an object: {', '.join(sorted(unknown))}.")
    required = doc.get("required")
    if required is not None and (not isinstance(required, list) or
                                 not all(isinstance(r, str) for r in required)):
        raise BadRequest("'required' must be a list of property names.")
    return {"name": _name(doc.get("name"), "Object name"),
            "description": _opt_str(doc, "description", DESCRIPTION_MAX),
            "required": required,
            "properties": _properties_map(doc.get("properties"), "properties")}


def _assoc_body(body: Any) -> dict[str, Any]:
    doc = _object_body(body)
    unknown = set(doc) - {"name", "prefix", "properties_target"} - _ECHOED
    if unknown:
        raise BadRequest("Unknown attributes of a resource type association: "
                         f"{', '.join(sorted(unknown))}.")
    return {"name": _name(doc.get("name"), "Resource type name"),
            "prefix": _opt_str(doc, "prefix", NAME_MAX),
            "properties_target": _opt_str(doc, "properties_target", NAME_MAX)}


def _tag_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest("'tags' must be a list of {\"name\": ...} objects.")
    names = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name"} - _ECHOED:
            raise BadRequest("Each tag must be an object with a 'name'.")
        names.append(_name(item.get("name"), "Tag name", TAG_MAX))
    if len(set(names)) != len(names):
        raise Conflict("Duplicate tag names in the request.")
    return names


# ------------------------------------------------------------------ documents
def _drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


def _ns_doc(ns: MetadefNamespace) -> dict[str, Any]:
    return _drop_none({
        "namespace": ns.namespace, "display_name": ns.display_name,
        "description": ns.description, "visibility": ns.visibility,
        "protected": ns.protected, "owner": ns.owner,
        "created_at": isotime(ns.created_at), "updated_at": isotime(ns.updated_at),
        "schema": "/v2/schemas/metadefs/namespace",
        "self": f"/v2/metadefs/namespaces/{ns.namespace}",
    })


def _object_doc(ns: str, obj: MetadefObject) -> dict[str, Any]:
    return _drop_none({
        "name": obj.name, "description": obj.description, "required": obj.required,
        "properties": obj.properties or {},
        "created_at": isotime(obj.created_at), "updated_at": isotime(obj.updated_at),
        "schema": "/v2/schemas/metadefs/object",
        "self": f"/v2/metadefs/namespaces/{ns}/objects/{obj.name}",
    })


def _property_doc(prop: MetadefProperty, prefix: str = "") -> dict[str, Any]:
    return {"name": prefix + prop.name, **(prop.schema or {})}


def _tag_doc(tag: MetadefTag) -> dict[str, Any]:
    return {"name": tag.name, "created_at": isotime(tag.created_at),
            "updated_at": isotime(tag.updated_at)}


def _assoc_doc(rt: MetadefResourceType, a: MetadefResourceTypeAssoc) -> dict[str, Any]:
    return _drop_none({"name": rt.name, "prefix": a.prefix,
                       "properties_target": a.properties_target,
                       "created_at": isotime(a.created_at),
                       "updated_at": isotime(a.updated_at)})


class MetadefManager:
    """Owns the metadata-definition catalog."""

    def __init__(self, db: Database, policy: Policy) -> None:
        self.db = db
        self.policy = policy
        self._seeded = False

    # ------------------------------------------------------------------ helpers
    def _enforce(self, ctx: RequestContext, action: str, owner: str | None) -> None:
        if not self.policy.check(action, ctx.policy_creds(),
                                 {"project_id": owner or "", "owner": owner or ""}):
            raise Forbidden(f"You are not authorized to complete {action} action.")

    @staticmethod
    def _visible(ctx: RequestContext, ns: MetadefNamespace) -> bool:
        return (ctx.is_admin or ns.visibility == "public" or
                (ctx.project_id is not None and ns.owner == ctx.project_id))

    def _ns(self, ctx: RequestContext, s: Session, name: str) -> MetadefNamespace:
        ns = s.scalar(select(MetadefNamespace).where(MetadefNamespace.namespace == name))
        if ns is None or not self._visible(ctx, ns):
            raise NotFound(f"Metadata definition namespace={name} was not found.")
        return ns

    def _authorized(self, ctx: RequestContext, s: Session, name: str,
                    action: str) -> MetadefNamespace:
        """The namespace ``name``, visible to ``ctx`` and with ``action`` allowed on it."""
        ns = self._ns(ctx, s, name)
        self._enforce(ctx, action, ns.owner)
        return ns

    @staticmethod
    def _touch(ns: MetadefNamespace) -> None:
        ns.updated_at = utcnow()

    def _seed(self) -> None:
        """Make sure the well-known resource types exist (once per process)."""
        if self._seeded:
            return
        with self.db.transaction() as s:
            have = set(s.scalars(select(MetadefResourceType.name)))
            now = utcnow()
            for name in DEFAULT_RESOURCE_TYPES:
                if name not in have:
                    s.add(MetadefResourceType(id=new_uuid(), name=name, protected=True,
                                              created_at=now, updated_at=now))
        self._seeded = True

    def _resource_type(self, s: Session, name: str, now: dt.datetime) -> MetadefResourceType:
        rt = s.scalar(select(MetadefResourceType).where(MetadefResourceType.name == name))
        if rt is None:
            rt = MetadefResourceType(id=new_uuid(), name=name, protected=False,
                                     created_at=now, updated_at=now)
            s.add(rt)
            s.flush()
        return rt

    def _associate(self, s: Session, ns: MetadefNamespace, doc: dict[str, Any],
                   now: dt.datetime) -> dict[str, Any]:
        rt = self._resource_type(s, doc["name"], now)
        if s.get(MetadefResourceTypeAssoc, (ns.id, rt.id)) is not None:
            raise Conflict(f"Resource type {rt.name} is already associated with namespace "
                           f"{ns.namespace}.")
        a = MetadefResourceTypeAssoc(namespace_id=ns.id, resource_type_id=rt.id,
                                     prefix=doc["prefix"],
                                     properties_target=doc["properties_target"],
                                     created_at=now, updated_at=now)
        s.add(a)
        s.flush()
        return _assoc_doc(rt, a)

    def _assocs(self, s: Session, ns_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in ns_ids}
        if ns_ids:
            rows = s.execute(select(MetadefResourceTypeAssoc, MetadefResourceType).join(
                MetadefResourceType,
                MetadefResourceType.id == MetadefResourceTypeAssoc.resource_type_id).where(
                MetadefResourceTypeAssoc.namespace_id.in_(ns_ids)).order_by(
                MetadefResourceType.name))
            for a, rt in rows:
                out[a.namespace_id].append(_assoc_doc(rt, a))
        return out

    @staticmethod
    def _commit_conflict(what: str) -> Conflict:
        return Conflict(f"{what} already exists.")

    def _name_free(self, s: Session,
                   model: type[MetadefObject] | type[MetadefProperty] | type[MetadefTag],
                   ns: MetadefNamespace, name: str, what: str, ns_name: str) -> None:
        """409 when namespace ``ns`` (``ns_name`` as asked) already holds a ``model`` row
        called ``name``."""
        if s.scalar(select(model.id).where(model.namespace_id == ns.id,
                                           model.name == name)) is not None:
            raise self._commit_conflict(f"{what} {name} in namespace {ns_name}")

    def _add_item(self, ctx: RequestContext, ns_name: str, action: str, model: type[_Item],
                  what: str, render: Callable[[MetadefNamespace, _Item], dict[str, Any]],
                  fields: dict[str, Any]) -> dict[str, Any]:
        """Add a ``model`` row (an object, property or tag: ``what``) with ``fields`` to the
        namespace, once ``action`` is allowed there: 409 when the name is taken."""
        now = utcnow()
        try:
            with self.db.transaction() as s:
                ns = self._authorized(ctx, s, ns_name, action)
                self._name_free(s, model, ns, fields["name"], what, ns_name)
                row = model(id=new_uuid(), namespace_id=ns.id, created_at=now,
                            updated_at=now, **fields)
                s.add(row)
                s.flush()
                return render(ns, row)
        except IntegrityError:
            raise self._commit_conflict(f"{what} {fields['name']}") from None

    def _update_item(self, ctx: RequestContext, ns_name: str, action: str, name: str,
                     find: Callable[[Session, MetadefNamespace, str], _Item], what: str,
                     render: Callable[[MetadefNamespace, _Item], dict[str, Any]],
                     fields: dict[str, Any]) -> dict[str, Any]:
        """Set ``fields`` (a ``name`` among them) on the namespace's item ``name`` (as
        ``find`` finds it; an object, property or tag: ``what``), once ``action`` is allowed
        there: 409 when a rename takes another item's name."""
        new_name = fields["name"]
        try:
            with self.db.transaction() as s:
                ns = self._authorized(ctx, s, ns_name, action)
                row = find(s, ns, name)
                if new_name != row.name:
                    self._name_free(s, type(row), ns, new_name, what, ns_name)
                for key, value in fields.items():
                    setattr(row, key, value)
                row.updated_at = utcnow()
                s.flush()
                return render(ns, row)
        except IntegrityError:
            raise self._commit_conflict(f"{what} {new_name}") from None

    # ------------------------------------------------------------------ namespaces
    def _ns_fields(self, ctx: RequestContext, body: Any, create: bool,
                   current: MetadefNamespace | None = None) -> dict[str, Any]:
        doc = _object_body(body)
        allowed = {"namespace", "display_name", "description", "visibility", "protected",
                   "owner"}
        if create:
            allowed |= {"resource_type_associations", "properties", "objects", "tags"}
        unknown = set(doc) - allowed - _ECHOED
        if unknown:
            raise BadRequest("Unknown attributes of a namespace: "
                             f"{', '.join(sorted(unknown))}.")
        out: dict[str, Any] = {}
        if create or "namespace" in doc:
            out["namespace"] = _name(doc.get("namespace"), "Namespace name")
        for key, maximum in (("display_name", NAME_MAX), ("description", DESCRIPTION_MAX)):
            if key in doc or create:
                out[key] = _opt_str(doc, key, maximum)
        if "visibility" in doc or create:
            vis = doc.get("visibility", "private")
            if vis not in NS_VISIBILITIES:
                raise BadRequest(f"Invalid visibility {vis!r}; expected public or private.")
            out["visibility"] = vis
        if "protected" in doc or create:
            protected = doc.get("protected", False)
            if not isinstance(protected, bool):
                raise BadRequest("'protected' must be a boolean.")
            out["protected"] = protected
        if "owner" in doc:
            owner = _opt_str(doc, "owner", 255)
            old = current.owner if current is not None else ctx.project_id
            if owner != old and not ctx.is_admin:
                raise Forbidden("Only administrators may set the owner of a namespace.")
            out["owner"] = owner
        elif create:
            out["owner"] = ctx.project_id
        return out

    def create_namespace(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        fields = self._ns_fields(ctx, body, create=True)
        self._enforce(ctx, "add_metadef_namespace", fields["owner"])
        assocs = [_assoc_body(a) for a in _list(body.get("resource_type_associations"),
                                                "resource_type_associations")]
        props = _properties_map(body.get("properties"), "properties")
        objects = [check_object(o) for o in _list(body.get("objects"), "objects")]
        if len({o["name"] for o in objects}) != len(objects):
            raise Conflict("Duplicate object names in the request.")
        tags = _tag_list(body["tags"]) if body.get("tags") is not None else []
        now = utcnow()
        ns = MetadefNamespace(id=new_uuid(), created_at=now, updated_at=now, **fields)
        try:
            with self.db.transaction() as s:
                if s.scalar(select(MetadefNamespace.id).where(
                        MetadefNamespace.namespace == ns.namespace)) is not None:
                    raise self._commit_conflict(f"Namespace {ns.namespace}")
                s.add(ns)
                s.flush()
                doc = _ns_doc(ns)
                if assocs:
                    doc["resource_type_associations"] = [
                        self._associate(s, ns, a, now) for a in assocs]
                if props:
                    for name, schema in props.items():
                        s.add(MetadefProperty(id=new_uuid(), namespace_id=ns.id, name=name,
                                              schema=schema, created_at=now, updated_at=now))
                    doc["properties"] = props
                if objects:
                    rows = [MetadefObject(id=new_uuid(), namespace_id=ns.id, created_at=now,
                                          updated_at=now, **o) for o in objects]
                    s.add_all(rows)
                    doc["objects"] = [_object_doc(ns.namespace, r) for r in rows]
                if tags:
                    trows = [MetadefTag(id=new_uuid(), namespace_id=ns.id, name=t,
                                        created_at=now, updated_at=now) for t in tags]
                    s.add_all(trows)
                    doc["tags"] = [{"name": t} for t in tags]
                s.flush()
                return doc
        except IntegrityError:
            raise self._commit_conflict(f"Namespace {ns.namespace}") from None

    def list_namespaces(self, ctx: RequestContext, resource_types: list[str] | None,
                        visibility: str | None, sort_key: str, sort_dir: str,
                        limit: int, marker: str | None) -> tuple[list[dict[str, Any]], bool]:
        self._seed()
        if visibility is not None and visibility not in NS_VISIBILITIES:
            raise BadRequest(f"Invalid visibility {visibility!r}; expected public or private.")
        with self.db.reader() as s:
            stmt = select(MetadefNamespace)
            if not ctx.is_admin:
                stmt = stmt.where((MetadefNamespace.visibility == "public") |
                                  (MetadefNamespace.owner == (ctx.project_id or "")))
            if visibility:
                stmt = stmt.where(MetadefNamespace.visibility == visibility)
            if resource_types:
                stmt = stmt.where(MetadefNamespace.id.in_(
                    select(MetadefResourceTypeAssoc.namespace_id).join(
                        MetadefResourceType,
                        MetadefResourceType.id == MetadefResourceTypeAssoc.resource_type_id)
                    .where(MetadefResourceType.name.in_(resource_types))))
            col = getattr(MetadefNamespace, sort_key)
            order = col.asc() if sort_dir == "asc" else col.desc()
            tie = (MetadefNamespace.namespace.asc() if sort_dir == "asc"
                   else MetadefNamespace.namespace.desc())
            rows = list(s.scalars(stmt.order_by(order, tie)))
            if marker is not None:
                names = [r.namespace for r in rows]
                if marker not in names:
                    raise BadRequest(f"Invalid marker: namespace {marker} could not be found.")
                rows = rows[names.index(marker) + 1:]
            page, more = rows[:limit], len(rows) > limit
            assocs = self._assocs(s, [r.id for r in page])
            out = []
            for r in page:
                doc = _ns_doc(r)
                if assocs[r.id]:
                    doc["resource_type_associations"] = assocs[r.id]
                out.append(doc)
            return out, more

    def get_namespace(self, ctx: RequestContext, name: str,
                      resource_type: str | None = None) -> dict[str, Any]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, name, "get_metadef_namespace")
            doc = _ns_doc(ns)
            assocs = self._assocs(s, [ns.id])[ns.id]
            if assocs:
                doc["resource_type_associations"] = assocs
            prefix = ""
            if resource_type:
                prefix = next((a.get("prefix") or "" for a in assocs
                               if a["name"] == resource_type), "")
            props = {prefix + p.name: {k: v for k, v in _property_doc(p).items()
                                       if k != "name"}
                     for p in s.scalars(select(MetadefProperty).where(
                         MetadefProperty.namespace_id == ns.id).order_by(MetadefProperty.name))}
            if props:
                doc["properties"] = props
            objects = [_object_doc(ns.namespace, o) for o in s.scalars(
                select(MetadefObject).where(MetadefObject.namespace_id == ns.id)
                .order_by(MetadefObject.name))]
            if objects:
                doc["objects"] = objects
            tags = [{"name": t} for t in s.scalars(select(MetadefTag.name).where(
                MetadefTag.namespace_id == ns.id).order_by(MetadefTag.name))]
            if tags:
                doc["tags"] = tags
            return doc

    def update_namespace(self, ctx: RequestContext, name: str, body: Any) -> dict[str, Any]:
        try:
            with self.db.transaction() as s:
                ns = self._authorized(ctx, s, name, "modify_metadef_namespace")
                fields = self._ns_fields(ctx, body, create=False, current=ns)
                new = fields.get("namespace", ns.namespace)
                if new != ns.namespace and s.scalar(select(MetadefNamespace.id).where(
                        MetadefNamespace.namespace == new)) is not None:
                    raise self._commit_conflict(f"Namespace {new}")
                for key, value in fields.items():
                    setattr(ns, key, value)
                self._touch(ns)
                s.flush()
                return _ns_doc(ns)
        except IntegrityError:
            raise self._commit_conflict("A namespace with that name") from None

    def delete_namespace(self, ctx: RequestContext, name: str) -> None:
        with self.db.transaction() as s:
            ns = self._authorized(ctx, s, name, "delete_metadef_namespace")
            if ns.protected:
                raise Forbidden(f"Namespace {name} is protected and cannot be deleted.")
            for model in (MetadefObject, MetadefProperty, MetadefTag):
                s.execute(delete(model).where(model.namespace_id == ns.id))
            s.execute(delete(MetadefResourceTypeAssoc).where(
                MetadefResourceTypeAssoc.namespace_id == ns.id))
            s.delete(ns)

    def _delete_all(self, ctx: RequestContext, name: str, model: Any, action: str) -> None:
        with self.db.transaction() as s:
            ns = self._authorized(ctx, s, name, action)
            if ns.protected:
                raise Forbidden(f"Namespace {name} is protected; its contents cannot be "
                                "deleted.")
            s.execute(delete(model).where(model.namespace_id == ns.id))
            self._touch(ns)

    def delete_all_objects(self, ctx: RequestContext, name: str) -> None:
        self._delete_all(ctx, name, MetadefObject, "delete_metadef_object")

    def delete_all_properties(self, ctx: RequestContext, name: str) -> None:
        self._delete_all(ctx, name, MetadefProperty, "remove_metadef_property")

    def delete_all_tags(self, ctx: RequestContext, name: str) -> None:
        self._delete_all(ctx, name, MetadefTag, "delete_metadef_tags")

    # ------------------------------------------------------------------ objects
    def create_object(self, ctx: RequestContext, ns_name: str, body: Any) -> dict[str, Any]:
        return self._add_item(ctx, ns_name, "add_metadef_object", MetadefObject, "Object",
                              lambda ns, row: _object_doc(ns.namespace, row),
                              check_object(body))

    def _object(self, s: Session, ns: MetadefNamespace, name: str) -> MetadefObject:
        row = s.scalar(select(MetadefObject).where(MetadefObject.namespace_id == ns.id,
                                                   MetadefObject.name == name))
        if row is None:
            raise NotFound(f"Metadata definition object {name} was not found in namespace "
                           f"{ns.namespace}.")
        return row

    def list_objects(self, ctx: RequestContext, ns_name: str) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, ns_name, "get_metadef_objects")
            return [_object_doc(ns.namespace, o) for o in s.scalars(
                select(MetadefObject).where(MetadefObject.namespace_id == ns.id)
                .order_by(MetadefObject.created_at, MetadefObject.name))]

    def get_object(self, ctx: RequestContext, ns_name: str, name: str) -> dict[str, Any]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, ns_name, "get_metadef_object")
            return _object_doc(ns.namespace, self._object(s, ns, name))

    def update_object(self, ctx: RequestContext, ns_name: str, name: str,
                      body: Any) -> dict[str, Any]:
        return self._update_item(ctx, ns_name, "modify_metadef_object", name, self._object,
                                 "Object", lambda ns, row: _object_doc(ns.namespace, row),
                                 check_object(body))

    def delete_object(self, ctx: RequestContext, ns_name: str, name: str) -> None:
        with self.db.transaction() as s:
            ns = self._authorized(ctx, s, ns_name, "delete_metadef_object")
            s.delete(self._object(s, ns, name))

    # ------------------------------------------------------------------ properties
    def _property_body(self, body: Any) -> tuple[str, dict[str, Any]]:
        doc = _object_body(body)
        doc = {k: v for k, v in doc.items() if k not in _ECHOED}
        name = _name(doc.get("name"), "Property name", 255)
        return name, check_property(name, doc)

    def create_property(self, ctx: RequestContext, ns_name: str, body: Any) -> dict[str, Any]:
        name, schema = self._property_body(body)
        return self._add_item(ctx, ns_name, "add_metadef_property", MetadefProperty,
                              "Property", lambda ns, row: _property_doc(row),
                              {"name": name, "schema": schema})

    def _property(self, s: Session, ns: MetadefNamespace, name: str) -> MetadefProperty:
        row = s.scalar(select(MetadefProperty).where(MetadefProperty.namespace_id == ns.id,
                                                     MetadefProperty.name == name))
        if row is None:
            # ``<prefix><name>``: a property looked up under a resource type's prefix.
            for a in s.scalars(select(MetadefResourceTypeAssoc).where(
                    MetadefResourceTypeAssoc.namespace_id == ns.id)):
                if a.prefix and name.startswith(a.prefix):
                    row = s.scalar(select(MetadefProperty).where(
                        MetadefProperty.namespace_id == ns.id,
                        MetadefProperty.name == name[len(a.prefix):]))
                    if row is not None:
                        break
        if row is None:
            raise NotFound(f"Metadata definition property {name} was not found in namespace "
                           f"{ns.namespace}.")
        return row

    def list_properties(self, ctx: RequestContext, ns_name: str) -> dict[str, Any]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, ns_name, "get_metadef_properties")
            return {p.name: dict(p.schema or {}) for p in s.scalars(
                select(MetadefProperty).where(MetadefProperty.namespace_id == ns.id)
                .order_by(MetadefProperty.name))}

    def get_property(self, ctx: RequestContext, ns_name: str, name: str) -> dict[str, Any]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, ns_name, "get_metadef_property")
            row = self._property(s, ns, name)
            return _property_doc(row, name[:len(name) - len(row.name)])

    def update_property(self, ctx: RequestContext, ns_name: str, name: str,
                        body: Any) -> dict[str, Any]:
        new_name, schema = self._property_body(body)
        return self._update_item(ctx, ns_name, "modify_metadef_property", name,
                                 self._property, "Property", lambda ns, row: _property_doc(row),
                                 {"name": new_name, "schema": schema})

    def delete_property(self, ctx: RequestContext, ns_name: str, name: str) -> None:
        with self.db.transaction() as s:
            ns = self._authorized(ctx, s, ns_name, "remove_metadef_property")
            s.delete(self._property(s, ns, name))

    # ------------------------------------------------------------------ tags
    def _tag(self, s: Session, ns: MetadefNamespace, name: str) -> MetadefTag:
        row = s.scalar(select(MetadefTag).where(MetadefTag.namespace_id == ns.id,
                                                MetadefTag.name == name))
        if row is None:
            raise NotFound(f"Metadata tag {name} was not found in namespace {ns.namespace}.")
        return row

    def create_tag(self, ctx: RequestContext, ns_name: str, name: str) -> dict[str, Any]:
        return self._add_item(ctx, ns_name, "add_metadef_tag", MetadefTag, "Tag",
                              lambda ns, row: _tag_doc(row),
                              {"name": _name(name, "Tag name", TAG_MAX)})

    def create_tags(self, ctx: RequestContext, ns_name: str, body: Any,
                    append: bool) -> list[dict[str, Any]]:
        doc = _object_body(body)
        if set(doc) - {"tags"}:
            raise BadRequest("Request body must be {\"tags\": [{\"name\": ...}, ...]}.")
        names = _tag_list(doc.get("tags"))
        now = utcnow()
        try:
            with self.db.transaction() as s:
                ns = self._authorized(ctx, s, ns_name, "add_metadef_tags")
                if append:
                    have = set(s.scalars(select(MetadefTag.name).where(
                        MetadefTag.namespace_id == ns.id)))
                    dup = sorted(have & set(names))
                    if dup:
                        raise Conflict(f"Tags already exist in namespace {ns_name}: "
                                       f"{', '.join(dup)}.")
                else:
                    s.execute(delete(MetadefTag).where(MetadefTag.namespace_id == ns.id))
                s.add_all([MetadefTag(id=new_uuid(), namespace_id=ns.id, name=n,
                                      created_at=now, updated_at=now) for n in names])
                self._touch(ns)
                s.flush()
                return [{"name": n} for n in names]
        except IntegrityError:
            raise Conflict("Duplicate tag names.") from None

    def list_tags(self, ctx: RequestContext, ns_name: str) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, ns_name, "get_metadef_tags")
            return [_tag_doc(t) for t in s.scalars(select(MetadefTag).where(
                MetadefTag.namespace_id == ns.id).order_by(MetadefTag.created_at,
                                                           MetadefTag.name))]

    def get_tag(self, ctx: RequestContext, ns_name: str, name: str) -> dict[str, Any]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, ns_name, "get_metadef_tag")
            return _tag_doc(self._tag(s, ns, name))

    def update_tag(self, ctx: RequestContext, ns_name: str, name: str,
                   body: Any) -> dict[str, Any]:
        doc = _object_body(body)
        if set(doc) - {"name"} - _ECHOED:
            raise BadRequest("Request body must be {\"name\": ...}.")
        new_name = _name(doc.get("name"), "Tag name", TAG_MAX)
        return self._update_item(ctx, ns_name, "modify_metadef_tag", name, self._tag, "Tag",
                                 lambda ns, row: _tag_doc(row), {"name": new_name})

    def delete_tag(self, ctx: RequestContext, ns_name: str, name: str) -> None:
        with self.db.transaction() as s:
            ns = self._authorized(ctx, s, ns_name, "delete_metadef_tag")
            s.delete(self._tag(s, ns, name))

    # ------------------------------------------------------------------ resource types
    def list_resource_types(self, ctx: RequestContext) -> list[dict[str, Any]]:
        self._seed()
        with self.db.reader() as s:
            return [{"name": r.name, "created_at": isotime(r.created_at),
                     "updated_at": isotime(r.updated_at)}
                    for r in s.scalars(select(MetadefResourceType).order_by(
                        MetadefResourceType.created_at, MetadefResourceType.name))]

    def list_associations(self, ctx: RequestContext, ns_name: str) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            ns = self._authorized(ctx, s, ns_name, "list_metadef_resource_types")
            return self._assocs(s, [ns.id])[ns.id]

    def create_association(self, ctx: RequestContext, ns_name: str,
                           body: Any) -> dict[str, Any]:
        doc = _assoc_body(body)
        self._seed()
        try:
            with self.db.transaction() as s:
                ns = self._authorized(ctx, s, ns_name, "add_metadef_resource_type_association")
                out = self._associate(s, ns, doc, utcnow())
                self._touch(ns)
                return out
        except IntegrityError:
            raise Conflict(f"Resource type {doc['name']} is already associated with "
                           f"namespace {ns_name}.") from None

    def delete_association(self, ctx: RequestContext, ns_name: str, rt_name: str) -> None:
        with self.db.transaction() as s:
            ns = self._authorized(ctx, s, ns_name, "remove_metadef_resource_type_association")
            rt = s.scalar(select(MetadefResourceType).where(
                MetadefResourceType.name == rt_name))
            row = None if rt is None else s.get(MetadefResourceTypeAssoc, (ns.id, rt.id))
            if row is None:
                raise NotFound(f"Resource type {rt_name} is not associated with namespace "
                               f"{ns_name}.")
            s.delete(row)
            self._touch(ns)


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"'{what}' must be a list.")
    return value
