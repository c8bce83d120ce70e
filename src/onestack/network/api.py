"""Network API routes (Neutron v2.0): parse -> manager -> view.

Collections share one pipeline for lists: the manager returns what the caller may see,
then filters (any attribute, repeated values are ORed; ``tags``/``tags-any``/``not-tags``/
``not-tags-any``), sorting (``sort_key``/``sort_dir``), pagination (``limit``/``marker``/
``page_reverse`` with ``{collection}_links``) and ``fields`` are applied here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, Service, add_declared, route
from onestack.api.bulk import json_response, run_bulk
from onestack.api.policy import Policy
from onestack.api.routes import serves
from onestack.api.versions import healthcheck
from onestack.common.errors import APIError, BadRequest, NotFound
from onestack.common.pagination import ASC, SortKey, parse_limit, parse_sort
from onestack.network import views
from onestack.network.manager import TAGGABLE, NetworkManager
from onestack.network.policies import RULES

RESERVED = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse", "tags",
            "tags-any", "not-tags", "not-tags-any", "verbose", "_"}

EXTENSIONS: list[tuple[str, str, str]] = [
    ("address-scope", "Address scope", "Address scopes extension."),
    ("agent", "agent", "The agent management extension."),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("availability_zone", "Availability Zone", "The availability zone extension."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external "
     "application"),
    ("default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a "
     "subnetpool as the default."),
    ("empty-string-filtering", "Empty String Filtering Extension", "Allow filtering by "
     "attributes with empty string value"),
    ("fip-port-details", "Floating IP Port Details Extension", "Add port_details "
     "attribute to Floating IP resource"),
    ("external-net", "Neutron external network", "Adds external network attribute to "
     "network resource."),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP."),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("fields", "Fields", "Lets clients choose the returned attributes."),
    ("filter-validation", "Filter parameters validation", "Reject unknown filters."),
    ("ip-substring-filtering", "IP address substring filtering", "Provides IP address "
     "substring filtering when listing ports"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a "
     "network resource."),
    ("network-ip-availability", "Network IP Availability", "Provides IP availability data "
     "for each network and subnet."),
    ("network_availability_zone", "Network Availability Zone", "Availability zone support "
     "for network."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is "
     "enabled."),
    ("port-security", "Port Security", "Provides port security"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id "
     "field is enabled."),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical "
     "networks"),
    ("quotas", "Quota management support", "Expose functions for quotas management per "
     "tenant"),
    ("quota_details", "Quota details management support", "Expose functions for quotas "
     "usage statistics per project"),
    ("revision-if-match", "If-Match constraints based on revision_number", "Extension "
     "indicating that If-Match based on revision_number is supported."),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 "
     "Neutron networks and access to external networks via a NAT gateway."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the "
     "router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("router_availability_zone", "Router Availability Zone", "Availability zone support for "
     "router."),
    ("security-group", "security-group", "The security groups extension."),
    ("service-type", "Neutron Service Type Management", "API for retrieving service "
     "providers for Neutron advanced services"),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add "
     "descriptions to standard attributes"),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display "
     "the revision number of neutron resources."),
    ("standard-attr-tag", "Tag support for resources with standard attribute", "Enables to "
     "set tag on resources with standard attribute."),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at "
     "fields to all Neutron resources that have Neutron standard attributes."),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet "
     "pool"),
    ("tag-ext", "Tag support for resources", "Extends tag support to more L2 and L3 "
     "resources."),
    ("stateful-security-group", "Stateful security group", "Indicates if the security "
     "group is stateful or not"),
]


def neutron_fault(err: APIError) -> tuple[dict[str, Any] | str, str]:
    """``{"NeutronError": {"type", "message", "detail"}}``."""
    kind = err.kind
    generic = {"BadRequest": "HTTPBadRequest", "ValidationError": "HTTPBadRequest",
               "NotFound": "HTTPNotFound", "Conflict": "HTTPConflict",
               "Forbidden": "HTTPForbidden", "Unauthorized": "HTTPUnauthorized",
               "MethodNotAllowed": "HTTPMethodNotAllowed", "APIError": "HTTPInternalServerError",
               "PayloadTooLarge": "HTTPRequestEntityTooLarge",
               "UnsupportedMediaType": "HTTPUnsupportedMediaType"}
    kind = generic.get(kind, kind)
    return ({"NeutronError": {"type": kind, "message": err.message, "detail": ""}},
            "application/json")


def build_policy(policy_file: str | None) -> Policy:
    return Policy(RULES, policy_file, denied="rule:{action} is disallowed by policy")


@dataclass
class Collection:
    """One REST collection and the manager calls behind it."""

    name: str
    member: str
    list: Callable[..., list[dict[str, Any]]]
    get: Callable[..., dict[str, Any]] | None = None
    create: Callable[..., list[dict[str, Any]]] | None = None
    update: Callable[..., dict[str, Any]] | None = None
    delete: Callable[..., None] | None = None
    attrs_key: str = ""

    @classmethod
    def of(cls, manager: NetworkManager, name: str, member: str,
           update: bool = True) -> Collection:
        """The collection ``name`` of ``member`` items, served by the manager's methods of
        the usual names: ``list_<name>``, ``get_<member>``, ``create_<name>`` (bulk),
        ``update_<member>`` (none when ``update`` is false) and ``delete_<member>``."""
        return cls(name, member, getattr(manager, f"list_{name}"),
                   getattr(manager, f"get_{member}"), getattr(manager, f"create_{name}"),
                   getattr(manager, f"update_{member}") if update else None,
                   getattr(manager, f"delete_{member}"))


def _revision(req: ApiRequest) -> int | None:
    header = req.headers.get("if-match")
    if not header:
        return None
    for part in header.split(","):
        part = part.strip()
        if part.startswith("revision_number="):
            try:
                return int(part.split("=", 1)[1])
            except ValueError:
                raise BadRequest("Invalid If-Match header: revision_number must be an "
                                 "integer.", kind="HTTPBadRequest") from None
    return None


def _as_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _matches(item: dict[str, Any], key: str, wanted: list[str]) -> bool:
    value = item.get(key)
    if key == "fixed_ips":
        for want in wanted:
            k, _, v = want.partition("=")
            for ip in value or []:
                if k == "ip_address_substr" and v in ip["ip_address"]:
                    return True
                if k in ip and ip[k] == v:
                    return True
                if k == "ip_address" and v and ip["ip_address"] and _same_ip(v, ip[k]):
                    return True
        return False
    if isinstance(value, list):
        flat = {_as_str(x) for x in value if not isinstance(x, dict)}
        return any(w in flat for w in wanted)
    if isinstance(value, dict):
        return False
    text = _as_str(value)
    if isinstance(value, bool):
        return any(w.lower() in (text, "1" if value else "0") for w in wanted)
    return text in wanted


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, list | dict):
        return (2, str(value))
    return (2, str(value))


class NetworkAPI:
    """Builds the network service: routes bound to a manager."""

    def __init__(self, manager: NetworkManager, policy: Policy, auth_uri: str,
                 max_limit: int = 10000) -> None:
        self.m = manager
        self.max_limit = max_limit
        self.service = Service(name="network", routes=[], fault=neutron_fault, policy=policy,
                               auth_uri=auth_uri)
        m = manager
        self.collections = {
            "networks": Collection.of(m, "networks", "network"),
            "subnets": Collection.of(m, "subnets", "subnet"),
            "subnetpools": Collection.of(m, "subnetpools", "subnetpool"),
            "address-scopes": Collection.of(m, "address_scopes", "address_scope"),
            "ports": Collection.of(m, "ports", "port"),
            "routers": Collection.of(m, "routers", "router"),
            "floatingips": Collection.of(m, "floatingips", "floatingip"),
            "security-groups": Collection.of(m, "security_groups", "security_group"),
            "security-group-rules": Collection.of(m, "security_group_rules",
                                                  "security_group_rule", update=False),
            "agents": Collection("agents", "agent", m.list_agents, m.get_agent, None,
                                 self._update_agent, self._delete_agent),
        }
        self._add_routes()

    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    def _add_routes(self) -> None:
        # Creates first: the busiest route (port creation) then matches at once; no other
        # POST route has a one-segment path, so the order changes no other match.
        self._r("/v2.0/{coll}", self.create, ["POST"])
        self._r("/healthcheck", healthcheck, ["GET", "HEAD"], public=True)
        add_declared(self.service, self)

    # ------------------------------------------------------------------ discovery
    @serves("GET", "/", public=True)
    async def versions(self, req: ApiRequest) -> dict[str, Any]:
        return {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
            {"href": req.base_url + "/v2.0/", "rel": "self"}]}]}

    @serves("GET", "/v2.0")
    async def resources(self, req: ApiRequest) -> dict[str, Any]:
        names = [("network", "networks"), ("subnet", "subnets"),
                 ("subnetpool", "subnetpools"), ("address_scope", "address-scopes"),
                 ("port", "ports"), ("router", "routers"),
                 ("floatingip", "floatingips"), ("security_group", "security-groups"),
                 ("security_group_rule", "security-group-rules"), ("agent", "agents"),
                 ("quota", "quotas"), ("availability_zone", "availability_zones"),
                 ("network_ip_availability", "network-ip-availabilities"),
                 ("service_provider", "service-providers"),
                 ("extension", "extensions")]
        base = req.base_url + "/v2.0/"
        return {"resources": [{"name": n, "collection": c, "links": [
            {"href": base + c, "rel": "self"}]} for n, c in names]}

    @serves("GET", "/v2.0/extensions")
    async def extensions(self, req: ApiRequest) -> dict[str, Any]:
        return {"extensions": [self._ext(e) for e in EXTENSIONS]}

    @staticmethod
    def _ext(e: tuple[str, str, str]) -> dict[str, Any]:
        return {"alias": e[0], "name": e[1], "description": e[2],
                "updated": "2024-01-01T00:00:00-00:00", "links": []}

    @serves("GET", "/v2.0/extensions/{alias}")
    async def extension(self, req: ApiRequest) -> dict[str, Any]:
        alias = req.param("alias")
        for e in EXTENSIONS:
            if e[0] == alias:
                return {"extension": self._ext(e)}
        raise NotFound(f"Extension with alias {alias} does not exist",
                       kind="HTTPNotFound")

    @serves("GET", "/v2.0/availability_zones")
    async def availability_zones(self, req: ApiRequest) -> dict[str, Any]:
        items = [{"name": "nova", "resource": r, "state": "available"}
                 for r in ("network", "router")]
        return self._list_doc(req, "availability_zones", items, paginate=False)

    @serves("GET", "/v2.0/service-providers")
    async def service_providers(self, req: ApiRequest) -> dict[str, Any]:
        """The flavors of service this cloud offers (``service-type``): the L3 router,
        served by onestack's own router implementation, is the only one and the default."""
        req.enforce("get_service_provider", {"project_id": req.ctx.project_id or ""})
        items = [{"service_type": "L3_ROUTER_NAT", "name": "onestack", "default": True}]
        return self._list_doc(req, "service_providers", items, paginate=False)

    @serves("GET", "/v2.0/network-ip-availabilities")
    async def ip_availabilities(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("get_network_ip_availability", {"project_id": req.ctx.project_id or ""})
        items = await req.run(self.m.ip_availabilities, req.ctx)
        if "ip_version" in req.query:
            want = req.query.getlist("ip_version")
            items = [dict(i, subnet_ip_availability=[s for s in i["subnet_ip_availability"]
                                                     if str(s["ip_version"]) in want])
                     for i in items]
            items = [i for i in items if i["subnet_ip_availability"]]
            items = [dict(i, total_ips=sum(s["total_ips"] for s in i["subnet_ip_availability"]),
                          used_ips=sum(s["used_ips"] for s in i["subnet_ip_availability"]))
                     for i in items]
        return self._list_doc(req, "network_ip_availabilities", items, paginate=False,
                              skip={"ip_version"})

    @serves("GET", "/v2.0/network-ip-availabilities/{id}")
    async def ip_availability(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("get_network_ip_availability", {"project_id": req.ctx.project_id or ""})
        items = await req.run(self.m.ip_availabilities, req.ctx)
        for i in items:
            if i["network_id"] == req.param("id"):
                return {"network_ip_availability": self._fields(req, i)}
        raise NotFound(f"Network {req.param('id')} could not be found.",
                       kind="NetworkNotFound")

    # ------------------------------------------------------------------ quotas
    @serves("GET", "/v2.0/quotas")
    async def list_quotas(self, req: ApiRequest) -> dict[str, Any]:
        return {"quotas": await req.run(self.m.list_quotas, req.ctx)}

    @serves("GET", "/v2.0/quotas/tenant")
    async def quota_tenant(self, req: ApiRequest) -> dict[str, Any]:
        return {"tenant": {"tenant_id": req.ctx.project_id, "project_id": req.ctx.project_id}}

    @serves("GET", "/v2.0/quotas/{project_id}")
    async def show_quota(self, req: ApiRequest) -> dict[str, Any]:
        return {"quota": await req.run(self.m.get_quota, req.ctx, req.param("project_id"))}

    @serves("GET", "/v2.0/quotas/{project_id}/default")
    async def default_quota(self, req: ApiRequest) -> dict[str, Any]:
        return {"quota": self.m.default_quota(req.ctx, req.param("project_id"))}

    @serves("GET", "/v2.0/quotas/{project_id}/details")
    async def quota_details(self, req: ApiRequest) -> dict[str, Any]:
        return {"quota": await req.run(self.m.quota_details, req.ctx,
                                       req.param("project_id"))}

    @serves("PUT", "/v2.0/quotas/{project_id}")
    async def update_quota(self, req: ApiRequest) -> dict[str, Any]:
        body = await req.json()
        if not isinstance(body, dict) or not isinstance(body.get("quota"), dict):
            raise BadRequest("Resource body required: {'quota': {...}}",
                             kind="HTTPBadRequest")
        return {"quota": await req.run(self.m.update_quota, req.ctx, req.param("project_id"),
                                       body["quota"])}

    @serves("DELETE", "/v2.0/quotas/{project_id}")
    async def delete_quota(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_quota, req.ctx, req.param("project_id"))

    # ------------------------------------------------------------------ routers
    @serves("PUT", "/v2.0/routers/{id}/add_router_interface")
    async def add_interface(self, req: ApiRequest) -> dict[str, Any]:
        body = await req.json()
        return await req.run(self.m.add_router_interface, req.ctx, req.param("id"), body)

    @serves("PUT", "/v2.0/routers/{id}/remove_router_interface")
    async def remove_interface(self, req: ApiRequest) -> dict[str, Any]:
        body = await req.json()
        return await req.run(self.m.remove_router_interface, req.ctx, req.param("id"), body)

    # ------------------------------------------------------------------ agents
    def _update_agent(self, ctx: Any, aid: str, body: dict[str, Any],
                      revision: int | None = None) -> dict[str, Any]:
        return self.m.update_agent(ctx, aid, body)

    def _delete_agent(self, ctx: Any, aid: str, revision: int | None = None) -> None:
        self.m.delete_agent(ctx, aid)

    # ------------------------------------------------------------------ tags
    def _tag_resource(self, req: ApiRequest) -> str:
        res = req.param("resource")
        if res not in TAGGABLE:
            raise NotFound("The resource could not be found.", kind="HTTPNotFound")
        return res

    @serves("GET", "/v2.0/{resource}/{id}/tags")
    async def get_tags(self, req: ApiRequest) -> dict[str, Any]:
        return {"tags": await req.run(self.m.get_tags, req.ctx, self._tag_resource(req),
                                      req.param("id"))}

    @serves("GET", "/v2.0/{resource}/{id}/tags/{tag}")
    async def get_tag(self, req: ApiRequest) -> Response:
        tag = req.param("tag")
        if not await req.run(self.m.has_tag, req.ctx, self._tag_resource(req),
                             req.param("id"), tag):
            raise NotFound(f"Tag {tag} could not be found.", kind="TagNotFound")
        return Response(status_code=204)

    @serves("PUT", "/v2.0/{resource}/{id}/tags")
    async def put_tags(self, req: ApiRequest) -> dict[str, Any]:
        body = await req.json()
        if not isinstance(body, dict) or "tags" not in body:
            raise BadRequest("Invalid input for tags: a 'tags' list is required.",
                             kind="HTTPBadRequest")
        tags = await req.run(self.m.set_tags, req.ctx, self._tag_resource(req),
                             req.param("id"), body["tags"], _revision(req))
        return {"tags": tags}

    @serves("PUT", "/v2.0/{resource}/{id}/tags/{tag}")
    async def put_tag(self, req: ApiRequest) -> Response:
        await req.run(self.m.add_tag, req.ctx, self._tag_resource(req), req.param("id"),
                      req.param("tag"), _revision(req))
        return Response(status_code=201)

    @serves("DELETE", "/v2.0/{resource}/{id}/tags")
    async def delete_tags(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_tag, req.ctx, self._tag_resource(req), req.param("id"),
                      None, _revision(req))

    @serves("DELETE", "/v2.0/{resource}/{id}/tags/{tag}")
    async def delete_tag(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_tag, req.ctx, self._tag_resource(req), req.param("id"),
                      req.param("tag"), _revision(req))

    # ------------------------------------------------------------------ collections
    def _coll(self, req: ApiRequest) -> Collection:
        name = req.param("coll")
        coll = self.collections.get(name)
        if coll is None:
            raise NotFound("The resource could not be found.", kind="HTTPNotFound")
        return coll

    def _fields(self, req: ApiRequest, item: dict[str, Any]) -> dict[str, Any]:
        fields = [f for v in req.query.getlist("fields") for f in v.split(",") if f]
        if not fields:
            return item
        return {k: v for k, v in item.items() if k in fields}

    def _filter(self, req: ApiRequest, coll_name: str, items: list[dict[str, Any]],
                skip: set[str] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
        known = views.ATTRIBUTES.get(coll_name, set())
        filters: dict[str, list[str]] = {}
        for key, value in req.query.multi_items():
            if key in RESERVED or key in skip:
                continue
            if key not in known:
                raise BadRequest(f"{key} is an invalid filter for {coll_name}",
                                 kind="HTTPBadRequest")
            filters.setdefault(key, []).append(value)
        out = [i for i in items if all(_matches(i, k, v) for k, v in filters.items())]
        tag_args = {k: [t for v in req.query.getlist(k) for t in v.split(",") if t]
                    for k in ("tags", "tags-any", "not-tags", "not-tags-any")}
        if any(tag_args.values()):
            def ok(item: dict[str, Any]) -> bool:
                tags = set(item.get("tags") or [])
                if tag_args["tags"] and not set(tag_args["tags"]) <= tags:
                    return False
                if tag_args["tags-any"] and not tags & set(tag_args["tags-any"]):
                    return False
                if tag_args["not-tags"] and set(tag_args["not-tags"]) <= tags:
                    return False
                return not (tag_args["not-tags-any"] and tags & set(tag_args["not-tags-any"]))
            out = [i for i in out if ok(i)]
        return out

    def _list_doc(self, req: ApiRequest, coll_name: str, items: list[dict[str, Any]],
                  paginate: bool = True, skip: set[str] = frozenset()  # type: ignore[assignment]
                  ) -> dict[str, Any]:
        items = self._filter(req, coll_name, items, skip)
        known = sorted(views.ATTRIBUTES.get(coll_name, set()))
        sort = parse_sort(req.query, known, [], default_dir=ASC, allow_combined=False)
        if sort:
            for s in reversed(sort):
                items.sort(key=lambda i, k=s.key: _sort_value(i.get(k)),
                           reverse=s.direction != ASC)
        doc: dict[str, Any] = {}
        if paginate and ("limit" in req.query or "marker" in req.query):
            limit = parse_limit(req.query, self.max_limit, self.max_limit)
            if not sort:
                items.sort(key=lambda i: i.get("id", ""))
                sort = [SortKey("id", ASC)]
            reverse = req.query.get("page_reverse", "false").lower() == "true"
            seq = list(reversed(items)) if reverse else items
            marker = req.query.get("marker")
            start = 0
            if marker:
                idx = next((n for n, i in enumerate(seq) if i.get("id") == marker), None)
                if idx is None:
                    raise NotFound(f"Marker {marker} could not be found.",
                                   kind="HTTPNotFound")
                start = idx + 1
            page = seq[start:start + limit] if limit else seq[start:]
            more = bool(limit) and start + limit < len(seq)
            if reverse:
                page = list(reversed(page))
            links = []
            base = req.base_url + req.request.url.path
            keep = [(k, v) for k, v in req.query.multi_items()
                    if k not in ("marker", "page_reverse", "limit")]
            from urllib.parse import urlencode
            if page:
                nxt_more = more if not reverse else bool(marker)
                prev_more = bool(marker) if not reverse else more
                if nxt_more:
                    q = keep + [("limit", str(limit)), ("marker", page[-1]["id"])]
                    links.append({"href": f"{base}?{urlencode(q)}", "rel": "next"})
                if prev_more:
                    q = keep + [("limit", str(limit)), ("marker", page[0]["id"]),
                                ("page_reverse", "True")]
                    links.append({"href": f"{base}?{urlencode(q)}", "rel": "previous"})
            items = page
            doc[f"{coll_name}_links"] = links
        doc[coll_name] = [self._fields(req, i) for i in items]
        return doc

    @serves("GET", "/v2.0/{coll}")
    async def list(self, req: ApiRequest) -> Response:
        coll = self._coll(req)
        eq: dict[str, list[str]] = {}
        if coll.name == "ports":
            for key in ("network_id", "device_id", "device_owner", "id"):
                vals = req.query.getlist(key)
                if vals:
                    eq[key] = vals
        # The page — query, filters, sorting, fields, JSON — is bulk work: off the loop.
        return await run_bulk(self._list_page, req, coll, eq)

    def _list_page(self, req: ApiRequest, coll: Collection,
                   eq: dict[str, list[str]]) -> Response:
        """One rendered list page of a collection (blocking; the bulk pool)."""
        items = coll.list(req.ctx, **eq)
        return json_response(self._list_doc(req, coll.name, items))

    @serves("GET", "/v2.0/{coll}/{id}")
    async def show(self, req: ApiRequest) -> dict[str, Any]:
        coll = self._coll(req)
        if coll.get is None:
            raise NotFound("The resource could not be found.", kind="HTTPNotFound")
        item = await req.run(coll.get, req.ctx, req.param("id"))
        return {coll.member: self._fields(req, item)}

    async def create(self, req: ApiRequest) -> Response:
        coll = self._coll(req)
        if coll.create is None:
            raise APIError("The method is not allowed for the requested URL.", status=405,
                           kind="HTTPMethodNotAllowed")
        body = await req.json()
        if not isinstance(body, dict):
            raise BadRequest("Resource body required", kind="HTTPBadRequest")
        if coll.name in body:
            bodies = body[coll.name]
            if not isinstance(bodies, list) or not bodies or not all(
                    isinstance(b, dict) for b in bodies):
                raise BadRequest("Bulk operation requires a non-empty list of objects.",
                                 kind="HTTPBadRequest")
            bulk = True
        elif coll.member in body:
            if not isinstance(body[coll.member], dict):
                raise BadRequest(f"Unable to find '{coll.member}' in request body",
                                 kind="HTTPBadRequest")
            bodies = [body[coll.member]]
            bulk = False
        else:
            raise BadRequest(f"Unable to find '{coll.member}' in request body",
                             kind="HTTPBadRequest")
        docs = None
        if coll.name == "ports":  # in place when that cannot block the event loop
            docs = self.m.create_ports_nowait(req.ctx, [dict(b) for b in bodies])
        if docs is None:
            docs = await req.run(coll.create, req.ctx, [dict(b) for b in bodies])
        if bulk:
            return FastJSON({coll.name: docs}, status_code=201)
        return FastJSON({coll.member: docs[0]}, status_code=201)

    @serves("PUT", "/v2.0/{coll}/{id}")
    async def update(self, req: ApiRequest) -> dict[str, Any]:
        coll = self._coll(req)
        if coll.update is None:
            raise APIError("The method is not allowed for the requested URL.", status=405,
                           kind="HTTPMethodNotAllowed")
        body = await req.json()
        if not isinstance(body, dict) or not isinstance(body.get(coll.member), dict):
            raise BadRequest(f"Unable to find '{coll.member}' in request body",
                             kind="HTTPBadRequest")
        item = await req.run(coll.update, req.ctx, req.param("id"), body[coll.member],
                             _revision(req))
        return {coll.member: item}

    @serves("DELETE", "/v2.0/{coll}/{id}")
    async def delete(self, req: ApiRequest) -> None:
        coll = self._coll(req)
        if coll.delete is None:
            raise APIError("The method is not allowed for the requested URL.", status=405,
                           kind="HTTPMethodNotAllowed")
        await req.run(coll.delete, req.ctx, req.param("id"), _revision(req))
