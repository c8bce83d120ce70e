"""Project pages of compute: overview (quota usage), instances (list with live status, the
launch form, detail tabs, actions) and key pairs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response

from onestack.dashboard.cloud import ApiFailure
from onestack.dashboard.routes import Pages
from onestack.dashboard.ui import Action, Cell, Field, Form, Row, Table, addresses, cell, status

if TYPE_CHECKING:
    from onestack.dashboard.app import Ctx

PAGE_SIZE = 50
#: Server actions the detail page offers: form value -> (label, request body).
SIMPLE_ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "start": ("Start", {"os-start": None}),
    "stop": ("Stop", {"os-stop": None}),
    "reboot": ("Reboot", {"reboot": {"type": "SOFT"}}),
    "hard_reboot": ("Hard reboot", {"reboot": {"type": "HARD"}}),
    "pause": ("Pause", {"pause": None}),
    "unpause": ("Unpause", {"unpause": None}),
    "suspend": ("Suspend", {"suspend": None}),
    "resume": ("Resume", {"resume": None}),
    "lock": ("Lock", {"lock": None}),
    "unlock": ("Unlock", {"unlock": None}),
    "unrescue": ("Unrescue", {"unrescue": None}),
    "shelve": ("Shelve", {"shelve": None}),
    "unshelve": ("Unshelve", {"unshelve": None}),
    "confirm_resize": ("Confirm resize", {"confirmResize": None}),
    "revert_resize": ("Revert resize", {"revertResize": None}),
}
#: The other actions' names, for messages.
#: Server actions whose request body takes a value from the form: form value -> body maker.
FORM_ACTIONS: dict[str, Callable[[Ctx, str], dict[str, Any]]] = {
    "snapshot": lambda ctx, sid: {"createImage": {"name": ctx.field("name") or f"{sid}-snap"}},
    "resize": lambda ctx, _sid: {"resize": {"flavorRef": ctx.field("flavor")}},
    "rebuild": lambda ctx, _sid: {"rebuild": {"imageRef": ctx.field("image")}},
    "rescue": lambda _ctx, _sid: {"rescue": None},
}
OTHER_ACTIONS = {"snapshot": "Create snapshot", "resize": "Resize", "rebuild": "Rebuild",
                 "rescue": "Rescue", "associate_fip": "Associate floating IP",
                 "attach_volume": "Attach volume", "attach_interface": "Attach interface"}
TRANSITIONAL = {"BUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "VERIFY_RESIZE", "REBUILD",
                "MIGRATING", "RESCUE"}


PAGES = Pages()


# ---------------------------------------------------------------------- overview
@PAGES.get("/project/")
async def overview(ctx: Ctx) -> Response:
    """Quota usage of the current project, as bar charts."""
    pid = ctx.session.project_id

    async def compute() -> dict[str, Any]:
        return dict((await ctx.cloud.get("compute", "/limits"))["limits"]["absolute"])

    async def network() -> dict[str, Any]:
        try:
            return dict((await ctx.cloud.get("network", f"/v2.0/quotas/{pid}/details"))[
                "quota"])
        except ApiFailure:
            return {}

    async def volume() -> dict[str, Any]:
        if "block-storage" not in ctx.session.catalog:
            return {}
        try:
            return dict((await ctx.cloud.get("block-storage", "/limits"))["limits"][
                "absolute"])
        except ApiFailure:
            return {}

    lim, net, vol = await asyncio.gather(compute(), network(), volume())
    charts = [
        ("Instances", lim.get("totalInstancesUsed", 0), lim.get("maxTotalInstances", -1)),
        ("VCPUs", lim.get("totalCoresUsed", 0), lim.get("maxTotalCores", -1)),
        ("RAM (MB)", lim.get("totalRAMUsed", 0), lim.get("maxTotalRAMSize", -1)),
    ]
    for key, label in (("floatingip", "Floating IPs"), ("security_group", "Security groups"),
                       ("network", "Networks"), ("port", "Ports"), ("router", "Routers")):
        if key in net:
            charts.append((label, net[key].get("used", 0), net[key].get("limit", -1)))
    if vol:
        charts.append(("Volumes", vol.get("totalVolumesUsed", 0), vol.get("maxTotalVolumes",
                                                                           -1)))
        charts.append(("Volume storage (GB)", vol.get("totalGigabytesUsed", 0),
                       vol.get("maxTotalVolumeGigabytes", -1)))
    bars = [{"label": label, "used": used, "limit": limit,
             "percent": 0 if limit in (-1, 0) else min(100, round(100 * used / limit))}
            for label, used, limit in charts]
    return ctx.render("overview.html", title="Overview", bars=bars)


# ---------------------------------------------------------------------- instances
async def _names(ctx: Ctx) -> tuple[dict[str, str], dict[str, str]]:
    """Image and flavor names by id (two list calls per page, never one per server)."""
    async def images() -> dict[str, str]:
        try:
            doc = await ctx.cloud.get("image", "/v2/images", limit="1000")
        except ApiFailure:
            return {}
        return {i["id"]: i.get("name") or i["id"] for i in doc.get("images", [])}

    async def flavors() -> dict[str, str]:
        doc = await ctx.cloud.get("compute", "/flavors")
        return {f["id"]: f["name"] for f in doc.get("flavors", [])}

    return await asyncio.gather(images(), flavors())


def server_rows(servers: list[dict[str, Any]], images: dict[str, str],
                admin: bool = False) -> list[Row]:
    rows = []
    for s in servers:
        image = s.get("image") or {}
        image_id = image.get("id") if isinstance(image, dict) else None
        flavor = s.get("flavor") or {}
        cells = [Cell(s.get("name") or s["id"], f"/project/instances/{s['id']}/")]
        if admin:
            cells.append(cell(s.get("tenant_id")))
            cells.append(cell(s.get("OS-EXT-SRV-ATTR:host")))
        cells += [cell(images.get(image_id or "", image_id or "(volume)")),
                  cell(addresses(s)),
                  cell(flavor.get("original_name") or flavor.get("id")),
                  cell(s.get("key_name")),
                  status(s.get("status"), live=s["id"]),
                  cell(s.get("OS-EXT-STS:task_state")),
                  cell(s.get("OS-EXT-AZ:availability_zone")),
                  cell(s.get("created"))]
        rows.append(Row(cells, id=s["id"], actions=[] if admin else [
            Action("Delete", f"/project/instances/{s['id']}/action", {"action": "delete"},
                   confirm=f"Delete instance {s.get('name')}?", danger=True)]))
    return rows


def paging(ctx: Ctx, items: list[dict[str, Any]], base: str) -> tuple[str, str]:
    marker = ctx.request.query_params.get("marker")
    nxt = (f"{base}?{urlencode({'marker': items[-1]['id']})}"
           if len(items) >= PAGE_SIZE else "")
    prev = base if marker else ""
    return nxt, prev


@PAGES.get("/project/instances/")
async def instances(ctx: Ctx) -> Response:
    marker = ctx.request.query_params.get("marker")
    doc, (images, _flavors) = await asyncio.gather(
        ctx.cloud.get("compute", "/servers/detail", limit=str(PAGE_SIZE), marker=marker),
        _names(ctx))
    servers = doc.get("servers", [])
    nxt, prev = paging(ctx, servers, "/project/instances/")
    table = Table("Instances", ["Name", "Image", "IP addresses", "Flavor", "Key pair",
                                "Status", "Task", "Availability zone", "Created"],
                  server_rows(servers, images), empty="No instances yet.",
                  next_url=nxt, prev_url=prev)
    return ctx.render("page.html", title="Instances", tables=[table], forms=[],
                      links=[("Launch instance", "/project/instances/launch")], live=True)


@PAGES.get("/project/instances/status")
async def instance_status(ctx: Ctx) -> Response:
    """The status of the servers named by ``ids`` (the list page polls it)."""
    ids = [i for i in ctx.request.query_params.get("ids", "").split(",") if i][:PAGE_SIZE]
    out = {}
    docs = await asyncio.gather(*(ctx.cloud.request("GET", "compute", f"/servers/{i}",
                                                    ok=(200, 404)) for i in ids))
    for sid, doc in zip(ids, docs, strict=True):
        server = (doc or {}).get("server") if isinstance(doc, dict) else None
        if server is None:
            out[sid] = {"status": "DELETED", "task": None, "done": True}
            continue
        out[sid] = {"status": server.get("status"), "task": server.get("OS-EXT-STS:task_state"),
                    "done": server.get("status") not in TRANSITIONAL
                    and not server.get("OS-EXT-STS:task_state"),
                    "addresses": addresses(server)}
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


async def _launch_choices(ctx: Ctx) -> dict[str, list[tuple[str, str]]]:
    async def images() -> list[tuple[str, str]]:
        doc = await ctx.cloud.get("image", "/v2/images", limit="1000", status="active")
        return [(f"image:{i['id']}", i.get("name") or i["id"]) for i in doc["images"]
                if i.get("disk_format") not in ("aki", "ari")]

    async def volumes() -> list[tuple[str, str]]:
        if "block-storage" not in ctx.session.catalog:
            return []
        doc = await ctx.cloud.get("block-storage", "/volumes/detail", status="available")
        snaps = await ctx.cloud.get("block-storage", "/snapshots/detail", status="available")
        return [(f"volume:{v['id']}", f"volume {v.get('name') or v['id']}")
                for v in doc.get("volumes", []) if v.get("bootable") in (True, "true")] + [
            (f"snapshot:{s['id']}:{s['size']}",
             f"volume snapshot {s.get('name') or s['id']}")
            for s in snaps.get("snapshots", [])]

    async def flavors() -> list[tuple[str, str]]:
        doc = await ctx.cloud.get("compute", "/flavors/detail")
        return [(f["id"], f"{f['name']} ({f['vcpus']} VCPU, {f['ram']} MB, {f['disk']} GB)")
                for f in sorted(doc["flavors"], key=lambda f: (f["ram"], f["name"]))]

    async def networks() -> list[tuple[str, str]]:
        doc = await ctx.cloud.get("network", "/v2.0/networks")
        return [(n["id"], n["name"] or n["id"]) for n in doc["networks"]
                if not n.get("router:external")]

    async def groups() -> list[tuple[str, str]]:
        doc = await ctx.cloud.get("network", "/v2.0/security-groups",
                                  project_id=ctx.session.project_id)
        return [(g["name"], g["name"]) for g in doc["security_groups"]]

    async def keys() -> list[tuple[str, str]]:
        doc = await ctx.cloud.get("compute", "/os-keypairs")
        return [(k["keypair"]["name"], k["keypair"]["name"]) for k in doc["keypairs"]]

    names = ("images", "volumes", "flavors", "networks", "groups", "keys")
    results = await asyncio.gather(images(), volumes(), flavors(), networks(), groups(),
                                   keys())
    return dict(zip(names, results, strict=True))


@PAGES.get("/project/instances/launch")
async def launch_form(ctx: Ctx) -> Response:
    c = await _launch_choices(ctx)
    form = Form("Launch instance", "/project/instances/launch", [
        Field("name", "Instance name", required=True),
        Field("source", "Source", "select", options=c["images"] + c["volumes"],
              required=True, help="An image, a bootable volume or a volume snapshot"),
        Field("flavor", "Flavor", "select", options=c["flavors"], required=True),
        Field("networks", "Networks", "multi", options=c["networks"],
              checked=[c["networks"][0][0]] if len(c["networks"]) == 1 else []),
        Field("security_groups", "Security groups", "multi", options=c["groups"],
              checked=["default"]),
        Field("key_name", "Key pair", "select", options=[("", "(none)")] + c["keys"]),
        Field("count", "Count", "number", value="1"),
        Field("user_data", "User data (cloud-init)", "textarea"),
    ], submit="Launch", id="launch")
    return ctx.render("page.html", title="Launch instance", tables=[], forms=[form],
                      links=[("Back to instances", "/project/instances/")])


@PAGES.post("/project/instances/launch")
async def launch(ctx: Ctx) -> Response:
    name, source, flavor = ctx.field("name"), ctx.field("source"), ctx.field("flavor")
    if not name or ":" not in source or not flavor:
        return ctx.fail("/project/instances/launch", "Name, source and flavor are required.")
    kind, _, ref = source.partition(":")
    server: dict[str, Any] = {"name": name, "flavorRef": flavor}
    if kind == "image":
        server["imageRef"] = ref
    elif kind == "snapshot":
        # A new volume made from the snapshot, deleted with the server (Horizon's default).
        snap_id, _, size = ref.partition(":")
        server["block_device_mapping_v2"] = [{
            "uuid": snap_id, "source_type": "snapshot", "destination_type": "volume",
            "boot_index": 0, "volume_size": int(size) if size.isdigit() else 1,
            "delete_on_termination": True}]
    else:
        server["block_device_mapping_v2"] = [{"uuid": ref, "source_type": "volume",
                                              "destination_type": "volume",
                                              "boot_index": 0}]
    nets = ctx.fields("networks")
    server["networks"] = [{"uuid": n} for n in nets] if nets else "none"
    groups = ctx.fields("security_groups")
    if groups and nets:
        server["security_groups"] = [{"name": g} for g in groups]
    if ctx.field("key_name"):
        server["key_name"] = ctx.field("key_name")
    if ctx.field("user_data"):
        server["user_data"] = base64.b64encode(ctx.field("user_data").encode()).decode()
    try:
        count = max(1, min(100, int(ctx.field("count", "1") or 1)))
    except ValueError:
        count = 1
    if count > 1:
        server["min_count"] = server["max_count"] = count
    try:
        await ctx.cloud.post("compute", "/servers", {"server": server})
    except ApiFailure as exc:
        return ctx.fail("/project/instances/launch", exc)
    return ctx.redirect("/project/instances/", ok=f"Launching {name}.")


@PAGES.get("/project/instances/{id}/")
async def instance_detail(ctx: Ctx) -> Response:
    sid = ctx.param("id")
    tab = ctx.request.query_params.get("tab", "overview")
    server = (await ctx.cloud.get("compute", f"/servers/{sid}"))["server"]
    values: dict[str, Any] = {"server": server, "tab": tab, "addresses": addresses(server),
                              "actions": SIMPLE_ACTIONS}
    if tab == "interfaces":
        doc = await ctx.cloud.get("network", "/v2.0/ports", device_id=sid)
        values["ports"] = doc["ports"]
    elif tab == "log":
        try:
            out = await ctx.cloud.post("compute", f"/servers/{sid}/action",
                                       {"os-getConsoleOutput": {"length": 200}}, ok=(200,))
            values["log"] = (out or {}).get("output", "")
        except ApiFailure as exc:
            values["log"] = f"(no log: {exc.message})"
    elif tab == "console":
        try:
            out = await ctx.cloud.post("compute", f"/servers/{sid}/remote-consoles",
                                       {"remote_console": {"protocol": "vnc",
                                                           "type": "novnc"}})
            values["console_url"] = out["remote_console"]["url"]
        except ApiFailure as exc:
            values["console_error"] = exc.message
    elif tab == "actions":
        doc = await ctx.cloud.get("compute", f"/servers/{sid}/os-instance-actions")
        values["events"] = doc.get("instanceActions", [])
    else:
        fips, flavors, volumes, images, nets = await asyncio.gather(
            ctx.cloud.get("network", "/v2.0/floatingips"),
            ctx.cloud.get("compute", "/flavors"), _volumes(ctx),
            ctx.cloud.get("image", "/v2/images", limit="1000", status="active"),
            ctx.cloud.get("network", "/v2.0/networks"))
        free = [f for f in fips["floatingips"] if not f.get("port_id")]
        images_ = [(i["id"], i.get("name") or i["id"]) for i in images["images"]
                   if i.get("disk_format") not in ("aki", "ari")]
        values["forms"] = _instance_forms(
            sid, [(f["id"], f["floating_ip_address"]) for f in free],
            [(v["id"], v.get("name") or v["id"]) for v in volumes
             if v.get("status") == "available"],
            [(f["id"], f["name"]) for f in flavors["flavors"]], images_,
            [(n["id"], n.get("name") or n["id"]) for n in nets["networks"]
             if not n.get("router:external")])
    return ctx.render("instance.html", title=server.get("name") or sid, **values)


def _instance_forms(sid: str, fips: list[tuple[str, str]], volumes: list[tuple[str, str]],
                    flavors: list[tuple[str, str]], images: list[tuple[str, str]],
                    networks: list[tuple[str, str]]) -> list[Form]:
    """The instance page's forms, each an action of ``instance_action``."""
    url = f"/project/instances/{sid}/action"

    def form(title: str, action: str, field: Field, submit: str, form_id: str) -> Form:
        return Form(title, url, [Field("action", "", "hidden", value=action), field],
                    submit=submit, id=form_id)

    return [
        form("Associate floating IP", "associate_fip",
             Field("floatingip", "Floating IP", "select", options=fips,
                   help="" if fips else "No free floating IP: allocate one under "
                                        "Floating IPs."), "Associate", "associate-fip"),
        form("Attach volume", "attach_volume",
             Field("volume", "Volume", "select", options=volumes), "Attach", "attach-volume"),
        form("Create snapshot", "snapshot", Field("name", "Snapshot name", required=True),
             "Create snapshot", "snapshot"),
        form("Resize", "resize", Field("flavor", "New flavor", "select", options=flavors),
             "Resize", "resize"),
        form("Rebuild", "rebuild", Field("image", "Image", "select", options=images),
             "Rebuild", "rebuild"),
        form("Attach interface", "attach_interface",
             Field("network", "Network", "select", options=networks), "Attach interface",
             "attach-interface"),
    ]


