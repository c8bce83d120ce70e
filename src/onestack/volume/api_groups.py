"""Block-storage API routes for generic volume groups: group types (3.11), groups (3.13),
group snapshots (3.14), group creation from a source (3.14) and status resets (3.19/3.20)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import isotime
from onestack.volume.groups import Groups
from onestack.volume.microversion import version_of
from onestack.volume.params import _bool, _metadata, _obj, _one_item, _text, type_changes
from onestack.volume.records import GroupRecord, GroupSnapshotRecord, GroupTypeRecord
from onestack.volume.row_changes import only_key

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI

GROUP_STATUSES = ("available", "error", "creating", "deleting", "updating",
                  "in-use", "error_deleting")


class GroupRoutes:
    """Groups, group types and group snapshots."""

    def __init__(self, api: VolumeAPI) -> None:
        self.api = api
        self.g = Groups(api.m)
        self.g.ensure_default_type()

    @staticmethod
    def _since(req: ApiRequest, version: str) -> None:
        if version_of(req.request.scope) < version:
            raise NotFound("The resource could not be found.")

    @staticmethod
    def _policy(req: ApiRequest, action: str, project: str | None = None) -> None:
        req.enforce(action, {"project_id": project or req.ctx.project_id or ""})

    # ------------------------------------------------------------------ group types
    @staticmethod
    def _type_view(t: GroupTypeRecord) -> dict[str, Any]:
        return {"id": t.id, "name": t.name, "description": t.description,
                "is_public": t.is_public, "group_specs": dict(t.group_specs or {})}

    @serves("GET", "/v3/group_types")
    async def list_types(self, req: ApiRequest) -> dict[str, Any]:
        """Group types; ``is_public`` (admins) and ``sort=name:asc|desc`` as in Cinder."""
        self._since(req, "3.11")
        rows = await req.run(self.g.list_types, req.ctx)
        public = req.query.get("is_public")
        if req.ctx.is_admin and public is not None and public.lower() != "none":
            want = _bool(public, "is_public")
            rows = [t for t in rows if t.is_public == want]
        sort = req.query.get("sort", "")
        for part in reversed([p for p in sort.split(",") if p.strip()]):
            key, _, direction = part.strip().partition(":")
            if key not in ("name", "id", "created_at") or direction not in ("", "asc",
                                                                            "desc"):
                raise BadRequest(f"Invalid input received: invalid sort {part}.")
            rows.sort(key=lambda t, k=key: str(getattr(t, k)), reverse=direction == "desc")
        return {"group_types": [self._type_view(t) for t in rows]}

    @serves("GET", "/v3/group_types/{id}")
    async def show_type(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.11")
        return {"group_type": self._type_view(await req.run(self.g.get_type,
                                                            req.param("id")))}

    @serves("POST", "/v3/group_types")
    async def create_type(self, req: ApiRequest) -> Response:
        self._since(req, "3.11")
        self._policy(req, "group:group_types:create")
        body = _obj(await req.json(), "group_type")
        name = _text(body.get("name"), "name", nullable=False) or ""
        if not name.strip():
            raise BadRequest("Invalid input received: a group type needs a name.")
        t = await req.run(self.g.create_type, name, _text(body.get("description"),
                                                          "description"),
                          _bool(body.get("is_public", True), "is_public"),
                          _metadata(body.get("group_specs"), "group_specs"))
        return FastJSON({"group_type": self._type_view(t)}, status_code=202)

    @serves("PUT", "/v3/group_types/{id}")
    async def update_type(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.11")
        self._policy(req, "group:group_types:update")
        body = _obj(await req.json(), "group_type")
        changes = type_changes(body)
        t = await req.run(self.g.update_type, req.param("id"), changes)
        return {"group_type": self._type_view(t)}

    @serves("DELETE", "/v3/group_types/{id}")
    async def delete_type(self, req: ApiRequest) -> Response:
        self._since(req, "3.11")
        self._policy(req, "group:group_types:delete")
        await req.run(self.g.delete_type, req.param("id"))
        return Response(status_code=202)

    @serves("GET", "/v3/group_types/{id}/group_specs")
    async def list_specs(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.11")
        t = await req.run(self.g.get_type, req.param("id"))
        return {"group_specs": dict(t.group_specs or {})}

    @serves("POST", "/v3/group_types/{id}/group_specs")
    async def add_specs(self, req: ApiRequest) -> Response:
        self._since(req, "3.11")
        self._policy(req, "group:group_types_specs")
        specs = _metadata(_obj(await req.json(), "group_specs"), "group_specs")
        await req.run(self.g.set_specs, req.param("id"), specs)
        return FastJSON({"group_specs": specs}, status_code=202)

    @serves("GET", "/v3/group_types/{id}/group_specs/{key}")
    async def show_spec(self, req: ApiRequest) -> dict[str, Any]:
        specs = (await self.list_specs(req))["group_specs"]
        key = req.param("key")
        return only_key(specs, key, f"Group Type {req.param('id')} has no specs with key {key}.")

    @serves("PUT", "/v3/group_types/{id}/group_specs/{key}")
    async def put_spec(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.11")
        self._policy(req, "group:group_types_specs")
        spec = _one_item(await req.json(), req.param("key"), "group_specs")
        await req.run(self.g.set_specs, req.param("id"), spec)
        return spec

    @serves("DELETE", "/v3/group_types/{id}/group_specs/{key}")
    async def delete_spec(self, req: ApiRequest) -> Response:
        self._since(req, "3.11")
        self._policy(req, "group:group_types_specs")
        await req.run(self.g.delete_spec, req.param("id"), req.param("key"))
        return Response(status_code=202)

    # ------------------------------------------------------------------ groups
    def _summary(self, g: GroupRecord) -> dict[str, Any]:
        return {"id": g.id, "name": g.name}

    def _view(self, req: ApiRequest, g: GroupRecord, volumes: list[str] | None) -> dict[str, Any]:
        doc = {**self._summary(g), "description": g.description, "status": g.status,
               "availability_zone": g.availability_zone,
               "created_at": isotime(g.created_at, subsecond=True),
               "group_type": g.group_type_id, "volume_types": list(g.volume_type_ids or [])}
        ver = version_of(req.request.scope)
        if ver >= "3.14":
            doc["group_snapshot_id"] = g.group_snapshot_id
            doc["source_group_id"] = g.source_group_id
        if ver >= "3.25" and volumes is not None:
            doc["volumes"] = volumes
        return doc

    def _all(self, req: ApiRequest) -> bool:
        raw = req.query.get("all_tenants")
        return raw is not None and (raw == "" or _bool(raw, "all_tenants"))

    @serves("GET", "/v3/groups")
    async def list(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.13")
        self._policy(req, "group:get_all")
        return {"groups": [self._summary(g)
                           for g in await req.run(self.g.list, req.ctx, self._all(req))]}

    @serves("GET", "/v3/groups/detail")
    async def list_detail(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.13")
        self._policy(req, "group:get_all")
        rows = await req.run(self.g.list, req.ctx, self._all(req))
        return {"groups": [self._view(req, g, None) for g in rows]}

    @serves("GET", "/v3/groups/{id}")
    async def show(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.13")
        g, vols = await req.run(self.g.get, req.ctx, req.param("id"))
        self._policy(req, "group:get", g.project_id)
        listed = req.query.get("list_volume", "false").lower() in ("true", "1")
        return {"group": self._view(req, g, vols if listed else None)}

    @serves("POST", "/v3/groups")
    async def create(self, req: ApiRequest) -> Response:
        self._since(req, "3.13")
        self._policy(req, "group:create")
        body = _obj(await req.json(), "group")
        types = body.get("volume_types")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise BadRequest("Invalid input received: volume_types must be a list of volume "
                             "type ids or names.")
        g = await req.run(self.g.create, req.ctx, _text(body.get("name"), "name"),
                          _text(body.get("description"), "description"),
                          _text(body.get("group_type"), "group_type", nullable=False),
                          types, _text(body.get("availability_zone"), "availability_zone"))
        return FastJSON({"group": self._summary(g)}, status_code=202)

    @serves("PUT", "/v3/groups/{id}")
    async def update(self, req: ApiRequest) -> Response:
        self._since(req, "3.13")
        self._policy(req, "group:update")
        body = _obj(await req.json(), "group")

        def ids(key: str) -> list[str]:
            raw = body.get(key)
            if raw is None:
                return []
            if not isinstance(raw, str):
                raise BadRequest(f"Invalid input received: {key} is a comma-separated string.")
            return [x.strip() for x in raw.split(",") if x.strip()]
        name = _text(body["name"], "name") if "name" in body else None
        desc = _text(body["description"], "description") if "description" in body else None
        add, remove = ids("add_volumes"), ids("remove_volumes")
        if name is None and desc is None and not add and not remove:
            raise BadRequest("Invalid input received: name, description, add_volumes or "
                             "remove_volumes is required.")
        await req.run(self.g.update, req.ctx, req.param("id"), name, desc, add, remove)
        return Response(status_code=202)

    @serves("POST", "/v3/groups/{id}/action")
    async def action(self, req: ApiRequest) -> Response:
        self._since(req, "3.13")
        body = await req.json()
        gid = req.param("id")
        if isinstance(body, dict) and "delete" in body:
            self._policy(req, "group:delete")
            args = body["delete"] if isinstance(body["delete"], dict) else {}
            vols = await req.run(self.g.delete, req.ctx, gid,
                                 _bool(args.get("delete-volumes", False), "delete-volumes"))
            for vid in vols:
                self.api.later(self.api.m.finish_delete, vid)
            return Response(status_code=202)
        if isinstance(body, dict) and "reset_status" in body:
            self._since(req, "3.20")
            self._policy(req, "group:reset_status")
            status = _obj(body, "reset_status").get("status")
            if status not in GROUP_STATUSES:
                raise BadRequest(f"Invalid input received: {status} is not a group status.")
            await req.run(self.g.reset_status, req.ctx, gid, status)
            return Response(status_code=202)
        raise BadRequest("There is no such action.")

    @serves("POST", "/v3/groups/action")
    async def create_from_source(self, req: ApiRequest) -> Response:
        self._since(req, "3.14")
        self._policy(req, "group:create")
        args = _obj(await req.json(), "create-from-src")
        g, vols = await req.run(self.g.create_from_source, req.ctx,
                                _text(args.get("name"), "name"),
                                _text(args.get("description"), "description"),
                                _text(args.get("group_snapshot_id"), "group_snapshot_id"),
                                _text(args.get("source_group_id"), "source_group_id"))
        self.api.later(self.g.finish_from_source, g.id, vols)
        return FastJSON({"group": self._summary(g)}, status_code=202)

    # ------------------------------------------------------------------ group snapshots
    @staticmethod
    def _snap_view(gs: GroupSnapshotRecord, detail: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": gs.id, "name": gs.name}
        if detail:
            doc.update(description=gs.description, status=gs.status,
                       created_at=isotime(gs.created_at, subsecond=True),
                       group_id=gs.group_id, group_type_id=gs.group_type_id)
        return doc

    @serves("GET", "/v3/group_snapshots")
    @serves("GET", "/v3/group_snapshots/detail", detail=True)
    async def list_snapshots(self, req: ApiRequest, detail: bool = False) -> dict[str, Any]:
        self._since(req, "3.14")
        rows = await req.run(self.g.list_snapshots, req.ctx, self._all(req))
        return {"group_snapshots": [self._snap_view(gs, detail) for gs in rows]}

    @serves("GET", "/v3/group_snapshots/{id}")
    async def show_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        self._since(req, "3.14")
        gs = await req.run(self.g.get_snapshot, req.ctx, req.param("id"))
        return {"group_snapshot": self._snap_view(gs, True)}

    @serves("POST", "/v3/group_snapshots")
    async def create_snapshot(self, req: ApiRequest) -> Response:
        self._since(req, "3.14")
        self._policy(req, "group:create_group_snapshot")
        body = _obj(await req.json(), "group_snapshot")
        gs, snaps = await req.run(self.g.create_snapshot, req.ctx,
                                  _text(body.get("group_id"), "group_id", nullable=False),
                                  _text(body.get("name"), "name"),
                                  _text(body.get("description"), "description"))
        self.api.later(self.g.finish_snapshot, gs.id, snaps)
        return FastJSON({"group_snapshot": {"id": gs.id, "name": gs.name,
                                            "group_type_id": gs.group_type_id}},
                        status_code=202)

    @serves("DELETE", "/v3/group_snapshots/{id}")
    async def delete_snapshot(self, req: ApiRequest) -> Response:
        self._since(req, "3.14")
        self._policy(req, "group:delete_group_snapshot")
        snaps = await req.run(self.g.delete_snapshot, req.ctx, req.param("id"))
        for sid in snaps:
            self.api.later(self.api.m.finish_delete_snapshot, sid)
        return Response(status_code=202)

    @serves("POST", "/v3/group_snapshots/{id}/action")
    async def snapshot_action(self, req: ApiRequest) -> Response:
        self._since(req, "3.19")
        body = await req.json()
        if isinstance(body, dict) and "reset_status" in body:
            self._policy(req, "group:reset_group_snapshot_status")
            status = _obj(body, "reset_status").get("status")
            if status not in ("available", "error", "creating", "deleting",
                              "error_deleting"):
                raise BadRequest(f"Invalid input received: {status} is not a group snapshot "
                                 "status.")
            await req.run(self.g.reset_snapshot_status, req.ctx, req.param("id"), status)
            return Response(status_code=202)
        raise BadRequest("There is no such action.")
