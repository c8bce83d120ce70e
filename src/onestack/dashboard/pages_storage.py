"""Project pages of images (upload from the browser with progress, edit, share, delete) and
volumes and their snapshots (when the volume service is in the catalog)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from onestack.common.units import human_size
from onestack.dashboard.cloud import ApiFailure
from onestack.dashboard.routes import Pages
from onestack.dashboard.ui import Action, Cell, Field, Form, Row, Table, cell, status

if TYPE_CHECKING:
    from onestack.dashboard.app import Ctx

DISK_FORMATS = ["qcow2", "raw", "vmdk", "vdi", "vhd", "vhdx", "iso", "ami", "aki", "ari"]
#: Largest image the browser may upload through the dashboard.
MAX_UPLOAD = 64 << 30


PAGES = Pages()


# ---------------------------------------------------------------------- images
@PAGES.get("/project/images/")
async def images(ctx: Ctx) -> Response:
    doc = await ctx.cloud.get("image", "/v2/images", limit="1000")
    mine = ctx.session.project_id
    rows = []
    for img in doc["images"]:
        own = img.get("owner") == mine
        actions = []
        if own:
            actions = [Action("Make public" if img.get("visibility") != "public"
                              else "Make private", f"/project/images/{img['id']}/update",
                              {"visibility": "private" if img.get("visibility") == "public"
                               else "public"}),
                       Action("Delete", f"/project/images/{img['id']}/delete",
                              confirm=f"Delete image {img.get('name')}?", danger=True)]
        rows.append(Row([cell(img.get("name") or img["id"]), status(img.get("status")),
                         cell(img.get("visibility")), cell(img.get("disk_format")),
                         cell(human_size(img.get("size"))),
                         cell("yes" if own else "no")], actions=actions, id=img["id"]))
    form = Form("Create image", "/project/images/create", [
        Field("name", "Image name", required=True),
        Field("file", "Image file", "file", required=True),
        Field("disk_format", "Format", "select",
              options=[(f, f) for f in DISK_FORMATS]),
        Field("visibility", "Visibility", "select",
              options=[("private", "private"), ("shared", "shared"),
                       ("community", "community"), ("public", "public")]),
        Field("min_disk", "Minimum disk (GB)", "number", value="0"),
        Field("min_ram", "Minimum RAM (MB)", "number", value="0"),
    ], submit="Create image", id="image-upload", upload=True)
    owned = [(r.id, r.cells[0].text) for r in rows if r.actions]
    rename = Form("Edit an image", "/project/images/_/update", [
        Field("image", "Image", "select", options=owned),
        Field("name", "New name", required=True)], submit="Save", id="image-edit")
    share = Form("Share an image", "/project/images/_/share", [
        Field("image", "Image", "select", options=[
            (r.id, r.cells[0].text) for r in rows if r.actions]),
        Field("project", "Project ID", required=True)], submit="Share", id="image-share")
    return ctx.render("page.html", title="Images", links=[], forms=[form, rename, share],
                      tables=[Table("Images", ["Name", "Status", "Visibility", "Format",
                                               "Size", "Owned"], rows)])


@PAGES.post("/project/images/create")
async def image_create(ctx: Ctx) -> Response:
    """Create the image record; the page's script then sends the file to ``/data``."""
    body: dict[str, Any] = {"name": ctx.field("name"), "container_format": "bare",
                            "disk_format": ctx.field("disk_format", "qcow2"),
                            "visibility": ctx.field("visibility", "private")}
    for key in ("min_disk", "min_ram"):
        try:
            body[key] = max(0, int(ctx.field(key, "0") or 0))
        except ValueError:
            return JSONResponse({"error": f"{key} must be a number"}, status_code=400)
    if body["disk_format"] in ("aki", "ari", "ami"):
        body["container_format"] = body["disk_format"]
    try:
        made = await ctx.cloud.post("image", "/v2/images", body)
    except ApiFailure as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({"id": made["id"], "upload": f"/project/images/{made['id']}/data"},
                        status_code=201)


@PAGES.serves("/project/images/{id}/data", "PUT")
async def image_data(ctx: Ctx) -> Response:
    """Stream the request body to the image service (the browser shows the progress)."""
    length = ctx.request.headers.get("content-length")
    try:
        size_hint = int(length) if length is not None else None
    except ValueError:
        return JSONResponse({"error": "bad Content-Length"}, status_code=400)
    if size_hint is not None and not 0 <= size_hint <= MAX_UPLOAD:
        return JSONResponse({"error": "the file is too large"}, status_code=413)
    try:
        await ctx.cloud.upload(ctx.param("id"), ctx.request.stream(), size_hint)
    except ApiFailure as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    ctx.session.flash("success", "Image uploaded.")
    return JSONResponse({"ok": True})


