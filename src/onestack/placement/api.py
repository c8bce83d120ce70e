"""Placement API routes (OpenStack Placement 1.0 – 1.39): parse -> manager -> view.

Routes live at the root of the endpoint (``/resource_providers``, ``/allocations`` …), as in
Placement. The microversion comes from ``PlacementWrapper`` (``microversion.py``); a route
newer than the requested version answers 404, like Placement.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import (
    ApiRequest,
    FastJSON,
    Service,
    TokenValidator,
    add_declared,
    make_app,
    route,
)
from onestack.api.explanations import EXPLANATIONS
from onestack.api.policy import Policy
from onestack.api.routes import serves
from onestack.api.versions import healthcheck
from onestack.common.errors import APIError, NotFound
from onestack.common.ids import is_uuid
from onestack.placement import errors, schemas, views
from onestack.placement.manager import (
    ANY,
    INCOMPLETE_ID,
    ConsumerRequest,
    PlacementManager,
    ProviderQuery,
    RequestGroup,
)
from onestack.placement.microversion import (
    MAX_VERSION,
    MIN_VERSION,
    SCOPE_KEY,
    PlacementWrapper,
    Version,
    error_body,
    fmt,
)
from onestack.placement.policies import RULES


def placement_fault(err: APIError) -> tuple[dict[str, Any], str]:
    """Placement's ``{"errors": [{"status", "title", "detail", "code", "request_id"}]}``.

    ``request_id`` is filled in (and ``code`` dropped before 1.23) by ``PlacementWrapper``.
    """
    explanation = EXPLANATIONS.get(err.status, err.title)
    detail = f"{explanation}\n\n {err.message}  "
    return (error_body(err.status, err.title, detail, "", errors.code_of(err.kind)),
            "application/json")


def build_policy(policy_file: str | None = None) -> Policy:
    return Policy(RULES, policy_file)


def build_app(manager: PlacementManager, validator: TokenValidator | None, policy: Policy,
              auth_uri: str, max_body: int) -> Any:
    """The placement ASGI app, microversion layer included."""
    api = PlacementAPI(manager, policy, auth_uri)
    return PlacementWrapper(make_app(api.service, validator, max_body))


def _version(req: ApiRequest) -> Version:
    return req.request.scope.get(SCOPE_KEY, MIN_VERSION)  # type: ignore[no-any-return]


def _need(req: ApiRequest, minimum: Version) -> Version:
    v = _version(req)
    if v < minimum:
        raise NotFound("The resource could not be found.")
    return v


def _gate(req: ApiRequest, rule: str, since: Version = MIN_VERSION) -> Version:
    """The request's microversion, once it is at least ``since`` (404 below, like Placement)
    and the policy allows ``rule`` (403); the version is always checked first."""
    v = _need(req, since)
    req.enforce(rule)
    return v


async def _call(req: ApiRequest, rule: str, fn: Callable[..., Any], *params: str,
                since: Version = MIN_VERSION) -> Any:
    """``_gate``, then the manager's ``fn`` run with the named path parameters, in order."""
    _gate(req, rule, since)
    return await req.run(fn, *(req.param(name) for name in params))


async def _body(req: ApiRequest, schema: dict[str, Any]) -> Any:
    """The JSON body (400 when missing or malformed), checked against ``schema``."""
    body = await req.json()
    schemas.validate(body, schema)
    return body


def _put_answer(created: bool, location: str) -> Response:
    """The answer to an idempotent ``PUT`` of a named thing: 201 when it was made, 204 when
    it was there already, with its ``Location`` either way."""
    return Response(status_code=201 if created else 204, headers={"Location": location})


def _aggregates_doc(aggregates: list[str], gen: int, v: Version) -> dict[str, Any]:
    """A provider's aggregates document; the provider generation is in it from 1.19."""
    out: dict[str, Any] = {"aggregates": aggregates}
    if v >= (1, 19):
        out["resource_provider_generation"] = gen
    return out


def _norm_uuid(value: str) -> str:
    return str(uuidlib.UUID(value))


