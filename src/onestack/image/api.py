"""Image API routes (Glance v2): parse -> manager -> view.

Image data streams both ways without ever being held whole in memory: uploads are read from
the ASGI body in chunks, batched into a few MiB and fed to the store's writer pipeline (md5,
sha512 and the file write each in its own thread), at most ``UPLOAD_IN_FLIGHT`` batches ahead
of it, while the next batch arrives; downloads read the store in ``DOWNLOAD_CHUNK`` pieces in a
worker thread, one piece ahead of the one being sent. The app is built with the shared body
limit disabled, so JSON handlers enforce their own (``image_max_json_body``).

Faults are rendered as Glance renders them (``onestack.image.faults``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import queue
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from onestack.api.app import ApiRequest, FastJSON, Service, add_declared, route
from onestack.api.body import parse_json
from onestack.api.bulk import json_response, run_bulk
from onestack.api.http import BODY_READER, ZEROCOPY, BodyGone, BodyReader
from onestack.api.policy import Policy
from onestack.api.routes import serves
from onestack.api.versions import healthcheck
from onestack.common.errors import (
    APIError,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    UnsupportedMediaType,
)
from onestack.common.pagination import next_link
from onestack.drivers.imagestore.base import (
    DataNotFound,
    FileSlice,
    ImageStore,
    ImageWriter,
    StoreError,
)
from onestack.image import schemas, views
from onestack.image.cache import ImageCache
from onestack.image.faults import AcceptCapture, glance_fault
from onestack.image.formats import InspectingWriter
from onestack.image.manager import ImageManager, ListQuery
from onestack.image.metadefs import MetadefManager
from onestack.image.policies import RULES

#: ``AcceptCapture`` is the image app's outermost layer (``onestack.image.faults``).
__all__ = ["AcceptCapture", "ImageAPI", "build_policy", "glance_fault", "parse_patch"]

#: Versions we answer (newest first); 2.12 brings per-image tasks, 2.17 the location API.
VERSIONS = ["2.17", "2.16", "2.15", "2.14", "2.13", "2.12", "2.11", "2.10", "2.9", "2.8", "2.7",
            "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0"]
PATCH_TYPES = ("application/openstack-images-v2.1-json-patch",
               "application/openstack-images-v2.0-json-patch")
UPLOAD_BATCH = 2 << 20
#: Batches fed to the writer and not yet written: bounds an upload's memory (~8 MiB).
UPLOAD_IN_FLIGHT = 4
DOWNLOAD_CHUNK = 4 << 20

def build_policy(policy_file: str | None) -> Policy:
    return Policy(RULES, policy_file)


def _decode_pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise BadRequest(f"Invalid JSON pointer for this resource: '{path}'")
    parts = path[1:].split("/")
    out = []
    for p in parts:
        if re.search(r"~[^01]|~$", p):
            raise BadRequest(f"Invalid JSON pointer for this resource: '{path}'")
        out.append(p.replace("~1", "/").replace("~0", "~"))
    if any(not p for p in out):
        raise BadRequest(f"Invalid JSON pointer for this resource: '{path}'")
    return out


def parse_patch(body: Any) -> list[tuple[str, list[str], Any]]:
    """Validate a Glance JSON-patch document (2.1 ``op`` form or 2.0 ``{op: path}`` form)."""
    if not isinstance(body, list):
        raise BadRequest("Request body must be a JSON array of operation objects.")
    changes = []
    for item in body:
        if not isinstance(item, dict):
            raise BadRequest("Operations must be JSON objects.")
        if "op" in item:
            op = item.get("op")
            path = item.get("path")
            if "path" not in item:
                raise BadRequest("Unable to find 'path' in JSON Schema change")
        else:
            found = [k for k in ("add", "replace", "remove", "test", "copy", "move")
                     if k in item]
            if len(found) != 1:
                raise BadRequest("Unable to find `op` in JSON Schema change. It must be one "
                                 "of the following: add, remove, replace.")
            op = found[0]
            path = item[op]
        if op not in ("add", "replace", "remove"):
            raise BadRequest(f"Invalid operation: `{op}`: It must be one of the following: "
                             "add, remove, replace.")
        if op in ("add", "replace") and "value" not in item:
            raise BadRequest(f"Operation \"{op}\" requires a member named \"value\".")
        changes.append((op, _decode_pointer(path), item.get("value")))
    return changes


def _parse_md5(value: str) -> str:
    value = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise BadRequest("Invalid Content-MD5 header: expected an MD5 digest in hex or "
                         "base64.")
    return raw.hex()


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """(start, end inclusive) of a single ``bytes=`` range; 416 when unsatisfiable."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiable("Invalid or multiple ranges requested; one bytes= range "
                                  "is supported.", headers={"Content-Range": f"bytes */{size}"})
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        suffix = int(m.group(2))
        start, end = max(0, size - suffix), size - 1
        if suffix == 0:
            start = size
    end = min(end, size - 1)
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"Requested range not satisfiable for an image of {size} "
                                  "bytes.", headers={"Content-Range": f"bytes */{size}"})
    return start, end