async def _volumes(ctx: Ctx) -> list[dict[str, Any]]:
    if "block-storage" not in ctx.session.catalog:
        return []
    try:
        return list((await ctx.cloud.get("block-storage", "/volumes/detail"))["volumes"])
    except ApiFailure:
        return []


@PAGES.post("/project/instances/{id}/action")
async def instance_action(ctx: Ctx) -> Response:
    sid = ctx.param("id")
    action = ctx.field("action")
    back = f"/project/instances/{sid}/"
    try:
        if action == "delete":
            await ctx.cloud.delete("compute", f"/servers/{sid}")
            return ctx.redirect("/project/instances/", ok="Deleting the instance.")
        if action in SIMPLE_ACTIONS:
            await ctx.cloud.post("compute", f"/servers/{sid}/action", SIMPLE_ACTIONS[action][1])
        elif action in FORM_ACTIONS:
            await ctx.cloud.post("compute", f"/servers/{sid}/action",
                                 FORM_ACTIONS[action](ctx, sid))
        elif action == "associate_fip":
            ports = (await ctx.cloud.get("network", "/v2.0/ports", device_id=sid))["ports"]
            if not ports:
                return ctx.fail(back, "The instance has no port to give a floating IP.")
            await ctx.cloud.put("network", f"/v2.0/floatingips/{ctx.field('floatingip')}",
                                {"floatingip": {"port_id": ports[0]["id"]}})
        elif action == "attach_volume":
            await ctx.cloud.post("compute", f"/servers/{sid}/os-volume_attachments",
                                 {"volumeAttachment": {"volumeId": ctx.field("volume")}})
        elif action == "attach_interface":
            await ctx.cloud.post("compute", f"/servers/{sid}/os-interface",
                                 {"interfaceAttachment": {"net_id": ctx.field("network")}})
        else:
            return ctx.fail(back, f"Unknown action {action!r}.")
    except ApiFailure as exc:
        return ctx.fail(back, exc)
    label = SIMPLE_ACTIONS[action][0] if action in SIMPLE_ACTIONS else OTHER_ACTIONS[action]
    return ctx.redirect(back, ok=f"{label}: request accepted.")