_SUFFIX_13 = re.compile(r"^[1-9][0-9]*$")
_SUFFIX_33 = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: Query parameters of ``GET /allocation_candidates``: (name, first microversion, whether
#: a request group may carry it with a suffix, as ``resources1``).
_CANDIDATE_PARAMS: tuple[tuple[str, Version, bool], ...] = (
    ("resources", (1, 0), True), ("limit", (1, 16), False), ("required", (1, 17), True),
    ("member_of", (1, 21), True), ("group_policy", (1, 25), False),
    ("in_tree", (1, 31), True), ("root_required", (1, 35), False),
    ("same_subtree", (1, 36), False))


class _Query:
    """Strict query-string access: unknown keys and repeated single keys are 400s."""

    def __init__(self, req: ApiRequest, allowed: set[str],
                 repeatable: set[str] = frozenset(),  # type: ignore[assignment]
                 prefixed: Callable[[str], bool] | None = None) -> None:
        self.items = list(req.query.multi_items())
        keys = [k for k, _ in self.items]
        unknown = sorted({k for k in keys if k not in allowed
                          and not (prefixed and prefixed(k))})
        if unknown:
            raise errors.bad_request(
                "Invalid query string parameters: Additional properties are not allowed "
                f"({', '.join(repr(k) for k in unknown)} were unexpected)")
        for k in set(keys):
            if keys.count(k) > 1 and k not in repeatable:
                raise errors.bad_request(f"Query parameter {k!r} may only appear once.",
                                         errors.QUERY_DUPLICATE_KEY)

    def get(self, key: str) -> str | None:
        for k, v in self.items:
            if k == key:
                return v
        return None

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key]


