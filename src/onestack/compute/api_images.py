"""Compute API: nova's image proxy (``/images`` and their metadata, up to 2.35) over the image
service."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound
from onestack.common.timeutils import parse_isotime
from onestack.compute import schemas, views
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler


class ImageProxy(ResourceHandler):
    """Nova's image proxy (``/images`` and their metadata, up to 2.35) over the image service."""

    # ================================================================== images (proxy)
    def _image_doc(self, img: Any, base: str, detail: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": img.id, "name": img.name,
                               "links": [{"rel": "self", "href": f"{base}/v2.1/images/{img.id}"},
                                         {"rel": "bookmark",
                                          "href": f"{base}/images/{img.id}"}]}
        if detail:
            status = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING",
                      "deleted": "DELETED", "killed": "ERROR"}.get(img.status, "UNKNOWN")
            doc.update({"status": status, "progress": 100 if status == "ACTIVE" else 25,
                        "minDisk": img.min_disk, "minRam": img.min_ram,
                        "created": views.isotime(img.created_at),
                        "updated": views.isotime(img.updated_at),
                        "metadata": dict(img.properties), "OS-EXT-IMG-SIZE:size": img.size})
            if img.properties.get("instance_uuid"):
                sid = img.properties["instance_uuid"]
                doc["server"] = {"id": sid, "links": [
                    {"rel": "self", "href": f"{base}/v2.1/servers/{sid}"},
                    {"rel": "bookmark", "href": f"{base}/servers/{sid}"}]}
        return doc

    @serves("GET", "/v2.1/images")
    @serves("GET", "/v2.1/images/detail", detail=True)
    async def list_images(self, req: ApiRequest, detail: bool = False) -> dict[str, Any]:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        q = await req.run(self.images.parse_list_query, {}, 1000, 1000)
        imgs, _ = await req.run(self.images.list, req.ctx, q)
        f = req.query
        imgs = sorted(imgs, key=lambda i: (i.created_at, i.id), reverse=True)
        if f.get("name"):
            imgs = [i for i in imgs if i.name == f.get("name")]
        if f.get("status"):
            wanted = f.get("status").upper()
            imgs = [i for i in imgs if self._image_doc(i, "", True)["status"] == wanted]
        if f.get("server"):
            sid = f.get("server").rstrip("/").rsplit("/", 1)[-1]
            imgs = [i for i in imgs if i.properties.get("instance_uuid") == sid]
        if f.get("type"):
            imgs = [i for i in imgs if i.properties.get("image_type") == f.get("type")]
        if f.get("changes-since"):
            try:
                since = parse_isotime(f.get("changes-since"))
            except ValueError:
                raise BadRequest("Invalid changes-since value") from None
            imgs = [i for i in imgs if i.updated_at >= since]
        if f.get("minRam"):
            imgs = [i for i in imgs if i.min_ram >= schemas.integer(f.get("minRam"), "minRam")]
        if f.get("minDisk"):
            imgs = [i for i in imgs if i.min_disk >= schemas.integer(f.get("minDisk"),
                                                                      "minDisk")]
        if f.get("marker"):
            ids = [i.id for i in imgs]
            if f.get("marker") not in ids:
                raise BadRequest(f"marker [{f.get('marker')}] not found")
            imgs = imgs[ids.index(f.get("marker")) + 1:]
        if f.get("limit"):
            imgs = imgs[:schemas.integer(f.get("limit"), "limit", 0)]
        return {"images": [self._image_doc(i, req.base_url, detail) for i in imgs]}

    @serves("GET", "/v2.1/images/{image_id}")
    async def show_image(self, req: ApiRequest) -> dict[str, Any]:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        try:
            img = await req.run(self.images.get, req.ctx, req.param("image_id"))
        except Exception:  # noqa: BLE001 - any lookup failure is "not found" here
            raise NotFound("Image not found.") from None
        return {"image": self._image_doc(img, req.base_url, True)}

    @serves("DELETE", "/v2.1/images/{image_id}")
    async def delete_image(self, req: ApiRequest) -> Response:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        try:
            await req.run(self.images.delete, req.ctx, req.param("image_id"))
        except Conflict:
            raise
        except Exception:  # noqa: BLE001
            raise NotFound("Image not found.") from None
        return Response(status_code=204)

    # ================================================================== image metadata
    async def _proxy_image(self, req: ApiRequest) -> Any:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        try:
            return await req.run(self.images.get, req.ctx, req.param("image_id"))
        except Exception:  # noqa: BLE001
            raise NotFound("Image not found.") from None

    @serves("GET", "/v2.1/images/{image_id}/metadata")
    async def image_metadata(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        return {"metadata": dict(img.properties)}

    async def _patch_image(self, req: ApiRequest, img: Any,
                           changes: list[tuple[str, list[str], Any]]) -> Any:
        try:
            return await req.run(self.images.update, req.ctx, img.id, changes)
        except (Forbidden, NotFound):
            raise
        except Exception as exc:  # noqa: BLE001 - image-side validation
            raise BadRequest(str(exc)) from None

    @serves("PUT POST", "/v2.1/images/{image_id}/metadata")
    async def set_image_metadata(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "metadata"))
        changes: list[tuple[str, list[str], Any]] = []
        if req.method == "PUT":
            changes += [("remove", [k], None) for k in img.properties if k not in meta]
        changes += [("add", [k], v) for k, v in meta.items()]
        out = await self._patch_image(req, img, changes)
        return {"metadata": dict(out.properties)}

    @serves("GET", "/v2.1/images/{image_id}/metadata/{key}")
    async def image_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        key = req.param("key")
        if key not in img.properties:
            raise NotFound("Image not found.")
        return {"meta": {key: img.properties[key]}}

    @serves("PUT", "/v2.1/images/{image_id}/metadata/{key}")
    async def set_image_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "meta"), "meta")
        key = req.param("key")
        if len(meta) != 1 or key not in meta:
            raise BadRequest("Request body and URI mismatch")
        await self._patch_image(req, img, [("add", [key], meta[key])])
        return {"meta": meta}

    @serves("DELETE", "/v2.1/images/{image_id}/metadata/{key}")
    async def delete_image_meta_item(self, req: ApiRequest) -> Response:
        img = await self._proxy_image(req)
        key = req.param("key")
        if key not in img.properties:
            raise NotFound("Image not found.")
        await self._patch_image(req, img, [("remove", [key], None)])
        return Response(status_code=204)