# ---------------------------------------------------------------------- key pairs
@PAGES.get("/project/key_pairs/")
async def keypairs(ctx: Ctx) -> Response:
    doc = await ctx.cloud.get("compute", "/os-keypairs")
    rows = [Row([cell(k["keypair"]["name"]), cell(k["keypair"].get("type", "ssh")),
                 cell(k["keypair"]["fingerprint"])],
                actions=[Action("Delete", f"/project/key_pairs/{k['keypair']['name']}/delete",
                                confirm="Delete this key pair?", danger=True)])
            for k in doc["keypairs"]]
    forms = [Form("Create key pair", "/project/key_pairs/create",
                  [Field("name", "Key pair name", required=True)],
                  submit="Create key pair"),
             Form("Import public key", "/project/key_pairs/create",
                  [Field("name", "Key pair name", required=True),
                   Field("public_key", "Public key", "textarea", required=True)],
                  submit="Import")]
    pending = ctx.session.pending_key
    return ctx.render("page.html", title="Key pairs", forms=forms, links=[],
                      tables=[Table("Key pairs", ["Name", "Type", "Fingerprint"], rows)],
                      pending_key=pending[0] if pending else "")


@PAGES.post("/project/key_pairs/create")
async def keypair_create(ctx: Ctx) -> Response:
    body: dict[str, Any] = {"name": ctx.field("name")}
    if ctx.field("public_key"):
        body["public_key"] = ctx.field("public_key")
    try:
        made = await ctx.cloud.post("compute", "/os-keypairs", {"keypair": body})
    except ApiFailure as exc:
        return ctx.fail("/project/key_pairs/", exc)
    private = made["keypair"].get("private_key")
    if private:
        # Offered for download once, then forgotten (Nova keeps only the public half).
        ctx.session.pending_key = (body["name"], private)
    return ctx.redirect("/project/key_pairs/", ok=f"Key pair {body['name']} created.")


@PAGES.post("/project/key_pairs/download")
async def keypair_download(ctx: Ctx) -> Response:
    pending, ctx.session.pending_key = ctx.session.pending_key, None
    if pending is None:
        return ctx.fail("/project/key_pairs/", "The private key was already downloaded.")
    name, private = pending
    safe = "".join(ch for ch in name if ch.isalnum() or ch in "-_.") or "key"
    return Response(private, media_type="application/x-pem-file", headers={
        "Content-Disposition": f'attachment; filename="{safe}.pem"',
        "Cache-Control": "no-store"})


PAGES.deletes("/project/key_pairs/{name}/delete", "compute", "/os-keypairs/{name}",
              back="/project/key_pairs/", ok="Key pair deleted.")
