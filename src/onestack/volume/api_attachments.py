"""Block-storage API routes for attachments (``/v3/attachments``, microversion 3.27+;
``os-complete`` at 3.44, the attach ``mode`` at 3.54)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.volume.attachments import Attachments, attachment_view
from onestack.volume.microversion import version_of
from onestack.volume.params import _obj, _text

_FILTERS = ("volume_id", "instance_id", "status", "project_id")


def _need(req: ApiRequest, version: str) -> None:
    """Below ``version`` the resource does not exist (Cinder answers 404)."""
    if version_of(req.request.scope) < version:
        raise NotFound("The resource could not be found.")


def _uuid(value: Any, field: str, required: bool) -> str | None:
    text = _text(value, field, nullable=not required)
    if text is None:
        if required:
            raise BadRequest(f"Invalid input for field/attribute {field}. Value: None.")
        return None
    if len(text) > 64 or not text.replace("-", "").isalnum():
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {text}. "
                         f"'{text}' is not a 'uuid'")
    return text


def _connector(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 64:
        raise BadRequest("Invalid input for field/attribute connector: an object is "
                         "expected.")
    for k, v in value.items():
        if not isinstance(k, str) or len(k) > 255:
            raise BadRequest("Invalid input for field/attribute connector.")
        if isinstance(v, str) and len(v) > 4096:
            raise BadRequest(f"Invalid input for field/attribute connector: {k} is too "
                             "long.")
    return value


class AttachmentRoutes:
    """Attachments (``/v3/attachments``, from 3.27)."""

    def __init__(self, attachments: Attachments,
                 guard: Callable[[Any, str, str | None], None]) -> None:
        self.a = attachments
        #: Refuses (409) removing an attachment the compute service uses.
        self.guard = guard

    @serves("GET", "/v3/attachments")
    @serves("GET", "/v3/attachments/detail", detail=True)
    async def list(self, req: ApiRequest, detail: bool = False) -> dict[str, Any]:
        _need(req, "3.27")
        filters = {k: req.query[k] for k in _FILTERS if req.query.get(k)}
        rows = await req.run(self.a.list, req.ctx, "all_tenants" in req.query, filters)
        return {"attachments": [attachment_view(v, detail) for v in rows]}

    @serves("GET", "/v3/attachments/{id}")
    async def show(self, req: ApiRequest) -> dict[str, Any]:
        _need(req, "3.27")
        view = await req.run(self.a.get, req.ctx, req.param("id"))
        return {"attachment": attachment_view(view, True)}

    @serves("POST", "/v3/attachments")
    async def create(self, req: ApiRequest) -> dict[str, Any]:
        _need(req, "3.27")
        body = _obj(await req.json(), "attachment")
        volume_id = _uuid(body.get("volume_uuid"), "volume_uuid", True) or ""
        instance = _uuid(body.get("instance_uuid"), "instance_uuid", False)
        connector = _connector(body.get("connector"))
        mode = "rw"
        if body.get("mode") is not None:
            if version_of(req.request.scope) < "3.54":
                raise BadRequest("Invalid input received: mode needs microversion 3.54.")
            if body["mode"] not in ("rw", "ro"):
                raise BadRequest(f"Invalid input for field/attribute mode. Value: "
                                 f"{body['mode']}. It must be 'rw' or 'ro'.")
            mode = body["mode"]
        view = await req.run(self.a.create, req.ctx, volume_id, instance, connector, mode)
        return {"attachment": attachment_view(view, True)}

    @serves("PUT", "/v3/attachments/{id}")
    async def update(self, req: ApiRequest) -> dict[str, Any]:
        _need(req, "3.27")
        body = _obj(await req.json(), "attachment")
        connector = _connector(body.get("connector"))
        if connector is None:
            raise BadRequest("Invalid input received: Must specify 'connector'.")
        view = await req.run(self.a.update, req.ctx, req.param("id"), connector)
        return {"attachment": attachment_view(view, True)}

    @serves("DELETE", "/v3/attachments/{id}")
    async def delete(self, req: ApiRequest) -> dict[str, Any]:
        _need(req, "3.27")
        view = await req.run(self.a.get, req.ctx, req.param("id"))
        await req.run(self.guard, req.ctx, view.volume_id, view.data["id"])
        rest = await req.run(self.a.delete, req.ctx, req.param("id"))
        return {"attachments": [attachment_view(v, False) for v in rest]}

    @serves("POST", "/v3/attachments/{id}/action")
    async def action(self, req: ApiRequest) -> Response:
        _need(req, "3.44")
        body = await req.json()
        if not isinstance(body, dict) or "os-complete" not in body or len(body) != 1:
            raise BadRequest("Invalid input received: the only attachment action is "
                             "os-complete.")
        await req.run(self.a.complete, req.ctx, req.param("id"))
        return Response(status_code=204)