@PAGES.post("/project/images/{id}/update")
async def image_update(ctx: Ctx) -> Response:
    image = ctx.field("image") if ctx.param("id") == "_" else ctx.param("id")
    patch = []
    if ctx.field("visibility"):
        patch.append({"op": "replace", "path": "/visibility",
                      "value": ctx.field("visibility")})
    if ctx.field("name"):
        patch.append({"op": "replace", "path": "/name", "value": ctx.field("name")})
    return await ctx.act("/project/images/", "Image updated.", ctx.cloud.request(
        "PATCH", "image", f"/v2/images/{image}", json=patch,
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}))


@PAGES.post("/project/images/{id}/share")
async def image_share(ctx: Ctx) -> Response:
    image = ctx.field("image") if ctx.param("id") == "_" else ctx.param("id")

    async def share() -> None:
        await ctx.cloud.request(
            "PATCH", "image", f"/v2/images/{image}",
            json=[{"op": "replace", "path": "/visibility", "value": "shared"}],
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
        await ctx.cloud.post("image", f"/v2/images/{image}/members",
                             {"member": ctx.field("project")})
    return await ctx.act("/project/images/", "Image shared.", share())


PAGES.deletes("/project/images/{id}/delete", "image", "/v2/images/{id}",
              back="/project/images/", ok="Image deleted.")


# ---------------------------------------------------------------------- volumes
@PAGES.get("/project/volumes/")
async def volumes(ctx: Ctx) -> Response:
    if "block-storage" not in ctx.session.catalog:
        return ctx.render("error.html", title="Volumes", status=404,
                          message="The volume service is not running in this cloud.")
    vols = (await ctx.cloud.get("block-storage", "/volumes/detail"))["volumes"]
    snaps = (await ctx.cloud.get("block-storage", "/snapshots/detail"))["snapshots"]
    vrows = []
    for v in vols:
        attached = ", ".join(a.get("server_id", "") for a in v.get("attachments", []))
        vrows.append(Row([cell(v.get("name") or v["id"]), cell(v.get("description")),
                          cell(f"{v['size']} GiB"), status(v.get("status")),
                          cell(v.get("volume_type")),
                          Cell(attached or "-", f"/project/instances/{attached}/"
                               if attached and "," not in attached else ""),
                          cell(v.get("bootable"))],
                         actions=[Action("Snapshot", f"/project/volumes/{v['id']}/snapshot"),
                                  Action("Delete", f"/project/volumes/{v['id']}/delete",
                                         confirm="Delete this volume?", danger=True)],
                         id=v["id"]))
    srows = [Row([cell(s.get("name") or s["id"]), cell(f"{s['size']} GiB"),
                  status(s.get("status")), cell(s.get("volume_id"))],
                 actions=[Action("Delete", f"/project/snapshots/{s['id']}/delete",
                                 confirm="Delete this snapshot?", danger=True)])
             for s in snaps]
    images = (await ctx.cloud.get("image", "/v2/images", limit="1000",
                                  status="active"))["images"]
    form = Form("Create volume", "/project/volumes/create", [
        Field("name", "Volume name", required=True),
        Field("size", "Size (GiB)", "number", value="1", required=True),
        Field("image", "From image", "select", options=[("", "(empty volume)")] + [
            (i["id"], i.get("name") or i["id"]) for i in images
            if i.get("disk_format") not in ("aki", "ari")]),
        Field("description", "Description")], submit="Create volume", id="volume-create")
    return ctx.render("page.html", title="Volumes", links=[], forms=[form], live=True,
                      tables=[Table("Volumes", ["Name", "Description", "Size", "Status",
                                                "Type", "Attached to", "Bootable"], vrows),
                              Table("Volume snapshots", ["Name", "Size", "Status",
                                                         "Volume"], srows)])


@PAGES.post("/project/volumes/create")
async def volume_create(ctx: Ctx) -> Response:
    try:
        size_gb = int(ctx.field("size", "1"))
    except ValueError:
        return ctx.fail("/project/volumes/", "The size must be a whole number of GiB.")
    body: dict[str, Any] = {"name": ctx.field("name"), "size": size_gb}
    if ctx.field("image"):
        body["imageRef"] = ctx.field("image")
    if ctx.field("description"):
        body["description"] = ctx.field("description")
    return await ctx.act("/project/volumes/", f"Creating volume {body['name']}.",
                         ctx.cloud.post("block-storage", "/volumes", {"volume": body}))


PAGES.deletes("/project/volumes/{id}/delete", "block-storage", "/volumes/{id}",
              back="/project/volumes/", ok="Deleting the volume.")


@PAGES.post("/project/volumes/{id}/snapshot")
async def volume_snapshot(ctx: Ctx) -> Response:
    return await ctx.act("/project/volumes/", "Creating a snapshot.", ctx.cloud.post(
        "block-storage", "/snapshots", {"snapshot": {
            "volume_id": ctx.param("id"), "name": ctx.field("name") or None,
            "force": True}}))


PAGES.deletes("/project/snapshots/{id}/delete", "block-storage", "/snapshots/{id}",
              back="/project/volumes/", ok="Deleting the snapshot.")