def parse_resources(text: str) -> dict[str, int]:
    """``VCPU:2,MEMORY_MB:512`` -> ``{"VCPU": 2, "MEMORY_MB": 512}`` (400 when malformed)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        rc, _, amount = part.strip().partition(":")
        if not rc or not amount.strip().isdigit() or int(amount) < 1 or rc in out:
            raise errors.bad_request(
                "Badly formed resources parameter. Expected resources query string parameter "
                f"in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {text}.",
                errors.QUERY_BAD_VALUE)
        out[rc.strip()] = int(amount)
    return out


def parse_required(values: list[str], v: Version, key: str = "required",
                   ) -> tuple[list[frozenset[str]], set[str]]:
    """Trait expressions: ``A,!B`` (forbidden 1.22+), ``in:A,B`` (any-of, 1.39+)."""
    required: list[frozenset[str]] = []
    forbidden: set[str] = set()
    for value in values:
        if value.startswith("in:"):
            if v < (1, 39):
                raise errors.bad_request(f"Invalid query string parameters: {key}={value}")
            names = [n.strip() for n in value[3:].split(",")]
            if not all(names) or any(n.startswith("!") for n in names):
                raise errors.bad_request(f"Invalid {key} value: {value}",
                                         errors.QUERY_BAD_VALUE)
            required.append(frozenset(names))
            continue
        for raw in value.split(","):
            name = raw.strip()
            if name.startswith("!") and v >= (1, 22):
                if not name[1:]:
                    raise errors.bad_request(f"Invalid {key} value: {value}",
                                             errors.QUERY_BAD_VALUE)
                forbidden.add(name[1:])
            elif not name or not re.match(schemas.RC_PATTERN, name):
                raise errors.bad_request(
                    f"Invalid query string parameters: Expected '{key}' parameter value of "
                    f"the form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: {value}",
                    errors.QUERY_BAD_VALUE)
            else:
                required.append(frozenset([name]))
    both = {n for s in required if len(s) == 1 for n in s} & forbidden
    if both:
        raise errors.bad_request(
            f"Conflicting required and forbidden traits found in the following traits "
            f"keys: {', '.join(sorted(both))}", errors.QUERY_BAD_VALUE)
    return required, forbidden


def parse_member_of(values: list[str], v: Version,
                    ) -> tuple[list[frozenset[str]], set[str]]:
    """``member_of``: ``agg``, ``in:a,b`` (any of), ``!agg``/``!in:a,b`` (none of, 1.32+)."""
    any_of: list[frozenset[str]] = []
    forbidden: set[str] = set()
    for value in values:
        neg = False
        text = value
        if text.startswith("!"):
            if v < (1, 32):
                raise errors.bad_request(f"Invalid member_of value: {value}",
                                         errors.QUERY_BAD_VALUE)
            neg, text = True, text[1:]
        if text.startswith("in:"):
            text = text[3:]
        elif "," in text:
            raise errors.bad_request(
                f"Invalid member_of value: {value}: use in: to give several aggregates.",
                errors.QUERY_BAD_VALUE)
        uuids = [u.strip() for u in text.split(",")]
        if not uuids or not all(is_uuid(u) for u in uuids):
            raise errors.bad_request(
                f"Invalid query string parameters: Expected 'member_of' parameter to contain "
                f"valid UUID(s). Got: {value}", errors.QUERY_BAD_VALUE)
        norm = {_norm_uuid(u) for u in uuids}
        if neg:
            forbidden |= norm
        else:
            any_of.append(frozenset(norm))
    return any_of, forbidden


def _int_param(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise errors.bad_request(f"Invalid query string parameters: {name} must be a "
                                 f"positive integer. Got: {value}", errors.QUERY_BAD_VALUE)
    return int(value)


def _uuid_param(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not is_uuid(value):
        raise errors.bad_request(f"Invalid query string parameters: {name} must be a UUID. "
                                 f"Got: {value}", errors.QUERY_BAD_VALUE)
    return _norm_uuid(value)


class PlacementAPI:
    """Builds the placement service: routes bound to a ``PlacementManager``."""

    def __init__(self, manager: PlacementManager, policy: Policy, auth_uri: str) -> None:
        self.m = manager
        self.service = Service(name="placement", routes=[], fault=placement_fault,
                               policy=policy, auth_uri=auth_uri)
        self._add_routes()

    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    def _add_routes(self) -> None:
        add_declared(self.service, self)
        self._r("/healthcheck", healthcheck, ["GET"], public=True)

    # ------------------------------------------------------------------ root
    @serves("GET", "/", public=True)
    async def versions(self, req: ApiRequest) -> dict[str, Any]:
        """Version document, like Placement's (one version with min/max microversion)."""
        return {"versions": [{"id": "v1.0", "max_version": fmt(MAX_VERSION),
                              "min_version": fmt(MIN_VERSION), "status": "CURRENT",
                              "links": [{"rel": "self", "href": ""}]}]}

    # ------------------------------------------------------------------ providers
    @serves("GET", "/resource_providers")
    async def list_providers(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:resource_providers:list")
        allowed = {"name", "uuid"}
        if v >= (1, 3):
            allowed.add("member_of")
        if v >= (1, 4):
            allowed.add("resources")
        if v >= (1, 14):
            allowed.add("in_tree")
        if v >= (1, 18):
            allowed.add("required")
        repeat = set()
        if v >= (1, 24):
            repeat.add("member_of")
        if v >= (1, 39):
            repeat.add("required")
        q = _Query(req, allowed, repeat)
        pq = ProviderQuery(name=q.get("name"), uuid=_uuid_param(q.get("uuid"), "uuid"),
                           in_tree=_uuid_param(q.get("in_tree"), "in_tree"))
        if q.getlist("member_of"):
            pq.member_of, pq.forbidden_aggregates = parse_member_of(q.getlist("member_of"), v)
        if q.get("resources") is not None:
            pq.resources = parse_resources(q.get("resources") or "")
        if q.getlist("required"):
            pq.required, pq.forbidden = parse_required(q.getlist("required"), v)
        providers = await req.run(self.m.list_providers, pq)
        return {"resource_providers": [views.provider(p, v) for p in providers]}

    @serves("POST", "/resource_providers")
    async def create_provider(self, req: ApiRequest) -> Response:
        v = _gate(req, "placement:resource_providers:create")
        body = await _body(req, schemas.provider_create(v))
        rp_uuid = _norm_uuid(body["uuid"]) if body.get("uuid") else None
        parent = body.get("parent_provider_uuid")
        info = await req.run(self.m.create_provider, body["name"], rp_uuid,
                             _norm_uuid(parent) if parent else None)
        location = f"/resource_providers/{info.uuid}"
        if v >= (1, 20):
            return FastJSON(views.provider(info, v), headers={"Location": location})
        return Response(status_code=201, headers={"Location": location})

    @serves("GET", "/resource_providers/{uuid}")
    async def show_provider(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:resource_providers:show")
        info = await req.run(self.m.get_provider, req.param("uuid"))
        return views.provider(info, v)

    @serves("PUT", "/resource_providers/{uuid}")
    async def update_provider(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:resource_providers:update")
        body = await _body(req, schemas.provider_update(v))
        parent: Any = ANY
        if "parent_provider_uuid" in body:
            parent = body["parent_provider_uuid"]
            parent = _norm_uuid(parent) if parent else None
        info = await req.run(self.m.update_provider, req.param("uuid"), body["name"], parent,
                             v >= (1, 37))
        return views.provider(info, v)

    @serves("DELETE", "/resource_providers/{uuid}")
    async def delete_provider(self, req: ApiRequest) -> None:
        await _call(req, "placement:resource_providers:delete", self.m.delete_provider, "uuid")

    # ------------------------------------------------------------------ inventories
    @serves("GET", "/resource_providers/{uuid}/inventories")
    async def list_inventories(self, req: ApiRequest) -> dict[str, Any]:
        gen, invs = await _call(req, "placement:resource_providers:inventories:list",
                                self.m.get_inventories, "uuid")
        return {"inventories": invs, "resource_provider_generation": gen}

    @serves("PUT", "/resource_providers/{uuid}/inventories")
    async def put_inventories(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:resource_providers:inventories:update")
        body = await _body(req, schemas.INVENTORIES_PUT)
        gen, invs = await req.run(self.m.set_inventories, req.param("uuid"),
                                  body["inventories"], body["resource_provider_generation"],
                                  v >= (1, 26))
        return {"inventories": invs, "resource_provider_generation": gen}

    @serves("POST", "/resource_providers/{uuid}/inventories")
    async def post_inventory(self, req: ApiRequest) -> Response:
        v = _gate(req, "placement:resource_providers:inventories:create")
        body = await _body(req, schemas.INVENTORY_POST)
        rc = body.pop("resource_class")
        gen, rec = await req.run(self.m.put_inventory, req.param("uuid"), rc, body, ANY,
                                 True, v >= (1, 26))
        return FastJSON({**rec, "resource_provider_generation": gen}, status_code=201,
                        headers={"Location": f"/resource_providers/{req.param('uuid')}"
                                             f"/inventories/{rc}"})

    @serves("DELETE", "/resource_providers/{uuid}/inventories")
    async def delete_inventories(self, req: ApiRequest) -> None:
        _gate(req, "placement:resource_providers:inventories:delete", since=(1, 5))
        await req.run(self.m.delete_inventory, req.param("uuid"), None)

    @serves("GET", "/resource_providers/{uuid}/inventories/{rc}")
    async def show_inventory(self, req: ApiRequest) -> dict[str, Any]:
        gen, rec = await _call(req, "placement:resource_providers:inventories:show",
                               self.m.get_inventory, "uuid", "rc")
        return {**rec, "resource_provider_generation": gen}

    @serves("PUT", "/resource_providers/{uuid}/inventories/{rc}")
    async def put_inventory(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:resource_providers:inventories:update")
        body = await _body(req, schemas.INVENTORY_PUT)
        gen_in = body.pop("resource_provider_generation")
        gen, rec = await req.run(self.m.put_inventory, req.param("uuid"), req.param("rc"),
                                 body, gen_in, False, v >= (1, 26))
        return {**rec, "resource_provider_generation": gen}

    @serves("DELETE", "/resource_providers/{uuid}/inventories/{rc}")
    async def delete_inventory(self, req: ApiRequest) -> None:
        await _call(req, "placement:resource_providers:inventories:delete",
                    self.m.delete_inventory, "uuid", "rc")

    @serves("GET", "/resource_providers/{uuid}/usages")
    async def provider_usages(self, req: ApiRequest) -> dict[str, Any]:
        gen, usages = await _call(req, "placement:resource_providers:usages",
                                  self.m.provider_usages, "uuid")
        return {"resource_provider_generation": gen, "usages": usages}

    # ------------------------------------------------------------------ aggregates
    @serves("GET", "/resource_providers/{uuid}/aggregates")
    async def get_aggregates(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:resource_providers:aggregates:list", since=(1, 1))
        gen, aggs = await req.run(self.m.get_aggregates, req.param("uuid"))
        return _aggregates_doc(aggs, gen, v)

    @serves("PUT", "/resource_providers/{uuid}/aggregates")
    async def put_aggregates(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:resource_providers:aggregates:update", since=(1, 1))
        body = await _body(req, schemas.aggregates_put(v))
        if v >= (1, 19):
            aggs, gen_in = body["aggregates"], body["resource_provider_generation"]
        else:
            aggs, gen_in = body, ANY
        gen, stored = await req.run(self.m.set_aggregates, req.param("uuid"),
                                    [_norm_uuid(a) for a in aggs], gen_in)
        return _aggregates_doc(stored, gen, v)

    # ------------------------------------------------------------------ provider traits
    @serves("GET", "/resource_providers/{uuid}/traits")
    async def get_provider_traits(self, req: ApiRequest) -> dict[str, Any]:
        gen, traits = await _call(req, "placement:resource_providers:traits:list",
                                  self.m.get_provider_traits, "uuid", since=(1, 6))
        return {"traits": traits, "resource_provider_generation": gen}

    @serves("PUT", "/resource_providers/{uuid}/traits")
    async def put_provider_traits(self, req: ApiRequest) -> dict[str, Any]:
        _gate(req, "placement:resource_providers:traits:update", since=(1, 6))
        body = await _body(req, schemas.PROVIDER_TRAITS_PUT)
        gen, traits = await req.run(self.m.set_provider_traits, req.param("uuid"),
                                    body["traits"], body["resource_provider_generation"])
        return {"traits": traits, "resource_provider_generation": gen}

    @serves("DELETE", "/resource_providers/{uuid}/traits")
    async def delete_provider_traits(self, req: ApiRequest) -> None:
        await _call(req, "placement:resource_providers:traits:delete",
                    self.m.delete_provider_traits, "uuid", since=(1, 6))

    @serves("GET", "/resource_providers/{uuid}/allocations")
    async def provider_allocations(self, req: ApiRequest) -> dict[str, Any]:
        gen, allocs = await _call(req, "placement:resource_providers:allocations:list",
                                  self.m.get_provider_allocations, "uuid")
        return {"allocations": {c: {"resources": res} for c, res in allocs.items()},
                "resource_provider_generation": gen}

    # ------------------------------------------------------------------ resource classes
    @serves("GET", "/resource_classes")
    async def list_classes(self, req: ApiRequest) -> dict[str, Any]:
        names = await _call(req, "placement:resource_classes:list",
                            self.m.list_resource_classes, since=(1, 2))
        return {"resource_classes": [views.resource_class(n) for n in names]}

    @serves("POST", "/resource_classes")
    async def create_class(self, req: ApiRequest) -> Response:
        _gate(req, "placement:resource_classes:create", since=(1, 2))
        body = await _body(req, schemas.RESOURCE_CLASS)
        await req.run(self.m.create_resource_class, body["name"])
        return Response(status_code=201,
                        headers={"Location": f"/resource_classes/{body['name']}"})

    @serves("GET", "/resource_classes/{name}")
    async def show_class(self, req: ApiRequest) -> dict[str, Any]:
        name = await _call(req, "placement:resource_classes:show", self.m.get_resource_class,
                           "name", since=(1, 2))
        return views.resource_class(name)

    @serves("PUT", "/resource_classes/{name}")
    async def put_class(self, req: ApiRequest) -> Any:
        v = _gate(req, "placement:resource_classes:update", since=(1, 2))
        name = req.param("name")
        if v >= (1, 7):
            if not re.match(schemas.CUSTOM_PATTERN, name):
                raise errors.bad_request(f"'{name}' is not a valid custom resource class "
                                         "name: it must match ^CUSTOM_[A-Z0-9_]+$")
            created = await req.run(self.m.create_resource_class, name, True)
            return _put_answer(created, f"/resource_classes/{name}")
        body = await _body(req, schemas.RESOURCE_CLASS)
        await req.run(self.m.rename_resource_class, name, body["name"])
        return views.resource_class(body["name"])

    @serves("DELETE", "/resource_classes/{name}")
    async def delete_class(self, req: ApiRequest) -> None:
        await _call(req, "placement:resource_classes:delete", self.m.delete_resource_class,
                    "name", since=(1, 2))

    # ------------------------------------------------------------------ traits
    @serves("GET", "/traits")
    async def list_traits(self, req: ApiRequest) -> dict[str, Any]:
        _gate(req, "placement:traits:list", since=(1, 6))
        q = _Query(req, {"name", "associated"})
        names = prefix = None
        name = q.get("name")
        if name is not None:
            if name.startswith("in:"):
                names = [n.strip() for n in name[3:].split(",") if n.strip()]
            elif name.startswith("startswith:"):
                prefix = name[len("startswith:"):]
            else:
                raise errors.bad_request(
                    f"Badly formatted name parameter. Expected name query string parameter "
                    f"in form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{name}\"")
        associated = None
        assoc = q.get("associated")
        if assoc is not None:
            low = assoc.lower()
            if low not in ("true", "false"):
                raise errors.bad_request(
                    f"Invalid query string parameters: associated must be true or false. "
                    f"Got: {assoc}")
            associated = low == "true"
        traits = await req.run(self.m.list_traits, names, prefix, associated)
        return {"traits": traits}

    @serves("GET", "/traits/{name}")
    async def show_trait(self, req: ApiRequest) -> Response:
        _gate(req, "placement:traits:show", since=(1, 6))
        name = req.param("name")
        if not await req.run(self.m.trait_exists, name):
            raise errors.not_found(f"No such trait(s): {name}.")
        return Response(status_code=204)

    @serves("PUT", "/traits/{name}")
    async def put_trait(self, req: ApiRequest) -> Response:
        _gate(req, "placement:traits:update", since=(1, 6))
        name = req.param("name")
        if not re.match(schemas.CUSTOM_PATTERN, name):
            raise errors.bad_request(f"The trait is invalid. A valid trait must be no longer "
                                     f"than 255 characters, start with the prefix "
                                     f"\"CUSTOM_\" and use following characters: \"A\"-\"Z\", "
                                     f"\"0\"-\"9\" and \"_\". Got: {name}")
        created = await req.run(self.m.create_trait, name)
        return _put_answer(created, f"/traits/{name}")

    @serves("DELETE", "/traits/{name}")
    async def delete_trait(self, req: ApiRequest) -> None:
        await _call(req, "placement:traits:delete", self.m.delete_trait, "name", since=(1, 6))

    # ------------------------------------------------------------------ allocations
    @serves("GET", "/allocations/{consumer}")
    async def get_allocations(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:allocations:list")
        consumer = req.param("consumer")
        got = await req.run(self.m.get_consumer_allocations, consumer)
        return views.consumer_allocations(got, v)

    @staticmethod
    def _consumer_request(doc: dict[str, Any], v: Version) -> ConsumerRequest:
        allocs = doc["allocations"]
        if isinstance(allocs, list):
            merged: dict[str, dict[str, int]] = {}
            for item in allocs:
                merged.setdefault(_norm_uuid(item["resource_provider"]["uuid"]), {}).update(
                    item["resources"])
            wanted = merged
        else:
            wanted = {_norm_uuid(rp): dict(x["resources"]) for rp, x in allocs.items()}
        return ConsumerRequest(
            wanted, doc.get("project_id") or INCOMPLETE_ID,
            doc.get("user_id") or INCOMPLETE_ID,
            doc["consumer_generation"] if v >= (1, 28) else ANY,
            doc.get("consumer_type") if v >= (1, 38) else None)

    @serves("PUT", "/allocations/{consumer}")
    async def put_allocations(self, req: ApiRequest) -> Response:
        v = _gate(req, "placement:allocations:update")
        consumer = req.param("consumer")
        if not is_uuid(consumer):
            raise errors.bad_request(f"Malformed consumer_uuid: {consumer}")
        body = await _body(req, schemas.allocations_put(v))
        creq = self._consumer_request(body, v)
        await req.run(self.m.set_allocations, {_norm_uuid(consumer): creq})
        return Response(status_code=204)

    @serves("POST", "/allocations")
    async def post_allocations(self, req: ApiRequest) -> Response:
        v = _gate(req, "placement:allocations:manage", since=(1, 13))
        body = await _body(req, schemas.allocations_post(v))
        wanted = {_norm_uuid(c): self._consumer_request(doc, v) for c, doc in body.items()}
        await req.run(self.m.set_allocations, wanted)
        return Response(status_code=204)

    @serves("DELETE", "/allocations/{consumer}")
    async def delete_allocations(self, req: ApiRequest) -> None:
        await _call(req, "placement:allocations:delete", self.m.delete_allocations, "consumer")

    # ------------------------------------------------------------------ usages
    @serves("GET", "/usages")
    async def usages(self, req: ApiRequest) -> dict[str, Any]:
        v = _need(req, (1, 9))
        # Placement's target: the project asked about (a project reader sees its own).
        req.enforce("placement:usages", {"project_id": req.query.get("project_id") or ""})
        allowed = {"project_id", "user_id"}
        if v >= (1, 38):
            allowed.add("consumer_type")
        q = _Query(req, allowed)
        project = q.get("project_id")
        if not project:
            raise errors.bad_request("Invalid query string parameters: 'project_id' is a "
                                     "required property", errors.QUERY_MISSING_VALUE)
        ctype = q.get("consumer_type")
        if ctype is not None and ctype not in ("all", "unknown") and not re.match(
                schemas.RC_PATTERN, ctype):
            raise errors.bad_request(f"Invalid consumer_type: {ctype}",
                                     errors.QUERY_BAD_VALUE)
        grouped = await req.run(self.m.usages, project, q.get("user_id"), ctype)
        if v >= (1, 38):
            return {"usages": grouped}
        flat: dict[str, int] = {}
        for group in grouped.values():
            for rc, used in group.items():
                if rc != "consumer_count":
                    flat[rc] = flat.get(rc, 0) + used
        return {"usages": flat}

    # ------------------------------------------------------------------ candidates
    @serves("GET", "/allocation_candidates")
    async def allocation_candidates(self, req: ApiRequest) -> dict[str, Any]:
        v = _gate(req, "placement:allocation_candidates:list", since=(1, 10))
        groups, kwargs = self._parse_candidates(req, v)
        cands = await req.run(lambda: self.m.allocation_candidates(groups, **kwargs))
        requested = {rc for g in groups for rc in g.resources}
        return views.candidates(cands, v, requested)

    def _parse_candidates(self, req: ApiRequest, v: Version,
                          ) -> tuple[list[RequestGroup], dict[str, Any]]:
        known = [(name, group) for name, since, group in _CANDIDATE_PARAMS if v >= since]
        allowed = {name for name, _ in known}
        base_keys = [name for name, group in known if group]
        suffix_re = _SUFFIX_33 if v >= (1, 33) else _SUFFIX_13

        def granular(key: str) -> bool:
            if v < (1, 25):
                return False
            for base in base_keys:
                if key.startswith(base) and key != base:
                    return bool(suffix_re.match(key[len(base):].lstrip("_")
                                                if v >= (1, 33) else key[len(base):]))
            return False

        repeat = {"same_subtree"}
        if v >= (1, 24):
            repeat.add("member_of")
        if v >= (1, 39):
            repeat |= {"required", "root_required"}
        items = list(req.query.multi_items())
        repeat |= {k for k, _ in items if granular(k) and (
            k.startswith("member_of") or (v >= (1, 39) and k.startswith("required")))}
        q = _Query(req, allowed, repeat, granular)
        suffixes: dict[str, dict[str, list[str]]] = {}
        for key, value in q.items:
            for base in base_keys:
                if key == base or (key.startswith(base) and granular(key)):
                    sfx = key[len(base):]
                    suffixes.setdefault(sfx, {}).setdefault(base, []).append(value)
                    break
        groups: list[RequestGroup] = []
        for sfx, params in suffixes.items():
            g = RequestGroup(suffix=sfx)
            if "resources" in params:
                g.resources = parse_resources(params["resources"][0])
            elif sfx:
                raise errors.bad_request(
                    f"All request groups must specify resources; resources{sfx} is missing.")
            if "required" in params:
                g.required, g.forbidden = parse_required(params["required"], v,
                                                         "required" + sfx)
            if "member_of" in params:
                g.member_of, g.forbidden_aggregates = parse_member_of(params["member_of"], v)
            if "in_tree" in params:
                g.in_tree = _uuid_param(params["in_tree"][0], "in_tree" + sfx)
            groups.append(g)
        if not any(g.resources for g in groups):
            raise errors.bad_request(
                "Invalid query string parameters: 'resources' is a required property"
                if v < (1, 25) else "At least one request group (`resources` or "
                "`resources{$S}`) is required.", errors.QUERY_MISSING_VALUE)
        unnamed = next((g for g in groups if not g.suffix), None)
        if unnamed is not None and not unnamed.resources:
            if unnamed.required or unnamed.member_of or unnamed.forbidden:
                # Constraints of the unnamed group without resources apply to every group.
                for g in groups:
                    if g.suffix:
                        g.required = g.required + unnamed.required
                        g.forbidden |= unnamed.forbidden
                        g.member_of = g.member_of + unnamed.member_of
                        g.forbidden_aggregates |= unnamed.forbidden_aggregates
                        g.in_tree = g.in_tree or unnamed.in_tree
            elif unnamed.in_tree:
                for g in groups:
                    g.in_tree = g.in_tree or unnamed.in_tree
        policy = q.get("group_policy")
        numbered = [g for g in groups if g.suffix]
        if policy is not None and policy not in ("none", "isolate"):
            raise errors.bad_request(f"Invalid group_policy: {policy}; expected 'none' or "
                                     "'isolate'.", errors.QUERY_BAD_VALUE)
        if len(numbered) > 1 and policy is None:
            raise errors.bad_request(
                "The \"group_policy\" parameter is required when specifying more than one "
                "\"resources{N}\" parameter.", errors.QUERY_MISSING_VALUE)
        kwargs: dict[str, Any] = {"group_policy": policy,
                                  "limit": _int_param(q.get("limit"), "limit"),
                                  "nested": v >= (1, 29)}
        if q.getlist("root_required"):
            rr, rf = parse_required(q.getlist("root_required"), v, "root_required")
            kwargs["root_required"], kwargs["root_forbidden"] = rr, rf
        subtrees = []
        for value in q.getlist("same_subtree"):
            names = [n.strip() for n in value.split(",")]
            known = {g.suffix for g in groups}
            if not all(names) or any(n not in known for n in names):
                raise errors.bad_request(
                    f"Real suffixes must be used in same_subtree. Got: {value}",
                    errors.QUERY_BAD_VALUE)
            subtrees.append(names)
        if subtrees:
            kwargs["same_subtree"] = subtrees
        return groups, kwargs
