"""Identity API routes for unified limits: ``/v3/registered_limits``, ``/v3/limits`` and
``/v3/limits/model`` (Keystone's shapes, statuses and default policies)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import ValidationError
from onestack.identity import limits as lim
from onestack.identity import schemas, views
from onestack.identity.api_members import Member
from onestack.identity.limits import LimitStore
from onestack.identity.records import DocumentRecord

if TYPE_CHECKING:
    from onestack.identity.api import IdentityAPI

_REG_FIELDS = ("service_id", "region_id", "resource_name", "default_limit", "description")
_LIMIT_FIELDS = ("project_id", "domain_id", "service_id", "region_id", "resource_name",
                 "resource_limit", "description")


def _batch(body: Any, key: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    items = schemas.body_of(body, key)
    if not isinstance(items, list):
        raise ValidationError(f"Invalid input for field '{key}': a list is expected.")
    schemas.validate({"type": "object", "properties": {key: schema}}, {key: items}, key)
    return items


def _view(collection: str, fields: tuple[str, ...]
          ) -> Callable[[str, DocumentRecord], dict[str, Any]]:
    """The document of a (registered) limit: its id, ``fields`` and its link."""
    def view(base: str, d: DocumentRecord) -> dict[str, Any]:
        return {"id": d.id, **{k: d.data.get(k) for k in fields},
                "links": {"self": f"{base}/v3/{collection}/{d.id}"}}
    return view


async def _create(req: ApiRequest, policy: str, key: str, schema: dict[str, Any],
                  create: Callable[[list[dict[str, Any]]], Sequence[DocumentRecord]],
                  view: Callable[[str, DocumentRecord], dict[str, Any]]) -> Response:
    """A batch create (``POST /v3/registered_limits`` and ``/v3/limits``): the policy, the
    list under ``key`` checked against ``schema``, all created at once, 201 with them."""
    req.enforce(policy)
    items = _batch(await req.json(), key, schema)
    docs = await req.run(create, items)
    return FastJSON({key: [view(req.base_url, d) for d in docs]}, status_code=201)


class LimitRoutes:
    """Unified limits: registered limits, limits and the limit model."""

    def __init__(self, api: IdentityAPI) -> None:
        self.api = api
        self.m = api.m
        self.store = LimitStore(api.m)

    _reg_view = staticmethod(_view("registered_limits", _REG_FIELDS))
    _limit_view = staticmethod(_view("limits", _LIMIT_FIELDS))

    @staticmethod
    def _filters(req: ApiRequest, keys: tuple[str, ...]) -> dict[str, str]:
        return {k: req.query[k] for k in keys if k in req.query}

    # ------------------------------------------------------------------ registered limits
    @serves("GET", "/v3/registered_limits")
    async def list_registered(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_registered_limits")
        docs = await req.run(self.store.list_registered_limits,
                             self._filters(req, ("service_id", "region_id", "resource_name")))
        return views.listing(req.base_url, "registered_limits", "registered_limits",
                             self._reg_view, docs)

    @serves("POST", "/v3/registered_limits")
    async def create_registered(self, req: ApiRequest) -> Response:
        return await _create(req, "identity:create_registered_limits", "registered_limits",
                             lim.REGISTERED_LIMITS_CREATE, self.store.create_registered_limits,
                             self._reg_view)

    # ------------------------------------------------------------------ limits
    @serves("GET", "/v3/limits/model")
    async def model(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_limit_model")
        return {"model": dict(lim.MODEL)}

    def _visible_owners(self, req: ApiRequest) -> set[str] | None:
        """The projects/domains whose limits the caller may list (None: all). Keystone: a
        system (or here: cloud admin) token sees all; a domain token its domain's and its
        projects'; a project token its project's."""
        ctx = req.ctx
        if ctx.is_admin or ctx.system_scope:
            return None
        if ctx.domain_id:
            return {ctx.domain_id, *self.m.domain_project_ids(ctx.domain_id)}
        return {ctx.project_id} if ctx.project_id else set()

    @serves("GET", "/v3/limits")
    async def list_limits(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_limits")
        owners = await req.run(self._visible_owners, req)
        docs = await req.run(self.store.list_limits, self._filters(
            req, ("service_id", "region_id", "resource_name", "project_id", "domain_id")),
            owners)
        return views.listing(req.base_url, "limits", "limits", self._limit_view, docs)

    @serves("POST", "/v3/limits")
    async def create_limits(self, req: ApiRequest) -> Response:
        return await _create(req, "identity:create_limits", "limits", lim.LIMITS_CREATE,
                             self.store.create_limits, self._limit_view)

    def _project_domain(self, project_id: str | None) -> str | None:
        return self.m.domain_of_project(project_id) if project_id else None

    @serves("GET", "/v3/limits/{limit_id}")
    async def get_limit(self, req: ApiRequest) -> dict[str, Any]:
        d = await req.run(self.store.get_limit, req.param("limit_id"))
        project_domain = await req.run(self._project_domain, d.data.get("project_id"))
        req.enforce("identity:get_limit", {"target": {"limit": {
            "project_id": d.data.get("project_id"), "domain_id": d.data.get("domain_id"),
            "project": {"domain_id": project_domain}}}})
        return {"limit": self._limit_view(req.base_url, d)}

    # ------------------------------------------------------------------ members
    def members(self) -> tuple[Member, ...]:
        """Show, update and delete of registered limits; update and delete of limits (a
        limit's show checks its policy against the limit, above)."""
        st = self.store
        return (
            Member("/v3/registered_limits/{limit_id}", "registered_limit", self._reg_view,
                   st.get_registered_limit, st.update_registered_limit,
                   st.delete_registered_limit, lim.REGISTERED_LIMIT_UPDATE),
            Member("/v3/limits/{limit_id}", "limit", self._limit_view, None,
                   st.update_limit, st.delete_limit, lim.LIMIT_UPDATE))