class ImageAPI:
    """Builds the image service: routes bound to a manager and store."""

    def __init__(self, manager: ImageManager, store: ImageStore, policy: Policy,
                 auth_uri: str, max_json_body: int = 65536, default_limit: int = 25,
                 max_limit: int = 1000, cache_dir: Path | None = None) -> None:
        self.m = manager
        self.store = store
        self.max_json_body = max_json_body
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.service = Service(name="image", routes=[], fault=glance_fault, policy=policy,
                               auth_uri=auth_uri)
        self._tasks: set[asyncio.Task[None]] = set()
        root = getattr(store, "root", None)
        # Each API process has its own cache (as each Glance API node does).
        self.cache = ImageCache(manager, cache_dir or Path(
            root if isinstance(root, Path) else ".") / "cache")
        self.metadefs = MetadefManager(manager.db, manager.policy)
        self._add_routes()  # the metadefs' routes: ``image.metadefs_api.add_metadef_routes``

    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    def _add_routes(self) -> None:
        add_declared(self.service, self, self.cache)
        self._r("/healthcheck", healthcheck, ["GET", "HEAD"], public=True)

    # ------------------------------------------------------------------ helpers
    async def json_body(self, req: ApiRequest, media: tuple[str, ...] = ()) -> Any:
        """The JSON body, read with the image API's own size limit."""
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if media and ctype not in media:
            raise UnsupportedMediaType(f"Unsupported Content-Type: {ctype or 'none'}; "
                                       f"expected {' or '.join(media)}.")
        if not media and ctype and "json" not in ctype:
            raise UnsupportedMediaType(f"Unsupported Content-Type: {ctype}")
        length = req.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_json_body:
            raise PayloadTooLarge("Request Entity Too Large")
        chunks: list[bytes] = []
        seen = 0
        try:
            async for chunk in req.request.stream():
                seen += len(chunk)
                if seen > self.max_json_body:
                    raise PayloadTooLarge("Request Entity Too Large")
                chunks.append(chunk)
        except ClientDisconnect:
            raise BadRequest("The client disconnected while sending the request.") from None
        raw = b"".join(chunks)
        if not raw.strip():
            raise BadRequest("Body expected in request.")
        return parse_json(raw)

    def _image(self, info: Any) -> dict[str, Any]:
        locations = self.m.location_ops.location_docs(info) if self.m.show_locations else None
        return views.image(info, self.m.store_ids(info), locations)

    def _versions_doc(self, req: ApiRequest) -> dict[str, Any]:
        href = req.base_url + "/v2/"
        out = []
        for i, v in enumerate(VERSIONS):
            out.append({"id": f"v{v}", "status": "CURRENT" if i == 0 else "SUPPORTED",
                        "links": [{"rel": "self", "href": href}]})
        return {"versions": out}

    # ------------------------------------------------------------------ discovery
    @serves("GET", "/", public=True)
    async def versions_root(self, req: ApiRequest) -> Response:
        return FastJSON(self._versions_doc(req), status_code=300)

    @serves("GET", "/versions", public=True)
    @serves("GET", "/v2", public=True)
    @serves("GET", "/v2/", public=True)
    async def versions(self, req: ApiRequest) -> Response:
        return FastJSON(self._versions_doc(req))

    @serves("GET", "/v2/schemas/{name:path}")
    async def schema(self, req: ApiRequest) -> dict[str, Any]:
        name = req.param("name").strip("/")
        docs: dict[str, Callable[[], dict[str, Any]]] = {
            "image": schemas.image_schema, "images": schemas.images_schema,
            "member": schemas.member_schema, "members": schemas.members_schema,
        }
        if name in docs:
            return docs[name]()
        meta = schemas.metadef_schemas()
        if name in meta:
            return meta[name]
        raise NotFound(f"No schema named {name}.")

    @serves("GET", "/v2/info/import")
    async def info_import(self, req: ApiRequest) -> dict[str, Any]:
        return {"import-methods": {"description": "Import methods available.",
                                   "type": "array", "value": self.m.import_methods}}

    @serves("GET", "/v2/info/stores")
    async def info_stores(self, req: ApiRequest) -> dict[str, Any]:
        return {"stores": self.m.stores.info()}

    @serves("GET", "/v2/info/usage")
    async def info_usage(self, req: ApiRequest) -> dict[str, Any]:
        return {"usage": await req.run(self.m.unified_usage, req.ctx.project_id)}

    # ------------------------------------------------------------------ images
    @serves("GET", "/v2/images")
    async def list_images(self, req: ApiRequest) -> Response:
        req.enforce("get_images", {"project_id": req.ctx.project_id or ""})
        q = self.m.parse_list_query(req.query, self.default_limit, self.max_limit)
        # The page — query, shaping, JSON — is bulk work: off the loop (api/bulk.py).
        return await run_bulk(self._list_page, req, q)

    def _list_page(self, req: ApiRequest, q: ListQuery) -> Response:
        """One rendered page of ``GET /v2/images`` (blocking; the bulk pool)."""
        images, more = self.m.list(req.ctx, q)
        doc: dict[str, Any] = {"images": [self._image(i) for i in images],
                               "schema": "/v2/schemas/images"}
        first_query = [(k, v) for k, v in req.query.multi_items() if k != "marker"]
        doc["first"] = "/v2/images" + ("?" + urlencode(first_query) if first_query else "")
        if more and images:
            doc["next"] = next_link("/v2/images", req.query, images[-1].id,
                                    q.limit if "limit" in req.query else None)
        return json_response(doc)

    @serves("POST", "/v2/images")
    async def create_image(self, req: ApiRequest) -> Response:
        req.enforce("add_image", {"project_id": req.ctx.project_id or ""})
        body = await self.json_body(req)
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object describing the image.")
        info = await req.run(self.m.create, req.ctx, body)
        return FastJSON(self._image(info), status_code=201, headers={
            "Location": f"{req.base_url}/v2/images/{info.id}",
            "OpenStack-image-import-methods": ",".join(self.m.import_methods)})

    @serves("GET", "/v2/images/{image_id}")
    async def show_image(self, req: ApiRequest) -> dict[str, Any]:
        info = await req.run(self.m.get, req.ctx, req.param("image_id"))
        req.enforce("get_image", info.target)
        return self._image(info)

    @serves("PATCH", "/v2/images/{image_id}")
    async def update_image(self, req: ApiRequest) -> dict[str, Any]:
        image_id = req.param("image_id")
        body = await self.json_body(req, PATCH_TYPES)
        changes = parse_patch(body)
        info = await req.run(self.m.update, req.ctx, image_id, changes)
        return self._image(info)

    @serves("DELETE", "/v2/images/{image_id}")
    async def delete_image(self, req: ApiRequest) -> None:
        await req.run(self.m.delete, req.ctx, req.param("image_id"))
        await run_in_threadpool(self.cache.forget, req.param("image_id"))

    @serves("DELETE", "/v2/stores/{store_id}/{image_id}")
    async def delete_from_store(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_from_store, req.ctx, req.param("image_id"),
                      req.param("store_id"))

    @serves("POST", "/v2/images/{image_id}/actions/deactivate")
    async def deactivate(self, req: ApiRequest) -> None:
        await req.run(self.m.deactivate, req.ctx, req.param("image_id"))

    @serves("POST", "/v2/images/{image_id}/actions/reactivate")
    async def reactivate(self, req: ApiRequest) -> None:
        await req.run(self.m.reactivate, req.ctx, req.param("image_id"))

    # ------------------------------------------------------------------ data
    @serves("PUT", "/v2/images/{image_id}/file")
    async def upload(self, req: ApiRequest) -> Response:
        return await self._receive(req, staging=False)

    @serves("PUT", "/v2/images/{image_id}/stage")
    async def stage(self, req: ApiRequest) -> Response:
        return await self._receive(req, staging=True)

    async def _receive(self, req: ApiRequest, staging: bool) -> Response:
        """Stream a request body into the store (PUT file / PUT stage)."""
        image_id = req.param("image_id")
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype != "application/octet-stream":
            raise UnsupportedMediaType(f"Unsupported Content-Type: {ctype}; image data must "
                                       "be sent as application/octet-stream.")
        length: int | None = None
        if req.headers.get("content-length"):
            length = int(req.headers["content-length"])
        expected_md5 = None
        for header in ("content-md5", "x-image-meta-checksum"):
            if req.headers.get(header):
                expected_md5 = _parse_md5(req.headers[header])
        expected_size: int | None = None
        if req.headers.get("x-image-meta-size"):
            try:
                expected_size = int(req.headers["x-image-meta-size"])
            except ValueError:
                raise BadRequest("Invalid x-image-meta-size header.") from None
        if expected_size is not None and length is not None and expected_size != length:
            raise BadRequest(f"Size mismatch: x-image-meta-size is {expected_size} but the "
                             f"body is {length} bytes.")
        store = self.m.stores.staging if staging else self.m.stores.default
        if not staging and req.headers.get("x-image-meta-store"):
            store = self.m.stores.get(req.headers["x-image-meta-store"].strip())
        info, left = await req.run(self.m.begin_upload, req.ctx, image_id, staging, length)
        reader: BodyReader | None = req.request.scope.get("extensions", {}).get(BODY_READER)
        writer: ImageWriter | None = None
        committed = False
        batches = _Batches(asyncio.get_running_loop())
        # Uploads are inspected as they stream (staged data when it is imported): Glance.
        inspector = None if staging else self.m.format_inspector(info)
        try:
            if length is not None and left is not None and length > left:
                raise self._over_quota()
            writer = await run_in_threadpool(store.begin, image_id, staging)
            if inspector is not None:
                writer = InspectingWriter(writer, inspector)
            total = 0
            if reader is not None and length is not None and length >= UPLOAD_BATCH:
                # A big sized body: read from the socket by a worker thread.
                head, _rest = reader.take()
                total = await run_in_threadpool(_pump, reader, head, writer)
            else:
                async for chunk in req.request.stream():
                    if not chunk:
                        continue
                    total += len(chunk)
                    if left is not None and total > left:
                        raise self._over_quota()
                    if expected_size is not None and total > expected_size:
                        raise BadRequest(f"Size mismatch: more than the expected "
                                         f"{expected_size} bytes were sent.")
                    await batches.add(chunk, writer)
                await batches.flush(writer)
            await run_in_threadpool(writer.drain)
            if length is not None and total != length:
                raise BadRequest(f"Size mismatch: expected {length} bytes, received {total}.")
            if expected_size is not None and total != expected_size:
                raise BadRequest(f"Size mismatch: expected {expected_size} bytes, received "
                                 f"{total}.")
            if expected_md5 is not None:
                got = writer.md5_hexdigest()
                if got != expected_md5:
                    raise BadRequest(f"Checksum mismatch: the data's MD5 is {got}, expected "
                                     f"{expected_md5}.")
            verdict = inspector.check(final=True) if inspector is not None else None
            stored = await run_in_threadpool(writer.commit)
            committed = True
            await req.run(self.m.finish_upload, image_id, stored, staging, store.store_id,
                          verdict)
        except BaseException as exc:
            if writer is not None and not committed:
                await run_in_threadpool(writer.abort)
            await run_in_threadpool(self.m.abort_upload, image_id, staging)
            if isinstance(exc, (ClientDisconnect, BodyGone)):
                raise BadRequest("The client disconnected before all image data arrived; "
                                 "nothing was stored.") from None
            if isinstance(exc, StoreError):
                raise APIError(f"Image data could not be stored: {exc}",
                               status=503) from None
            raise
        finally:
            if reader is not None:
                reader.close()
        return Response(status_code=204)

    def _over_quota(self) -> PayloadTooLarge:
        return PayloadTooLarge("Denying attempt to upload image because it exceeds the "
                               "quota.")

    @serves("GET", "/v2/images/{image_id}/file")
    async def download(self, req: ApiRequest) -> Response:
        info = await req.run(self.m.get, req.ctx, req.param("image_id"))
        req.enforce("download_image", info.target)
        if info.status == "deactivated" and not req.ctx.is_admin:
            raise Forbidden("The requested image has been deactivated. Image data download is "
                            "forbidden.")
        if not info.location or info.status not in ("active", "deactivated"):
            return Response(status_code=204)
        size = int(info.size or 0)
        headers = {"Content-Type": "application/octet-stream"}
        status = 200
        start, end = 0, size - 1
        rng = req.headers.get("range")
        crange = req.headers.get("content-range")
        if rng:
            start, end = _parse_range(rng, size)
            status = 206
        elif crange:
            m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", crange)
            if not m:
                raise RangeNotSatisfiable("Invalid Content-Range header.",
                                          headers={"Content-Range": f"bytes */{size}"})
            start, end = _parse_range(f"bytes={m.group(1)}-{m.group(2)}", size)
            status = 206
        length = max(0, end - start + 1)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        elif info.checksum:
            headers["Content-MD5"] = info.checksum
        headers["Content-Length"] = str(length)
        try:
            it = await run_in_threadpool(self.cache.open, info.id, start, length,
                                         DOWNLOAD_CHUNK)
            if it is None:
                it = await run_in_threadpool(self.m.stores.open, info.location, start, length,
                                             DOWNLOAD_CHUNK)
        except DataNotFound:
            raise NotFound(f"Image data of {info.id} is not available.") from None
        except StoreError as exc:
            raise APIError(f"Image data could not be read: {exc}", status=503) from None
        if isinstance(it, FileSlice) and ZEROCOPY in req.request.scope.get("extensions", {}):
            return _FileSliceResponse(it, status, headers)
        return StreamingResponse(_stream(it), status_code=status, headers=headers)

    # ------------------------------------------------------------------ import / tasks
    @serves("POST", "/v2/images/{image_id}/import")
    async def import_image(self, req: ApiRequest) -> Response:
        image_id = req.param("image_id")
        body = await self.json_body(req)
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object.")
        task_id = await req.run(self.m.start_import, req.ctx, image_id, body,
                                req.ctx.request_id,
                                req.headers.get("x-image-meta-store", "").strip() or None)
        self._background(self.m.run_import, task_id, req.ctx.token)
        return Response(status_code=202)

    def _background(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` in a worker thread after the response (kept referenced)."""
        task = asyncio.create_task(run_in_threadpool(fn, *args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @serves("POST", "/v2/images/{image_id}/locations")
    async def add_location(self, req: ApiRequest) -> Response:
        """``POST /v2/images/{id}/locations`` (2.17): a URL location, hashed in a task."""
        body = await self.json_body(req)
        task_id = await req.run(self.m.location_ops.add_location, req.ctx,
                                req.param("image_id"), body, req.ctx.request_id)
        self._background(self.m.location_ops.run_location_task, task_id)
        return Response(status_code=202)

    @serves("GET", "/v2/images/{image_id}/locations")
    async def get_locations(self, req: ApiRequest) -> list[dict[str, Any]]:
        """``GET /v2/images/{id}/locations`` (2.17): for admins and the service role."""
        info = await req.run(self.m.get, req.ctx, req.param("image_id"))
        req.enforce("fetch_image_location", info.target)
        return self.m.location_ops.location_docs(info)

    @serves("GET", "/v2/images/{image_id}/tasks")
    async def image_tasks(self, req: ApiRequest) -> dict[str, Any]:
        tasks = await req.run(self.m.list_tasks, req.ctx, req.param("image_id"))
        return {"tasks": [views.task(t) for t in tasks]}

    @serves("POST", "/v2/tasks")
    async def create_task(self, req: ApiRequest) -> None:
        """``POST /v2/tasks`` (the legacy, admin-only task API)."""
        req.enforce("add_task", {"project_id": req.ctx.project_id or ""})
        body = await self.json_body(req)
        if not isinstance(body, dict) or body.get("type") != "import" or not isinstance(
                body.get("input"), dict):
            raise BadRequest("Task body must be an object with type 'import' and an 'input' "
                             "object.")
        source = body["input"].get("import_from")
        raise BadRequest(f"Import from URI {source!r} is not supported: this cloud does not "
                         "fetch image data from other locations. Upload the data or stage it "
                         "and use the 'glance-direct' import method.")

    @serves("GET", "/v2/tasks")
    async def list_tasks(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("get_tasks", {"project_id": req.ctx.project_id or ""})
        tasks = await req.run(self.m.all_tasks, req.ctx)
        return {"tasks": [views.task(t) for t in tasks], "first": "/v2/tasks",
                "schema": "/v2/schemas/tasks"}

    @serves("GET", "/v2/tasks/{task_id}")
    async def show_task(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("get_task", {"project_id": req.ctx.project_id or ""})
        task = await req.run(self.m.get_task, req.ctx, req.param("task_id"))
        return views.task(task)

    # ------------------------------------------------------------------ tags
    @serves("PUT", "/v2/images/{image_id}/tags/{tag:path}")
    async def add_tag(self, req: ApiRequest) -> None:
        await req.run(self.m.add_tag, req.ctx, req.param("image_id"), req.param("tag"))

    @serves("DELETE", "/v2/images/{image_id}/tags/{tag:path}")
    async def delete_tag(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_tag, req.ctx, req.param("image_id"), req.param("tag"))

    # ------------------------------------------------------------------ members
    @serves("GET", "/v2/images/{image_id}/members")
    async def list_members(self, req: ApiRequest) -> dict[str, Any]:
        members = await req.run(self.m.list_members, req.ctx, req.param("image_id"))
        return {"members": [views.member(m) for m in members],
                "schema": "/v2/schemas/members"}

    @serves("POST", "/v2/images/{image_id}/members")
    async def create_member(self, req: ApiRequest) -> dict[str, Any]:
        body = await self.json_body(req)
        if not isinstance(body, dict) or "member" not in body:
            raise BadRequest("Request body must be a JSON object with a 'member' "
                             "(project id).")
        m = await req.run(self.m.add_member, req.ctx, req.param("image_id"), body["member"])
        return views.member(m)

    @serves("GET", "/v2/images/{image_id}/members/{member_id}")
    async def show_member(self, req: ApiRequest) -> dict[str, Any]:
        m = await req.run(self.m.get_member, req.ctx, req.param("image_id"),
                          req.param("member_id"))
        return views.member(m)

    @serves("PUT", "/v2/images/{image_id}/members/{member_id}")
    async def update_member(self, req: ApiRequest) -> dict[str, Any]:
        body = await self.json_body(req)
        if not isinstance(body, dict) or "status" not in body:
            raise BadRequest("Request body must be a JSON object with a 'status'.")
        m = await req.run(self.m.update_member, req.ctx, req.param("image_id"),
                          req.param("member_id"), body["status"])
        return views.member(m)

    @serves("DELETE", "/v2/images/{image_id}/members/{member_id}")
    async def delete_member(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_member, req.ctx, req.param("image_id"),
                      req.param("member_id"))


class _Batches:
    """Upload chunks copied into a few reused ``UPLOAD_BATCH`` buffers and fed to a writer.

    Reusing the buffers (rather than joining chunks into new ones) spares the page faults of
    fresh multi-MiB allocations; at most ``UPLOAD_IN_FLIGHT`` buffers exist, and a buffer is
    filled again only once the writer is done with it (its ``done`` callback).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.free: list[bytearray] = []
        self.made = 0
        self.ready = asyncio.Event()
        self.buf: bytearray | None = None
        self.pos = 0

    def _returned(self, buf: bytearray) -> None:  # on the loop
        self.free.append(buf)
        self.ready.set()

    async def _take(self) -> bytearray:
        while not self.free:
            if self.made < UPLOAD_IN_FLIGHT:
                self.made += 1
                return bytearray(UPLOAD_BATCH)
            self.ready.clear()
            await self.ready.wait()
        return self.free.pop()

    def _feed(self, writer: ImageWriter, buf: bytearray, size: int) -> None:
        data = memoryview(buf)[:size] if size < len(buf) else buf
        writer.feed(data, lambda: self.loop.call_soon_threadsafe(self._returned, buf))

    async def add(self, chunk: bytes, writer: ImageWriter) -> None:
        view = memoryview(chunk)
        while view:
            if self.buf is None:
                self.buf = await self._take()
                self.pos = 0
            n = min(len(view), UPLOAD_BATCH - self.pos)
            self.buf[self.pos:self.pos + n] = view[:n]
            self.pos += n
            view = view[n:]
            if self.pos == UPLOAD_BATCH:
                self._feed(writer, self.buf, self.pos)
                self.buf = None

    async def flush(self, writer: ImageWriter) -> None:
        if self.buf is not None and self.pos:
            self._feed(writer, self.buf, self.pos)
        self.buf = None


def _pump(reader: BodyReader, head: bytes, writer: ImageWriter) -> int:
    """Feed the writer a body taken over by ``reader`` (in a worker thread): ``head`` and
    then the socket's bytes, read straight into ``UPLOAD_IN_FLIGHT`` reused
    ``UPLOAD_BATCH`` buffers (a buffer is refilled once the writer is done with it).
    Returns the body's size; raises ``BodyGone`` if the client stops short."""
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(UPLOAD_IN_FLIGHT):
        free.put(bytearray(UPLOAD_BATCH))
    total = 0
    pending = memoryview(head)
    while True:
        buf = free.get()
        view = memoryview(buf)
        n = min(len(pending), UPLOAD_BATCH)
        view[:n] = pending[:n]
        pending = pending[n:]
        if n < UPLOAD_BATCH:
            n += reader.readinto(view[n:])
        if n == 0:
            return total
        total += n
        writer.feed(view[:n] if n < UPLOAD_BATCH else buf, lambda b=buf: free.put(b))


class _FileSliceResponse(Response):
    """Image data from a local file, sent by the server with ``sendfile`` (the
    ``http.response.zerocopy`` extension): no read into Python, no chunk loop."""

    def __init__(self, data: FileSlice, status: int, headers: dict[str, str]) -> None:
        super().__init__(status_code=status, headers=headers)
        self.data = data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            await send({"type": ZEROCOPY, "file": self.data.fileno(),
                        "offset": self.data.offset, "count": self.data.length,
                        "more_body": False})
        finally:
            self.data.close()


async def _stream(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Read a store iterator in worker threads, one chunk ahead of the one being sent,
    closing it whatever happens."""
    sentinel = b""
    ahead: asyncio.Future[bytes] | None = None
    try:
        ahead = asyncio.ensure_future(run_in_threadpool(next, it, sentinel))
        while True:
            chunk = await ahead
            ahead = None
            if not chunk:
                break
            ahead = asyncio.ensure_future(run_in_threadpool(next, it, sentinel))
            yield chunk
    finally:
        if ahead is not None:
            with contextlib.suppress(BaseException):  # the read in flight must end first
                await ahead
        close = getattr(it, "close", None)
        if close is not None:
            await run_in_threadpool(close)
